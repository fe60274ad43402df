"""Train the failure-risk model from telemetry and incident history.

Features come from the stream's own :class:`~predictor.engine.Engine` run over the
history (train/serve parity by construction). Rows are taken every ``stride``-th event
(at the default 10 s interval and stride 3, one row per 30 s: the stream's risk
cadence), labelled from incidents (:func:`predictor.labels.make_labels`), split in time
with a purge gap of one horizon between train and test, and scored on the test window
with the metrics operators care about.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from pipelines.files.frames import (
    check_delimiter,
    check_numeric,
    detect_layout,
    frame_to_batch,
    iter_frames,
    read_head,
)
from pipelines.training.evaluation import alarms_from_scores, baseline_scores, judge, public
from predictor.contracts import INCIDENT_COLUMNS
from predictor.engine import Engine, EngineConfig
from predictor.errors import ValidationError
from predictor.events import ms_to_iso, parse_ts
from predictor.features import DEFAULT_METRICS
from predictor.labels import Incident, lead_time_report, make_labels
from predictor.policy import PolicyConfig
from predictor.risk import RiskModel

logger = logging.getLogger(__name__)

Progress = Callable[[str, float], None]


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


#: Columns an incidents CSV must have; the contract's others are optional here.
INCIDENT_REQUIRED = ("system", "component", "started_at")


def read_incidents(path: Path, show: int = 3) -> list[Incident]:
    """Incidents from a CSV with the contract's columns.

    Raises ValidationError naming the missing columns, or the first rows whose times do
    not parse (rows counted from 1 after the header).
    """
    check_delimiter(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in INCIDENT_REQUIRED if c not in columns]
        if missing:
            raise ValidationError(
                "missing_field",
                f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(has: {', '.join(columns) or 'no header'}); expected at least "
                f"{', '.join(INCIDENT_REQUIRED)} of {', '.join(INCIDENT_COLUMNS)}",
            )
        incidents: list[Incident] = []
        bad: list[str] = []
        for i, row in enumerate(reader, start=1):
            try:
                incidents.append(Incident.from_record(row))
            except (ValidationError, ValueError, TypeError) as exc:
                field_name = next(
                    (c for c in ("started_at", "resolved_at") if c in str(exc)), "started_at"
                )
                bad.append(f"row {i} column {field_name} {row.get(field_name)!r}")
    if bad:
        raise ValidationError(
            "bad_timestamp",
            f"{path}: {len(bad)} row{'s' if len(bad) > 1 else ''} with a time that does not "
            f"parse: {'; '.join(bad[:show])}{' …' if len(bad) > show else ''}; expected RFC 3339 "
            "times like 2026-01-05T14:00:00Z",
        )
    return incidents


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
    """Cut ``[t_min, t_max]``: the latest ``test_fraction`` tests, one horizon before it
    is purged, the last ``calibration_fraction`` of the rest calibrates, the rest fits."""
    split = t_min + int((t_max - t_min) * (1 - cfg.test_fraction))
    train_end = split - int(cfg.horizon_s * 1000)
    cal_start = t_min + int(max(train_end - t_min, 0) * (1 - cfg.calibration_fraction))
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
        self, keys: list[tuple[str, str, str]], ts: np.ndarray, row_id: np.ndarray
    ) -> tuple[np.ndarray, int]:
        """``(keep, sampled_out)``: the rows to keep, and how many calm rows the sample
        dropped (rows inside incidents are dropped too, but not counted: never trained on)."""
        y, outside = make_labels(keys, ts, self.incidents, self.cfg.horizon_s)
        whole = (y == 1) | (ts >= self.whole_from_ms)
        kept = whole | keep_negative(row_id, self.cfg.negative_fraction)
        return outside & kept, int((outside & ~kept).sum())


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
    keys: list[tuple[str, str, str]] = []
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
        if sample is not None:
            sel = np.flatnonzero(keep)
            good, n_out = sample.mask(
                [res.keys[i] for i in sel.tolist()], res.ts_ms[sel], res.index[sel]
            )
            keep[sel[~good]] = False
            dropped += n_out
        xs.append(res.features[keep])
        ts.append(res.ts_ms[keep])
        ids.append(np.asarray(res.index[keep], dtype=np.int64))
        keys.extend(k for k, good in zip(res.keys, keep.tolist(), strict=True) if good)
        offset += len(df)
        if progress:
            progress(len(df))
    if not xs or engine is None:
        raise ValidationError("empty", "no telemetry rows")
    all_ts = np.concatenate(ts)
    return Dataset(
        x=np.concatenate(xs),
        y=np.zeros(0, dtype=np.int8),
        ts_ms=all_ts,
        keys=keys,
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
    )


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
    fit = train & ~cal & ((y == 1) | keep_negative(row_id, cfg.negative_fraction))
    fit_rows, cal_rows, test_rows = np.flatnonzero(fit), np.flatnonzero(cal), np.flatnonzero(test)
    rows = np.concatenate([fit_rows, cal_rows])  # time order: the fit's rows, then calibration
    sampled_out = int((train & ~cal).sum()) - len(fit_rows) + data.rows_sampled_out
    neg_w = 1.0 / cfg.negative_fraction if cfg.negative_fraction < 1.0 else 1.0
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


def check_train_inputs(
    telemetry: Path, incidents: Path, metrics: tuple[str, ...] | None = None
) -> tuple[int, int]:
    """The checks ``precovery train`` runs before any work (ValidationError on a fault);
    returns the telemetry's time range ``(first_ms, last_ms)``."""
    head = read_head(telemetry, n=10_000)
    if head.empty:
        raise ValidationError("empty", f"{telemetry}: a header but no rows; expected telemetry")
    layout = detect_layout(head, metrics, source=telemetry)
    return check_incidents_against(telemetry, layout, read_incidents(incidents), incidents)


def scan_entities(
    telemetry: Path, layout: Any
) -> tuple[set[tuple[str, str]], set[tuple[str, str, str]], int, int]:
    """``(components, hosts, first_ms, last_ms)`` of a telemetry file, reading only its
    time and entity columns (a quick pass before the long one)."""
    from pipelines.files.frames import DEFAULT_ENTITY, to_epoch_ms

    comps: set[tuple[str, str]] = set()
    hosts: set[tuple[str, str, str]] = set()
    lo, hi = np.inf, -np.inf
    cols = [layout.time, *layout.entities]
    for df in iter_frames(telemetry, chunk_rows=500_000, columns=cols):
        ms = to_epoch_ms(df[layout.time])
        if np.isfinite(ms).any():
            lo, hi = min(lo, float(np.nanmin(ms))), max(hi, float(np.nanmax(ms)))
        parts = [
            df[c].astype(str) if c in layout.entities else pd.Series(DEFAULT_ENTITY, df.index)
            for c in ("system", "component", "host")
        ]
        uniq = pd.DataFrame({"s": parts[0], "c": parts[1], "h": parts[2]}).drop_duplicates()
        for s_, c_, h_ in uniq.itertuples(index=False):
            comps.add((s_, c_))
            hosts.add((s_, c_, h_))
    if not np.isfinite(lo):
        raise ValidationError("empty", f"{telemetry}: no row with a time that parses")
    return comps, hosts, int(lo), int(hi)


def check_incidents_against(
    telemetry: Path, layout: Any, incidents: list[Incident], incidents_path: Path, show: int = 3
) -> tuple[int, int]:
    """Incidents on entities the telemetry does not have, or outside its time range, are
    named (ValidationError): their labels would silently be missing. Returns the
    telemetry's time range ``(first_ms, last_ms)``."""
    comps, hosts, lo, hi = scan_entities(telemetry, layout)
    unknown = sorted(
        {
            f"{i.system}/{i.component}" + (f"/{i.host}" if i.host else "")
            for i in incidents
            if (i.system, i.component) not in comps
            or (i.host is not None and (i.system, i.component, i.host) not in hosts)
        }
    )
    if unknown:
        raise ValidationError(
            "unknown_entity",
            f"{incidents_path}: {len(unknown)} entit{'ies' if len(unknown) > 1 else 'y'} not in "
            f"{telemetry}: {', '.join(unknown[:show])}{' …' if len(unknown) > show else ''} "
            f"(system/component[/host]; the telemetry has {len(comps)} components)",
        )
    outside = [i for i in incidents if not lo <= i.started_ms <= hi]
    if outside:
        names = [f"{i.incident_id or '?'} at {ms_to_iso(i.started_ms)}" for i in outside]
        raise ValidationError(
            "outside_time_range",
            f"{incidents_path}: {len(outside)} incident{'s' if len(outside) > 1 else ''} "
            f"outside the telemetry's time range {ms_to_iso(lo)} .. {ms_to_iso(hi)}: "
            f"{', '.join(names[:show])}{' …' if len(names) > show else ''}; trim the incident "
            "history to the telemetry's period",
        )
    return lo, hi


#: Weight of a training row that an SRE's ``false_alarm`` verdict covers (others weigh 1).
FALSE_ALARM_WEIGHT = 3.0
FEEDBACK_COLUMNS = ("system", "component", "verdict", "ts")


def apply_feedback(
    data: Dataset, incidents: list[Incident], path: Path, cfg: TrainConfig
) -> list[Incident]:
    """Fold SREs' verdicts (``precovery feedback-export``) into the labels.

    - ``confirmed`` and ``missed`` at time ``ts`` on a component: an incident starting
      at ``ts``, unless the incident history already has one on that component within
      one horizon of it (the history wins: it has the real start time);
    - ``false_alarm`` at ``ts``: that component's rows in the horizon before ``ts`` weigh
      ``FALSE_ALARM_WEIGHT`` in the fit (they are negatives the model got wrong), unless
      an incident follows within the horizon (then the history wins and the verdict is
      counted as overruled);
    - ``acknowledged`` says nothing about the truth and is ignored.

    Sets ``data.weights`` and ``data.weights_note``; returns the incidents to label with.
    """
    try:
        fb = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ValidationError("bad_file", f"{path}: cannot read feedback labels: {exc}") from exc
    missing = [c for c in FEEDBACK_COLUMNS if c not in fb.columns]
    if missing:
        raise ValidationError(
            "missing_field",
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(has: {', '.join(map(str, fb.columns))}); expected {', '.join(FEEDBACK_COLUMNS)}",
        )
    h = int(cfg.horizon_s * 1000)
    by_comp: dict[tuple[str, str], list[int]] = {}
    for inc in incidents:
        by_comp.setdefault((inc.system, inc.component), []).append(inc.started_ms)
    comp_of = np.array([f"{k[0]}\x00{k[1]}" for k in data.keys], dtype=object)
    weights = np.ones(len(data.keys))
    added: list[Incident] = []
    note = {"confirmed_added": 0, "missed_added": 0, "false_alarm_rows": 0, "overruled": 0}
    records: list[dict[str, Any]] = fb.to_dict("records")  # type: ignore[assignment]
    for i, rec in enumerate(records, start=1):
        verdict = str(rec["verdict"])
        try:
            t = parse_ts(str(rec["ts"]))
        except (ValidationError, ValueError) as exc:
            raise ValidationError(
                "bad_timestamp", f"{path}: row {i} column ts {rec['ts']!r} does not parse"
            ) from exc
        comp = (str(rec["system"]), str(rec["component"]))
        near = [s for s in by_comp.get(comp, []) if abs(s - t) <= h]
        if verdict in ("confirmed", "missed"):
            if near:
                note["overruled"] += 1
                continue
            added.append(Incident(comp[0], comp[1], None, t, None, f"feedback_{verdict}"))
            by_comp.setdefault(comp, []).append(t)
            note[f"{verdict}_added"] += 1
        elif verdict == "false_alarm":
            if any(t <= s <= t + h for s in by_comp.get(comp, [])):
                note["overruled"] += 1
                continue
            hit = (comp_of == f"{comp[0]}\x00{comp[1]}") & (data.ts_ms >= t - h) & (data.ts_ms <= t)
            weights[hit] = FALSE_ALARM_WEIGHT
            note["false_alarm_rows"] += int(hit.sum())
        elif verdict != "acknowledged":
            raise ValidationError(
                "bad_value",
                f"{path}: row {i} column verdict {verdict!r}: expected confirmed, missed, "
                "false_alarm or acknowledged",
            )
    data.weights = weights
    data.weights_note = {"file": str(path), "false_alarm_weight": FALSE_ALARM_WEIGHT, **note}
    return incidents + added


def sim_frames(sim: Any, hours: float) -> Iterator[pd.DataFrame]:
    """Telemetry frames of a simulator, an hour at a time."""
    for chunk in sim.iter_chunks(hours, chunk_s=3600.0):
        yield chunk.telemetry
