"""Offline scoring of a telemetry file, for data scientists (``precovery detect``).

The file is streamed through the same :class:`~predictor.engine.Engine` as live data,
chunk by chunk, so memory stays bounded by the chunk size and the number of entities,
and every score uses past rows only. A history file, if given, warms the detectors up
first and is not written out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.frames import (
    ENTITY_COLUMNS,
    Layout,
    TableWriter,
    detect_layout,
    frame_to_batch,
    iter_frames,
    read_head,
)
from predictor.engine import Engine, EngineConfig
from predictor.errors import ValidationError
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


def model_metrics(model: RiskModel) -> tuple[str, ...]:
    """The metric columns a model was trained on, in order."""
    seen: dict[str, None] = {}
    for name in model.feature_names_:
        if "__" in name:
            seen.setdefault(name.split("__", 1)[0], None)
    return tuple(seen)


def detect_file(
    telemetry: Path,
    out: Path,
    history: Path | None = None,
    model: RiskModel | None = None,
    detector: str = "ewmaz",
    metrics: tuple[str, ...] | None = None,
    chunk_rows: int = 50_000,
    progress: Progress | None = None,
) -> DetectSummary:
    """Score ``telemetry`` row by row into ``out`` (CSV or Parquet by its suffix)."""
    layout = detect_layout(read_head(telemetry), metrics)
    if model is not None:
        wanted = model_metrics(model)
        missing = [m for m in wanted if m not in read_head(telemetry).columns]
        if missing:
            logger.warning(
                "the model needs metrics the file lacks (%s…): scoring anomalies only",
                ", ".join(missing[:3]),
            )
            model = None
        else:
            layout = replace(layout, metrics=wanted)
    config = EngineConfig(metric_names=layout.metrics, detector=detector, risk_cadence_s=0.0)
    engine = Engine(config, model=model)

    if history is not None:
        h_layout = detect_layout(read_head(history), layout.metrics)
        h_layout = replace(h_layout, metrics=layout.metrics)
        offset = 0
        for df in iter_frames(history, chunk_rows):
            engine.process(frame_to_batch(df, h_layout, offset), decide=False)
            offset += len(df)
        logger.info("warmed up on %d history rows", offset)

    rows = rejected = 0
    with TableWriter(out) as writer:
        for df in iter_frames(telemetry, chunk_rows):
            scored, n_rejected = _score_chunk(engine, df, layout, rows, model is not None)
            writer.write(scored)
            rejected += n_rejected
            rows += len(df)
            if progress:
                progress(len(df))
    return DetectSummary(
        rows=rows,
        rejected=rejected,
        entities=engine.n_entities,
        metrics=layout.metrics,
        with_risk=model is not None,
        out=out,
    )


def _score_chunk(
    engine: Engine, df: pd.DataFrame, layout: Layout, offset: int, with_risk: bool
) -> tuple[pd.DataFrame, int]:
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
    return out, len(res.rejects)


def check_paths(telemetry: Path, history: Path | None) -> None:
    for p in (telemetry, history):
        if p is not None and not p.exists():
            raise ValidationError("not_found", f"{p} does not exist")
