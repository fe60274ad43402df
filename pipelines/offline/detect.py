"""Offline scoring of a telemetry file, for data scientists (``precovery detect``).

The file is streamed through the same :class:`~predictor.engine.Engine` as live data,
chunk by chunk, so memory stays bounded by the chunk size and the number of entities,
and every score uses past rows only. A history file, if given, warms the detectors up
first and is not written out.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from pipelines.files.frames import (
    ENTITY_COLUMNS,
    Layout,
    TableWriter,
    check_numeric,
    detect_layout,
    file_format,
    frame_to_batch,
    iter_frames,
    read_head,
    to_epoch_ms,
)
from predictor.engine import Engine, EngineConfig
from predictor.errors import ValidationError
from predictor.events import ms_to_iso
from predictor.risk import RiskModel

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class DetectSummary:
    rows: int
    rejected: int
    entities: int
    metrics: tuple[str, ...]
    with_risk: bool
    out: Path
    reject_reasons: dict[str, int] = field(default_factory=dict)
    format: str = "csv"


@dataclass(frozen=True, slots=True)
class DetectPlan:
    """A checked detect job: every input read enough to know the work will make sense."""

    telemetry: Path
    out: Path
    format: str
    layout: Layout
    history: Path | None = None
    model: RiskModel | None = None
    detector: str = "surprise"


def model_metrics(model: RiskModel) -> tuple[str, ...]:
    """The metric columns a model was trained on, in order (it declares them)."""
    return tuple(model.metric_names_)


def plan_detect(
    telemetry: Path,
    out: Path,
    history: Path | None = None,
    model: RiskModel | None = None,
    detector: str = "surprise",
    metrics: tuple[str, ...] | None = None,
    fmt: str | None = None,
) -> DetectPlan:
    """Validate the inputs before any scoring; raises ValidationError naming the fault.

    Checks the delimiter, the time and metric columns, text in metric cells (in the
    first rows; later chunks are checked as they stream), that the file has rows, that a
    model's metrics are present, and that ``history`` ends, per entity, before the file
    begins.
    """
    head = read_head(telemetry, n=10_000)
    if head.empty:
        raise ValidationError("empty", f"{telemetry}: a header but no rows; expected telemetry")
    layout = detect_layout(head, metrics, source=telemetry)
    if model is not None:
        wanted = model_metrics(model)
        missing = [m for m in wanted if m not in head.columns]
        if missing:
            raise ValidationError(
                "missing_field",
                f"{telemetry}: --model {model.version} needs metric columns the file lacks: "
                f"{', '.join(missing)}; give a file with them, or leave out --model",
            )
        layout = replace(layout, metrics=wanted)
        check_numeric(head, layout, telemetry)
    if history is not None:
        h_head = read_head(history, n=10_000)
        h_layout = detect_layout(h_head, layout.metrics, source=history)
        if h_layout.entities != layout.entities:
            raise ValidationError(
                "missing_field",
                f"--history {history} has entity columns ({', '.join(h_layout.entities) or 'none'})"
                f" unlike {telemetry} ({', '.join(layout.entities) or 'none'}); expected the same",
            )
        check_history_precedes(history, h_layout, telemetry, layout)
    return DetectPlan(
        telemetry=telemetry,
        out=out,
        format=fmt or file_format(out),
        layout=layout,
        history=history,
        model=model,
        detector=detector,
    )


def time_spans(path: Path, layout: Layout) -> dict[tuple[str, ...], tuple[float, float]]:
    """First and last valid time (epoch ms) per entity, reading only those columns."""
    spans: dict[tuple[str, ...], tuple[float, float]] = {}
    cols = [layout.time, *layout.entities]
    for df in iter_frames(path, 200_000, columns=cols):
        ms = to_epoch_ms(df[layout.time])
        keys = (
            [tuple(k) for k in df[list(layout.entities)].astype(str).itertuples(index=False)]
            if layout.entities
            else [("default",)] * len(df)
        )
        frame = pd.DataFrame({"k": keys, "ms": ms}).dropna()
        for key, g in frame.groupby("k", sort=False)["ms"]:
            k = cast(tuple[str, ...], key)
            lo, hi = float(g.min()), float(g.max())
            old = spans.get(k)
            spans[k] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    return spans


def check_history_precedes(
    history: Path, h_layout: Layout, telemetry: Path, layout: Layout
) -> None:
    """Refuse a history that overlaps or follows the file (its rows would all be rejected)."""
    h_spans, spans = time_spans(history, h_layout), time_spans(telemetry, layout)
    common = [k for k in spans if k in h_spans]
    if not common:
        raise ValidationError(
            "no_common_entity",
            f"--history {history} shares no entity with {telemetry}; expected history of the "
            "same systems/components/hosts",
        )
    bad = [k for k in common if h_spans[k][1] >= spans[k][0]]
    if bad:
        k = bad[0]
        (h_lo, h_hi), (lo, hi) = h_spans[k], spans[k]
        how = "follows" if h_lo > hi else "overlaps"
        raise ValidationError(
            "history_not_before",
            f"--history {history} {how} {telemetry}: for {'/'.join(k)} the history runs "
            f"{ms_to_iso(int(h_lo))} to {ms_to_iso(int(h_hi))}, the file "
            f"{ms_to_iso(int(lo))} to {ms_to_iso(int(hi))} ({len(bad)} of {len(common)} "
            "entities alike); expected history that ends before the file begins",
        )


def detect_file(
    telemetry: Path,
    out: Path,
    history: Path | None = None,
    model: RiskModel | None = None,
    detector: str = "surprise",
    metrics: tuple[str, ...] | None = None,
    chunk_rows: int = 50_000,
    progress: Progress | None = None,
    fmt: str | None = None,
) -> DetectSummary:
    """Score ``telemetry`` row by row into ``out`` (CSV or Parquet by its suffix or ``fmt``)."""
    plan = plan_detect(telemetry, out, history, model, detector, metrics, fmt)
    return run_detect(plan, chunk_rows, progress)


def run_detect(
    plan: DetectPlan, chunk_rows: int = 50_000, progress: Progress | None = None
) -> DetectSummary:
    """Score a checked plan; the output appears only when every chunk was scored."""
    layout, model = plan.layout, plan.model
    config = EngineConfig(metric_names=layout.metrics, detector=plan.detector, risk_cadence_s=0.0)
    engine = Engine(config, model=model)

    if plan.history is not None:
        h_layout = replace(detect_layout(read_head(plan.history)), metrics=layout.metrics)
        offset = 0
        for df in iter_frames(plan.history, chunk_rows):
            check_numeric(df, h_layout, plan.history, offset)
            engine.process(frame_to_batch(df, h_layout, offset), decide=False)
            offset += len(df)
        logger.info("warmed up on %d history rows", offset)

    rows = rejected = 0
    reasons: Counter[str] = Counter()
    with TableWriter(plan.out, plan.format) as writer:
        for df in iter_frames(plan.telemetry, chunk_rows):
            check_numeric(df, layout, plan.telemetry, rows)
            scored, chunk_reasons = _score_chunk(engine, df, layout, rows, model is not None)
            writer.write(scored)
            reasons.update(chunk_reasons)
            rejected += sum(chunk_reasons.values())
            rows += len(df)
            if progress:
                progress(len(df))
    return DetectSummary(
        rows=rows,
        rejected=rejected,
        entities=engine.n_entities,
        metrics=layout.metrics,
        with_risk=model is not None,
        out=plan.out,
        reject_reasons=dict(reasons),
        format=plan.format,
    )


def _score_chunk(
    engine: Engine, df: pd.DataFrame, layout: Layout, offset: int, with_risk: bool
) -> tuple[pd.DataFrame, Counter[str]]:
    batch = frame_to_batch(df, layout, offset)
    res = engine.process(batch, decide=False)
    n = len(df)
    pos = res.index - offset
    anomaly = np.full(n, np.nan)
    anomaly[pos] = res.anomaly
    reason = np.full(n, "", dtype=object)
    for r in res.rejects:
        reason[r.index - offset] = r.reason
    out = pd.DataFrame({layout.time: df[layout.time].to_numpy()})
    for c in ENTITY_COLUMNS:
        if c in layout.entities:
            out[c] = df[c].to_numpy()
    out["anomaly_score"] = anomaly
    if with_risk:
        risk = np.full(n, np.nan)
        health = np.full(n, np.nan)
        risk[pos] = res.risk
        health[pos] = res.health
        out["risk"] = risk
        out["health"] = health
    out["reject_reason"] = reason
    return out, Counter(r.reason for r in res.rejects)
