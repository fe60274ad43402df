"""The training rows: settings, the dataset, the time windows and the stream sample.

Features come from the stream's own :class:`~predictor.engine.Engine` run over the
history (train/serve parity by construction). Rows are taken every ``stride``-th event
(at the default 10 s interval and stride 3, one row per 30 s: the stream's risk
cadence); :class:`StreamSample` drops, while the features stream, the calm rows the fit
would not see. Part of :mod:`pipelines.training.train`, which re-exports every name.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.files.frames import check_numeric, detect_layout, frame_to_batch
from predictor.engine import Engine, EngineConfig
from predictor.errors import ValidationError
from predictor.events import ms_to_iso
from predictor.features import DEFAULT_METRICS
from predictor.labels import Incident, make_labels
from predictor.policy import PolicyConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Training settings.

    Attributes
    ----------
    horizon_s
        Label horizon H, seconds: positive if an incident starts within H.
    stride
        Keep every ``stride``-th event row (autocorrelated neighbours add little).
    test_fraction
        Share of the time range held out for the test window (the latest part).
    min_warning_s
        An incident counts as caught only with at least this much warning, seconds.
    alarm_risk
        Risk at which an alarm is counted in the lead-time metrics.
    n_estimators, learning_rate, num_leaves
        LightGBM parameters.
    negative_fraction
        Share of the negative rows of the fitting part of the training window that the
        fit sees (1.0: all). Positives, the calibration slice and the test window are
        always kept whole; a kept negative weighs ``1 / negative_fraction`` so the fit
        sees the base rate it would have seen on every row. See docs/retraining.md.
    calibration_fraction
        Share of the training rows, the latest (counted before sampling), that
        calibrates the model.
    max_test_s, max_calibration_s, max_fit_negatives
        Bounds that keep memory flat however long the history: the test window is at
        most ``max_test_s`` (3 days), the calibration slice at most ``max_calibration_s``
        (1 day), and the fit sees at most ``max_fit_negatives`` sampled negatives (the
        sample's share is halved, while the features stream, until it fits: the same rows
        whatever the chunking). A week of history is under every bound.
    """

    horizon_s: float = 1800.0
    stride: int = 3
    test_fraction: float = 0.3
    min_warning_s: float = 300.0
    alarm_risk: float = PolicyConfig().act_risk
    n_estimators: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 31
    seed: int = 7
    #: LightGBM threads while fitting (the machine's cores by default).
    num_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    #: Fewer incidents than this in the test window: too few to judge the model (weak).
    min_test_incidents: int = 5
    #: Calm rows are highly redundant (neighbours 30 s apart, base rate ~1 %): the fit
    #: keeps every positive and this share of the negatives, weighted back.
    negative_fraction: float = 0.1
    calibration_fraction: float = 0.2
    max_test_s: float = 3 * 86_400.0
    max_calibration_s: float = 86_400.0
    max_fit_negatives: int = 200_000


@dataclass(slots=True)
class Dataset:
    x: np.ndarray
    y: np.ndarray
    ts_ms: np.ndarray
    keys: list[tuple[str, str, str]]
    feature_names: list[str]
    #: The detector whose anomaly scores are among the features (the model records it).
    detector: str | None = None
    #: The telemetry metrics the features came from, in order (the model declares them).
    metric_names: tuple[str, ...] = ()
    #: What the rows came from: ``sha256`` of the input, ``from``/``to`` (RFC 3339), ``rows``.
    source: dict[str, Any] | None = None
    #: Per-row training weights (feedback labels); None: all rows weigh 1.
    weights: np.ndarray | None = None
    #: What the feedback changed (counts), for the report; None without feedback.
    weights_note: dict[str, Any] | None = None
    #: Global telemetry row number of each row (the negative sample is a hash of it, so
    #: it does not depend on chunking or on where the sample was taken).
    row_id: np.ndarray | None = None
    #: ``(first, last)`` time of every strided row, ms, sampled out or not: the windows
    #: are cut from it, so sampling while streaming does not move them.
    span_ms: tuple[int, int] | None = None
    #: Rows dropped while streaming (negatives of the fitting part, not sampled).
    rows_sampled_out: int = 0
    #: With a stream sample: from this time on, ms, every row was kept.
    whole_from_ms: int | None = None
    #: With a stream sample: the share of the fitting part's negatives kept (the
    #: configured one, or less when ``max_fit_negatives`` bound it); None: no sample.
    negative_fraction: float | None = None


@dataclass(frozen=True, slots=True)
class Windows:
    """The time windows of a training run, ms: training ``[t_min, train_end)``, purge
    ``[train_end, split)``, test ``[split, t_max]``; ``cal_start`` estimates, in time,
    where the calibration slice (a share of the training rows) starts."""

    t_min: int
    t_max: int
    split: int
    train_end: int
    cal_start: int


def windows(t_min: int, t_max: int, cfg: TrainConfig) -> Windows:
    """Cut ``[t_min, t_max]``: the latest ``test_fraction`` (at most ``max_test_s``)
    tests, one horizon before it is purged, the last ``calibration_fraction`` of the rest
    (at most ``max_calibration_s``) calibrates, the rest fits."""
    test_ms = min(int((t_max - t_min) * cfg.test_fraction), int(cfg.max_test_s * 1000))
    split = t_max - test_ms
    train_end = split - int(cfg.horizon_s * 1000)
    cal_ms = int(max(train_end - t_min, 0) * cfg.calibration_fraction)
    cal_start = train_end - min(cal_ms, int(cfg.max_calibration_s * 1000))
    return Windows(t_min, t_max, split, train_end, cal_start)


def keep_negative(row_id: np.ndarray, fraction: float) -> np.ndarray:
    """Which rows a ``fraction`` sample of the negatives keeps: a fixed hash of the global
    row number (Fibonacci hashing, top 24 bits), so the sample is the same whether it is
    taken while streaming or before the fit, however the history was chunked."""
    if fraction >= 1.0:
        return np.ones(len(row_id), dtype=bool)
    h = (np.asarray(row_id, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    return h < np.uint64(int(fraction * (1 << 24)))


@dataclass(frozen=True, slots=True)
class StreamSample:
    """Drop, while the features stream, the rows the fit would not see: bounded memory.

    Kept: every labelled-positive row, every row from (about) the calibration slice on
    (the calibration slice and the test window are never sampled), and the negatives
    :func:`keep_negative` keeps; rows inside an incident are dropped (never trained on).
    ``first_ms``/``last_ms`` is the history's time range, known before the pass (the
    simulator's hours; :func:`scan_entities` for a file). The windows are cut again from
    the rows' own range afterwards; the hour of margin makes the kept rows a superset of
    what :func:`train_full` samples.
    """

    incidents: list[Incident]
    cfg: TrainConfig
    first_ms: int
    last_ms: int
    margin_ms: int = 3_600_000

    @property
    def whole_from_ms(self) -> int:
        """Every row from this time on is kept (the calibration slice, with a margin)."""
        return windows(self.first_ms, self.last_ms, self.cfg).cal_start - self.margin_ms

    def mask(
        self,
        keys: list[tuple[str, str, str]],
        ts: np.ndarray,
        row_id: np.ndarray,
        fraction: float | None = None,
    ) -> tuple[np.ndarray, int, np.ndarray]:
        """``(keep, sampled_out, sampled)``: the rows to keep, how many calm rows the
        sample dropped (rows inside incidents are dropped too, but not counted: never
        trained on), and which kept rows are there by the sample (``fraction``, default
        the configured one) rather than kept whole."""
        y, outside = make_labels(keys, ts, self.incidents, self.cfg.horizon_s)
        whole = (y == 1) | (ts >= self.whole_from_ms)
        by_sample = keep_negative(
            row_id, self.cfg.negative_fraction if fraction is None else fraction
        )
        kept = whole | by_sample
        return outside & kept, int((outside & ~kept).sum()), outside & ~whole & by_sample


def build_features(
    frames: Iterable[pd.DataFrame],
    metric_names: tuple[str, ...] | None = DEFAULT_METRICS,
    stride: int = 3,
    progress: Callable[[int], None] | None = None,
    source: object = None,
    sample: StreamSample | None = None,
) -> Dataset:
    """Run the stream's engine over history frames and keep every ``stride``-th row.

    ``metric_names`` None takes every numeric metric column of the data, whatever its
    name (the model then declares them). ``source`` names the file in error messages.
    ``sample`` drops, chunk by chunk, the calm rows the fit would not see (memory then
    grows with the positives and the last part of the history, not with its length).
    """
    engine: Engine | None = None
    digest = hashlib.sha256()
    xs: list[np.ndarray] = []
    ts: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    keys: list[list[tuple[str, str, str]]] = []
    #: per chunk, the kept rows that are there by the negative sample (droppable)
    sampled: list[np.ndarray] = []
    fraction = sample.cfg.negative_fraction if sample is not None else None
    lo, hi = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    dropped = 0
    offset = 0
    layout = None
    for df in frames:
        if layout is None:
            layout = detect_layout(df, metric_names, source=source)
            engine = Engine(EngineConfig(metric_names=layout.metrics))
        else:
            check_numeric(df, layout, source, offset)
        assert engine is not None
        digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
        res = engine.process(
            frame_to_batch(df, layout, offset), collect_features=True, decide=False
        )
        assert res.features is not None and res.ts_ms is not None
        # Stride on the global row number so chunking does not change the sample.
        keep = (res.index % stride) == 0
        if keep.any():
            lo = min(lo, int(res.ts_ms[keep].min()))
            hi = max(hi, int(res.ts_ms[keep].max()))
        by_sample = np.zeros(len(keep), dtype=bool)
        if sample is not None:
            sel = np.flatnonzero(keep)
            good, n_out, neg = sample.mask(
                [res.keys[i] for i in sel.tolist()], res.ts_ms[sel], res.index[sel], fraction
            )
            keep[sel[~good]] = False
            by_sample[sel[neg]] = True
            dropped += n_out
        xs.append(res.features[keep])
        ts.append(res.ts_ms[keep])
        ids.append(np.asarray(res.index[keep], dtype=np.int64))
        keys.append([k for k, good in zip(res.keys, keep.tolist(), strict=True) if good])
        sampled.append(by_sample[keep])
        if sample is not None and fraction is not None:
            fraction, n_drop = _bound_sample(xs, ts, ids, keys, sampled, fraction, sample.cfg)
            dropped += n_drop
        offset += len(df)
        if progress:
            progress(len(df))
    if not xs or engine is None:
        raise ValidationError("empty", "no telemetry rows")
    all_ts = np.concatenate(ts)
    return Dataset(
        x=_concat_freeing(xs),
        y=np.zeros(0, dtype=np.int8),
        ts_ms=all_ts,
        keys=[k for chunk in keys for k in chunk],
        feature_names=engine.feature_names,
        detector=engine.config.detector,
        metric_names=tuple(engine.config.metric_names),
        source={
            "sha256": digest.hexdigest(),
            "from": ms_to_iso(lo) if lo <= hi else None,
            "to": ms_to_iso(hi) if lo <= hi else None,
            "rows": offset,
        },
        row_id=np.concatenate(ids),
        span_ms=(lo, hi) if lo <= hi else None,
        rows_sampled_out=dropped,
        whole_from_ms=None if sample is None else sample.whole_from_ms,
        negative_fraction=fraction,
    )


def _concat_freeing(chunks: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate(chunks)`` that frees each chunk once copied: the peak is the
    result and one chunk, not two copies of everything."""
    out = np.empty((sum(len(c) for c in chunks), *chunks[0].shape[1:]), dtype=chunks[0].dtype)
    at = 0
    for i in range(len(chunks)):
        c = chunks[i]
        out[at : at + len(c)] = c
        at += len(c)
        chunks[i] = c[:0]  # drop the list's reference: the chunk is freed
        del c
    return out


def _bound_sample(
    xs: list[np.ndarray],
    ts: list[np.ndarray],
    ids: list[np.ndarray],
    keys: list[list[tuple[str, str, str]]],
    sampled: list[np.ndarray],
    fraction: float,
    cfg: TrainConfig,
) -> tuple[float, int]:
    """Halve the negative sample's share until it holds at most ``max_fit_negatives``
    rows, dropping from the chunks kept so far; returns ``(share, rows dropped)``. The
    sample at share f/2 is a subset of the one at f (one hash threshold), so the rows kept
    do not depend on when the halving happened."""
    n = sum(int(b.sum()) for b in sampled)
    if n <= cfg.max_fit_negatives:
        return fraction, 0
    while n > cfg.max_fit_negatives:
        fraction /= 2.0
        n = sum(
            int((b & keep_negative(i, fraction)).sum()) for b, i in zip(sampled, ids, strict=True)
        )
    dropped = 0
    for c, (b, i) in enumerate(zip(sampled, ids, strict=True)):
        stay = ~b | keep_negative(i, fraction)
        if stay.all():
            continue
        dropped += int((~stay).sum())
        xs[c], ts[c], ids[c], sampled[c] = xs[c][stay], ts[c][stay], i[stay], b[stay]
        keys[c] = [k for k, good in zip(keys[c], stay.tolist(), strict=True) if good]
    logger.info("negative sample bounded: %.4g of the calm rows kept", fraction)
    return fraction, dropped


def sim_frames(sim: Any, hours: float) -> Iterator[pd.DataFrame]:
    """Telemetry frames of a simulator, an hour at a time."""
    for chunk in sim.iter_chunks(hours, chunk_s=3600.0):
        yield chunk.telemetry
