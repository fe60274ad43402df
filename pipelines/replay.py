"""Replay a simulated fleet through the full loop and score the decisions.

``precovery evaluate --hours 24`` runs the engine with its decisions (ticks, policy,
hysteresis) over simulated telemetry, positions and market data, then compares the
failover recommendations with the simulator's incidents: incidents foreseen, lead
times, and false failover recommendations per entity-day. This is the operator's view
of the model, beyond its row-level PR-AUC.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipelines.frames import detect_layout, frame_to_batch
from predictor.engine import Engine, EngineConfig
from predictor.events import parse_ts
from predictor.labels import Alarm, Incident, lead_time_report
from predictor.risk import RiskModel
from predictor.sim import SimConfig, Simulator

logger = logging.getLogger(__name__)

FAILOVER = ("failover_at_window", "failover_now")
PREPARE = ("prepare_standby", *FAILOVER)


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """Settings of an evaluation replay (a seed unlike the training one)."""

    hours: float = 24.0
    seed: int = 2027
    failures_per_day: float = 12.0
    warmup_h: float = 1.0
    min_warning_s: float = 300.0


def replay(
    model: RiskModel, cfg: ReplayConfig, progress: Callable[[float], None] | None = None
) -> dict[str, Any]:
    """Run the loop over ``cfg.hours`` simulated hours; return the decision report."""
    sim = Simulator(SimConfig(seed=cfg.seed, failures_per_day=cfg.failures_per_day))
    critical = {(s.name, c.name): c.critical for s in sim.fleet.systems for c in s.components}
    engine = Engine(
        EngineConfig(), model=model, critical=critical, system_venue=sim.fleet.system_venue
    )
    recs: list[dict[str, Any]] = []
    layout = None
    offset = 0
    for chunk in sim.iter_chunks(cfg.hours, chunk_s=60.0):
        engine.add_market(chunk.market)
        engine.add_positions(chunk.positions)
        if layout is None:
            layout = detect_layout(chunk.telemetry, engine.config.metric_names)
        res = engine.process(frame_to_batch(chunk.telemetry, layout, offset))
        offset += len(chunk.telemetry)
        recs.extend(res.recommendations)
        if progress:
            progress((chunk.t1_ms - sim.start_ms) / 3_600_000 / cfg.hours)
    warm_until = sim.start_ms + int(cfg.warmup_h * 3_600_000)
    incidents = [
        Incident.from_record(r)
        for r in sim.incidents(cfg.hours)
        if parse_ts(r["started_at"]) >= warm_until
    ]
    n_entities = len(sim.fleet.entities)
    days = (cfg.hours - cfg.warmup_h) / 24.0

    def report(actions: tuple[str, ...]) -> dict[str, Any]:
        alarms = [
            Alarm(r["system"], r["component"], parse_ts(r["issued_at"]))
            for r in recs
            if r["action"] in actions
            and parse_ts(r["issued_at"]) >= warm_until
            and not _is_heartbeat(r)
        ]
        return lead_time_report(
            alarms, incidents, engine.horizon_s, cfg.min_warning_s, n_entities * days
        )

    heartbeat = sum(1 for r in recs if _is_heartbeat(r))
    return {
        "hours": cfg.hours,
        "seed": cfg.seed,
        "entities": n_entities,
        "events": engine.counters["events"],
        "recommendations": len(recs),
        "heartbeat_failovers": heartbeat,
        "failover": report(FAILOVER),
        "prepare_or_failover": report(PREPARE),
        "model_version": model.version,
    }


def _is_heartbeat(rec: dict[str, Any]) -> bool:
    """A failover from the heartbeat rule: a failure now, not a forecast."""
    return bool(rec["reasons"]) and rec["reasons"][0]["feature"] == "heartbeat_missed_s"
