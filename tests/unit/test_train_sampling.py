"""Sampling the calm rows: taken while streaming, it fits the same model as taken before
the fit; weighted back, the fit sees the base rate; windows do not move."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.training.train import (
    StreamSample,
    TrainConfig,
    build_features,
    keep_negative,
    sim_frames,
    train_full,
    windows,
)
from predictor.labels import Incident, make_labels
from predictor.sim import SimConfig, Simulator

HOURS = 10.0
CFG = TrainConfig(
    horizon_s=900.0,
    min_warning_s=120.0,
    n_estimators=20,
    num_leaves=7,
    num_threads=1,
    negative_fraction=0.2,
    test_fraction=0.35,
)


def history() -> tuple[list[pd.DataFrame], list[Incident], Simulator]:
    sim = Simulator(SimConfig(seed=5, failures_per_day=96.0, hosts_per_component=1))
    frames = list(sim_frames(sim, HOURS))
    incidents = [Incident.from_record(r) for r in sim.incidents(HOURS)]
    return frames, incidents, sim


def test_keep_negative_is_a_fixed_share_of_a_hash() -> None:
    ids = np.arange(200_000)
    kept = keep_negative(ids, 0.1)
    assert 0.09 < kept.mean() < 0.11
    np.testing.assert_array_equal(kept[5:50], keep_negative(ids[5:50], 0.1))  # any chunk
    assert keep_negative(ids, 1.0).all()


def test_sampling_while_streaming_fits_the_same_model_with_fewer_rows() -> None:
    frames, incidents, sim = history()
    whole = build_features(iter(frames), stride=3)
    end = sim.start_ms + int(HOURS * 3_600_000)
    # Other chunking for the sampled pass: the sample must not depend on it.
    rechunked = [part for f in frames for part in (f.iloc[: len(f) // 3], f.iloc[len(f) // 3 :])]
    sampled = build_features(
        iter(rechunked), stride=3, sample=StreamSample(incidents, CFG, sim.start_ms, end)
    )
    assert len(sampled.x) < 0.7 * len(whole.x)
    assert 0 < sampled.rows_sampled_out <= len(whole.x) - len(sampled.x)
    assert sampled.span_ms == whole.span_ms
    assert sampled.source == whole.source  # hash and time range of all the rows

    a = train_full(whole, incidents, CFG)
    b = train_full(sampled, incidents, CFG)
    np.testing.assert_array_equal(a.risk_test, b.risk_test)
    assert a.report["metrics"].keys() == b.report["metrics"].keys()
    for k, v in a.report["metrics"].items():
        if k != "fit_s":
            assert b.report["metrics"][k] == v, k
    assert a.report["evaluation"] == b.report["evaluation"]
    m = a.report["metrics"]
    assert m["rows_train_sampled_out"] > 0
    assert m["positives_train"] > 0 and m["rows_test"] > 0


def test_the_fit_sees_every_positive_and_the_base_rate_weighted_back() -> None:
    frames, incidents, _ = history()
    data = build_features(iter(frames), stride=3)
    full = train_full(data, incidents, TrainConfig(**{**_kw(), "negative_fraction": 1.0}))
    part = train_full(data, incidents, CFG)
    fm, pm = full.report["metrics"], part.report["metrics"]
    assert pm["positives_train"] == fm["positives_train"]  # positives all kept
    assert fm["rows_train_sampled_out"] == 0
    assert pm["rows_train"] + pm["rows_train_sampled_out"] == fm["rows_train"]
    assert pm["rows_test"] == fm["rows_test"]  # the test window is never sampled
    w = windows(*data.span_ms, CFG) if data.span_ms else None
    assert w is not None and w.t_min < w.cal_start < w.train_end < w.split < w.t_max
    # Calibrated on the whole calibration slice, unweighted: isotonic regression keeps
    # the mean, so the mean risk there is that slice's own base rate (a calibration on
    # the sampled rows would sit ~1/negative_fraction times higher).
    y, keep = make_labels(data.keys, data.ts_ms, incidents, CFG.horizon_s)
    order = np.argsort(data.ts_ms, kind="stable")
    order = order[keep[order]]
    train_rows = order[data.ts_ms[order] < w.train_end]
    cal = train_rows[len(train_rows) - int(len(train_rows) * CFG.calibration_fraction) :]
    assert part.model.calibration_ is not None
    assert float(np.mean(part.model.predict_risk(data.x[cal]))) == pytest.approx(
        float(y[cal].mean()), abs=1e-6
    )


def _kw() -> dict[str, object]:
    return {
        f: getattr(CFG, f)
        for f in (
            "horizon_s",
            "min_warning_s",
            "n_estimators",
            "num_leaves",
            "num_threads",
            "test_fraction",
        )
    }


def test_a_bounded_sample_halves_its_share_the_same_whatever_the_chunking() -> None:
    frames, incidents, sim = history()
    end = sim.start_ms + int(HOURS * 3_600_000)
    free = build_features(
        iter(frames), stride=3, sample=StreamSample(incidents, CFG, sim.start_ms, end)
    )
    assert free.negative_fraction == CFG.negative_fraction
    cap = 300
    bounded_cfg = TrainConfig(**{**_kw(), "negative_fraction": 0.2, "max_fit_negatives": cap})
    rechunked = [part for f in frames for part in (f.iloc[: len(f) // 4], f.iloc[len(f) // 4 :])]
    a = build_features(
        iter(frames), stride=3, sample=StreamSample(incidents, bounded_cfg, sim.start_ms, end)
    )
    b = build_features(
        iter(rechunked), stride=3, sample=StreamSample(incidents, bounded_cfg, sim.start_ms, end)
    )
    share = a.negative_fraction
    assert share is not None and share < CFG.negative_fraction and share == b.negative_fraction
    assert share in {CFG.negative_fraction / 2**j for j in range(1, 12)}
    np.testing.assert_array_equal(a.row_id, b.row_id)  # the same rows, chunks or not
    assert len(a.x) < len(free.x) and a.rows_sampled_out > free.rows_sampled_out
    # at most ``cap`` rows are there by the sample: the rest are positives or kept whole
    y, _ = make_labels(a.keys, a.ts_ms, incidents, CFG.horizon_s)
    whole_from = StreamSample(incidents, bounded_cfg, sim.start_ms, end).whole_from_ms
    assert a.row_id is not None
    by_sample = (y == 0) & (a.ts_ms < whole_from)
    assert 0 < int(by_sample.sum()) <= cap
    assert keep_negative(a.row_id[by_sample], share).all()
    # the fit weighs them back by the share it got
    fit = train_full(a, incidents, bounded_cfg)
    assert fit.report["metrics"]["negative_share"] == share


def test_the_test_window_and_calibration_slice_are_bounded_in_time() -> None:
    day = 86_400_000
    cfg = TrainConfig()  # at most 3 days of test, 1 day of calibration
    week = windows(0, 7 * day, cfg)  # a week: under both bounds, the shares apply
    assert week.split == 7 * day - int(0.3 * 7 * day)
    assert week.train_end - week.cal_start == int(0.2 * (week.train_end - week.t_min))
    long = windows(0, 60 * day, cfg)
    assert long.split == 57 * day and long.train_end - long.cal_start == day
