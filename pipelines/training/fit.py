"""Label, split in time, fit, judge: one training run from a :class:`Dataset`.

Rows are labelled from incidents (:func:`predictor.labels.make_labels`), split in time
with a purge gap of one horizon between train and test, fitted on every positive and a
hashed sample of the negatives, calibrated on the latest training rows, and scored on the
test window with the metrics operators care about, next to the baselines of
:mod:`pipelines.training.evaluation`. Part of :mod:`pipelines.training.train`, which
re-exports every name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from pipelines.files.frames import iter_frames
from pipelines.training.checks import check_train_inputs, read_incidents
from pipelines.training.dataset import (
    Dataset,
    StreamSample,
    TrainConfig,
    build_features,
    keep_negative,
    windows,
)
from pipelines.training.evaluation import alarms_from_scores, baseline_scores, judge, public
from predictor.errors import ValidationError
from predictor.events import ms_to_iso
from predictor.labels import Incident, lead_time_report, make_labels
from predictor.risk import RiskModel

Progress = Callable[[str, float], None]


@dataclass(slots=True)
class TrainResult:
    """What a training run produced: the model, its report (JSON-ready) and the test
    window's arrays that the plots are drawn from."""

    model: RiskModel
    report: dict[str, Any]
    y_test: np.ndarray
    risk_test: np.ndarray
    #: Per scorer (the model first, then the baselines): lead times of the warned incidents, s.
    leads_s: dict[str, list[float]]


def train_model(
    data: Dataset,
    incidents: list[Incident],
    cfg: TrainConfig,
    progress: Progress | None = None,
) -> tuple[RiskModel, dict[str, Any]]:
    """Label, split in time with a purge gap, fit, evaluate; returns (model, report)."""
    res = train_full(data, incidents, cfg, progress)
    return res.model, res.report


def train_full(
    data: Dataset,
    incidents: list[Incident],
    cfg: TrainConfig,
    progress: Progress | None = None,
) -> TrainResult:
    """:func:`train_model` with the test window's arrays kept (for plots and MLflow).

    The test window is the latest ``test_fraction`` of the time range; training rows end
    one horizon before it (the purge gap: no training label looks into the test window).
    The model is judged on the test window next to the baselines of
    :mod:`pipelines.training.evaluation`, fitted on the training rows.
    """
    y, keep = make_labels(data.keys, data.ts_ms, incidents, cfg.horizon_s)
    order = np.argsort(data.ts_ms, kind="stable")
    order = order[keep[order]]
    if len(order) == 0:
        raise ValidationError("empty", "no training rows outside incidents")
    y, ts = y[order], data.ts_ms[order]
    t_min, t_max = data.span_ms or (int(ts[0]), int(ts[-1]))
    win = windows(t_min, t_max, cfg)
    split = win.split
    purge = int(cfg.horizon_s * 1000)
    train = ts < win.train_end  # the purge keeps test labels' horizons out of training
    test = ts >= split
    # Fit on every positive and a hashed sample of the negatives of the fitting part,
    # weighted back; the calibration slice is whole (isotonic, unweighted: frequencies).
    row_id = data.row_id[order] if data.row_id is not None else order
    # The calibration slice: the last ``calibration_fraction`` of the training rows, as
    # counted before any sampling (the rows the stream dropped are all earlier).
    n_train = int(train.sum())
    n_cal = int((n_train + data.rows_sampled_out) * cfg.calibration_fraction)
    # at most max_calibration_s of rows (every row there was kept whole)
    n_cal = min(n_cal, int((train & (ts >= win.cal_start)).sum()))
    cal = np.zeros(len(ts), dtype=bool)
    train_idx = np.flatnonzero(train)
    cal[train_idx[n_train - min(n_cal, n_train) :]] = True
    if data.whole_from_ms is not None and cal.any() and ts[cal][0] < data.whole_from_ms:
        raise ValidationError(
            "sample",
            f"the calibration slice starts at {ms_to_iso(int(ts[cal][0]))}, before the rows "
            f"kept whole while streaming ({ms_to_iso(data.whole_from_ms)}): raise "
            "StreamSample.margin_ms",
        )
    share = cfg.negative_fraction if data.negative_fraction is None else data.negative_fraction
    fit = train & ~cal & ((y == 1) | keep_negative(row_id, share))
    fit_rows, cal_rows, test_rows = np.flatnonzero(fit), np.flatnonzero(cal), np.flatnonzero(test)
    rows = np.concatenate([fit_rows, cal_rows])  # time order: the fit's rows, then calibration
    sampled_out = int((train & ~cal).sum()) - len(fit_rows) + data.rows_sampled_out
    neg_w = 1.0 / share if share < 1.0 else 1.0
    sample_w = np.where(y[rows] == 0, neg_w, 1.0)
    sample_w[len(fit_rows) :] = 1.0
    weight = sample_w  # and the feedback's weights on top (the model's fit only)
    if data.weights is not None:
        weight = sample_w * np.asarray(data.weights, dtype=np.float64)[order][rows]
    x_train, y_train = data.x[order[rows]], y[rows]
    x_test, y_test = data.x[order[test_rows]], y[test_rows]
    keys = [data.keys[i] for i in order[test_rows].tolist()]
    if y_train.sum() == 0 or y_test.sum() == 0:
        raise ValidationError(
            "too_few_incidents",
            f"need incidents in both the train and test windows (train {int(y_train.sum())}"
            f" positive rows, test {int(y_test.sum())}; {len(incidents)} incidents in all, "
            f"test window from {ms_to_iso(split)}): give more history",
        )
    if progress:
        progress("fit", 0.0)
    t0 = time.perf_counter()
    model = RiskModel(
        horizon_s=cfg.horizon_s,
        n_estimators=cfg.n_estimators,
        learning_rate=cfg.learning_rate,
        num_leaves=cfg.num_leaves,
        # The calibration slice exactly (the model takes its last share of the rows).
        calibration_fraction=(len(cal_rows) + 0.5) / len(rows) if len(cal_rows) else 0.0,
        seed=cfg.seed,
        num_threads=cfg.num_threads,
    ).fit(x_train, y_train, data.feature_names, sample_weight=weight)
    model.detector_ = data.detector
    fit_s = time.perf_counter() - t0
    risk = model.predict_risk(x_test)
    test_keys = keys
    test_ts = ts[test_rows]
    test_start, test_end = int(test_ts[0]), int(test_ts[-1])
    test_incidents = [i for i in incidents if test_start + purge <= i.started_ms <= test_end]
    judged = [
        judge(
            "model",
            test_keys,
            test_ts,
            y_test,
            risk,
            test_incidents,
            cfg.horizon_s,
            cfg.min_warning_s,
            cfg.alarm_risk,
        )
    ]
    for name, score in baseline_scores(
        x_train,
        y_train,
        x_test,
        data.feature_names,
        sample_weight=sample_w,
        # Ranks among the unsampled calibration slice (the fit part's sample is skewed).
        rank_ref=x_train[len(fit_rows) :] if len(cal_rows) else None,
    ).items():
        judged.append(
            judge(
                name,
                test_keys,
                test_ts,
                y_test,
                score,
                test_incidents,
                cfg.horizon_s,
                cfg.min_warning_s,
                cfg.alarm_risk,
            )
        )
    alarms = alarms_from_scores(test_keys, test_ts, risk, cfg.alarm_risk, cfg.horizon_s)
    n_entities = len(set(test_keys))
    days = (test_end - test_start) / 86_400_000
    lead = lead_time_report(
        alarms, test_incidents, cfg.horizon_s, cfg.min_warning_s, n_entities * days
    )
    metrics = {
        "rows_train": len(rows),
        "rows_train_sampled_out": sampled_out,
        "negative_share": share,
        "rows_test": len(test_rows),
        "positives_train": int(y_train.sum()),
        "positives_test": int(y_test.sum()),
        "pr_auc": float(average_precision_score(y_test, risk)),
        "roc_auc": float(roc_auc_score(y_test, risk)) if len(np.unique(y_test)) == 2 else 0.5,
        "brier": float(brier_score_loss(y_test, risk)),
        "base_rate_test": float(y_test.mean()),
        "test_incidents": lead["incidents"],
        "incidents_caught": lead["caught"],
        "recall_at_min_warning": lead["recall"],
        "median_lead_time_s": lead["median_lead_time_s"],
        "p10_lead_time_s": judged[0]["p10_lead_s"],
        "false_alarms": lead["false_alarms"],
        "false_alarms_per_entity_day": lead["false_alarms_per_entity_day"],
        "fit_s": fit_s,
    }
    model.metrics_ = {k: float(v) for k, v in metrics.items() if v is not None}
    model.metric_names_ = data.metric_names
    model.training_data_ = data.source
    report = {
        "metrics": metrics,
        "evaluation": public(judged),
        "window": {
            "train_to": ms_to_iso(split - purge),
            "test_from": ms_to_iso(split),
            "test_to": ms_to_iso(test_end),
            "purge_s": cfg.horizon_s,
            "min_lead_s": cfg.min_warning_s,
            "alarm_risk": cfg.alarm_risk,
        },
        "per_incident": lead["per_incident"],
    }
    if data.weights_note:
        report["feedback"] = data.weights_note
    return TrainResult(model, report, y_test, risk, {r["name"]: list(r["leads_s"]) for r in judged})


def train_files(
    telemetry: Path,
    incidents: Path,
    cfg: TrainConfig,
    progress: Callable[[int], None] | None = None,
    metrics: tuple[str, ...] | None = None,
) -> tuple[RiskModel, dict[str, Any]]:
    """``precovery train``: features from a telemetry file, labels from an incidents CSV.

    ``metrics`` None takes every numeric metric column, whatever their names.
    """
    # Fail on bad columns, cells or incidents before the long pass.
    first_ms, last_ms = check_train_inputs(telemetry, incidents, metrics)
    found = read_incidents(incidents)
    sample = StreamSample(found, cfg, first_ms, last_ms)
    data = build_features(
        iter_frames(telemetry), metrics, cfg.stride, progress, source=telemetry, sample=sample
    )
    return train_model(data, found, cfg)
