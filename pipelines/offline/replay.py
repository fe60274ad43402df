"""Replays: a history (files or the simulator) through the stream's own driver.

- ``precovery replay --history DIR --out FILE`` runs a recorded or simulated history
  (the contracts' files) through :class:`~pipelines.embedded.stream.StreamWorker` — the driver the
  embedded stream and every Kafka partition run — and writes the recommendations.v1
  records one JSON object per line, exactly as they would be published
  (:func:`replay_history`).
- ``precovery evaluate --hours 24`` does the same over a simulated fleet's records, then
  compares the failover recommendations with the simulator's incidents: incidents
  foreseen, lead times, and false failover recommendations per entity-day — the
  operator's view of the model, beyond its row-level PR-AUC (:func:`replay`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from pipelines.driver import Topics
from pipelines.embedded.stream import StreamWorker
from pipelines.files.ports import IterSource, JsonLinesSink, history_records
from predictor.engine import Engine, EngineConfig
from predictor.events import parse_ts
from predictor.labels import Alarm, Incident, lead_time_report
from predictor.ports import OutRecord, RawRecord, Sink
from predictor.risk import RiskModel
from predictor.sim import SimConfig, Simulator, telemetry_events

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


def sim_records(sim: Simulator, hours: float, topics: Topics | None = None) -> Iterator[RawRecord]:
    """The simulator's records as the topics would carry them (context first per chunk)."""
    topics = topics or Topics()
    offsets: dict[str, int] = {}

    def rec(topic: str, obj: dict[str, Any], key: str) -> RawRecord:
        off = offsets.get(topic, 0)
        offsets[topic] = off + 1
        return RawRecord(topic, orjson.dumps(obj), key.encode(), 0, off)

    for chunk in sim.iter_chunks(hours, chunk_s=60.0):
        for m in chunk.market:
            yield rec(topics.market, m, m["venue"])
        for p in chunk.positions:
            yield rec(topics.positions, p, p["system"])
        for ev in telemetry_events(chunk.telemetry):
            yield rec(topics.telemetry, ev, ev["system"])


def run_records(
    engine: Engine,
    records: Iterable[RawRecord],
    sink: Sink,
    progress: Callable[[int], None] | None = None,
    batch: int = 5000,
) -> list[dict[str, Any]]:
    """Every record through the stream worker's driver; returns the recommendations."""
    source = IterSource(records)
    worker = StreamWorker(engine, source, sink, max_batch=batch)
    recs: list[dict[str, Any]] = []
    while not source.exhausted:
        report = worker.run_once(0.0)
        recs.extend(report.recommendations)
        if progress:
            progress(report.records)
    return recs


def replay_history(
    history: Path,
    out: IO[bytes],
    config: EngineConfig,
    model: RiskModel | None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run a history folder through the driver; recommendations.v1 lines go to ``out``."""
    topics = Topics()
    engine = Engine(config, model=model)
    sink = JsonLinesSink(out, topics.recommendations)
    recs = run_records(engine, history_records(history, topics), sink, progress)
    return {
        "history": str(history),
        "events": engine.counters["events"],
        "rejected": engine.counters["rejected"],
        "reject_reasons": dict(engine.reject_reasons),
        "recommendations": len(recs),
        "actions": dict(Counter(r["action"] for r in recs)),
        "dead_letters": sink.counts[topics.dlq],
        "model_version": engine.model_version,
    }


def replay(
    model: RiskModel, cfg: ReplayConfig, progress: Callable[[float], None] | None = None
) -> dict[str, Any]:
    """Run the loop over ``cfg.hours`` simulated hours; return the decision report."""
    sim = Simulator(SimConfig(seed=cfg.seed, failures_per_day=cfg.failures_per_day))
    critical = {(s.name, c.name): c.critical for s in sim.fleet.systems for c in s.components}
    engine = Engine(
        EngineConfig(), model=model, critical=critical, system_venue=sim.fleet.system_venue
    )
    total = max(1, int(cfg.hours * 3600 / sim.config.interval_s) * len(sim.fleet.entities))
    seen = [0]

    def tick(n: int) -> None:
        seen[0] += n
        if progress:
            progress(min(1.0, seen[0] / total))

    recs = run_records(engine, sim_records(sim, cfg.hours), _Discard(), tick)
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


class _Discard:
    """A sink that keeps nothing (the evaluation reads the recommendations returned)."""

    def publish(self, records: Sequence[OutRecord]) -> None:
        pass


def _is_heartbeat(rec: dict[str, Any]) -> bool:
    """A failover from the heartbeat rule: a failure now, not a forecast."""
    return bool(rec["reasons"]) and rec["reasons"][0]["feature"] == "heartbeat_missed_s"
