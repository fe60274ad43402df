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

from pipelines.evaluation import alarms_from_scores, baseline_scores, judge, public
from pipelines.frames import (
    check_delimiter,
    check_numeric,
    detect_layout,
    frame_to_batch,
    iter_frames,
    read_head,
)
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


def build_features(
    frames: Iterable[pd.DataFrame],
    metric_names: tuple[str, ...] | None = DEFAULT_METRICS,
    stride: int = 3,
    progress: Callable[[int], None] | None = None,
    source: object = None,
) -> Dataset:
    """Run the stream's engine over history frames and keep every ``stride``-th row.

    ``metric_names`` None takes every numeric metric column of the data, whatever its
    name (the model then declares them). ``source`` names the file in error messages.
    """
    engine: Engine | None = None
    digest = hashlib.sha256()
    xs: list[np.ndarray] = []
    ts: list[np.ndarray] = []
    keys: list[tuple[str, str, str]] = []
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
        xs.append(res.features[keep])
        ts.append(res.ts_ms[keep])
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
            "from": ms_to_iso(int(all_ts.min())) if len(all_ts) else None,
            "to": ms_to_iso(int(all_ts.max())) if len(all_ts) else None,
            "rows": offset,
        },
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
    :mod:`pipelines.evaluation`, fitted on the training rows.
    """
    y, keep = make_labels(data.keys, data.ts_ms, incidents, cfg.horizon_s)
    order = np.argsort(data.ts_ms, kind="stable")
    order = order[keep[order]]
    x, y, ts = data.x[order], y[order], data.ts_ms[order]
    keys = [data.keys[i] for i in order.tolist()]
    t_min, t_max = int(ts[0]), int(ts[-1])
    split = t_min + int((t_max - t_min) * (1 - cfg.test_fraction))
    purge = int(cfg.horizon_s * 1000)
    train = ts < split - purge  # the purge keeps test labels' horizons out of training
    test = ts >= split
    if y[train].sum() == 0 or y[test].sum() == 0:
        raise ValidationError(
            "too_few_incidents",
            f"need incidents in both the train and test windows (train {int(y[train].sum())}"
            f" positive rows, test {int(y[test].sum())}; {len(incidents)} incidents in all, "
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
        seed=cfg.seed,
        num_threads=cfg.num_threads,
    ).fit(x[train], y[train], data.feature_names, sample_weight=_weights(data, order, train))
    model.detector_ = data.detector
    fit_s = time.perf_counter() - t0
    risk = model.predict_risk(x[test])
    test_keys = [k for k, good in zip(keys, test.tolist(), strict=True) if good]
    test_ts = ts[test]
    test_start, test_end = int(test_ts[0]), int(test_ts[-1])
    test_incidents = [i for i in incidents if test_start + purge <= i.started_ms <= test_end]
    y_test = y[test]
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
    for name, score in baseline_scores(x[train], y[train], x[test], data.feature_names).items():
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
        "rows_train": int(train.sum()),
        "rows_test": int(test.sum()),
        "positives_train": int(y[train].sum()),
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


def _weights(data: Dataset, order: np.ndarray, train: np.ndarray) -> np.ndarray | None:
    """Per-row training weights from feedback labels, in the training rows' order."""
    if data.weights is None:
        return None
    return np.asarray(data.weights[order][train], dtype=np.float64)


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
    check_train_inputs(telemetry, incidents, metrics)
    found = read_incidents(incidents)
    data = build_features(iter_frames(telemetry), metrics, cfg.stride, progress, source=telemetry)
    return train_model(data, found, cfg)


def check_train_inputs(
    telemetry: Path, incidents: Path, metrics: tuple[str, ...] | None = None
) -> None:
    """The checks ``precovery train`` runs before any work (ValidationError on a fault)."""
    head = read_head(telemetry, n=10_000)
    if head.empty:
        raise ValidationError("empty", f"{telemetry}: a header but no rows; expected telemetry")
    layout = detect_layout(head, metrics, source=telemetry)
    check_incidents_against(telemetry, layout, read_incidents(incidents), incidents)


def scan_entities(
    telemetry: Path, layout: Any
) -> tuple[set[tuple[str, str]], set[tuple[str, str, str]], int, int]:
    """``(components, hosts, first_ms, last_ms)`` of a telemetry file, reading only its
    time and entity columns (a quick pass before the long one)."""
    from pipelines.frames import DEFAULT_ENTITY, to_epoch_ms

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
) -> None:
    """Incidents on entities the telemetry does not have, or outside its time range, are
    named (ValidationError): their labels would silently be missing."""
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
