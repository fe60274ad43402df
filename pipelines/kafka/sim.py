"""The simulator into Kafka: telemetry.v1, positions.v1, market.v1 and incidents.

Records follow DESIGN.md §2, keyed by system (market by venue). Context comes first: each
chunk's market and positions records are acknowledged before its telemetry is sent, so a
worker that has read telemetry up to event time ``t`` can always find the context up to
``t`` in Kafka (the stream's event-time join relies on it; see docs/streaming.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from pipelines.embedded.stream import Topics
from pipelines.kafka.client_python import KafkaSink, make_producer
from predictor.events import parse_ts
from predictor.ports import OutRecord
from predictor.sim import SimConfig, Simulator, telemetry_events
from predictor.sim.faults import KAFKA_KINDS, bad_message

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class SimSent:
    """What :func:`simulate_to_kafka` produced."""

    telemetry: int = 0
    positions: int = 0
    market: int = 0
    incidents: int = 0
    bad: int = 0
    seconds: float = 0.0
    bad_kinds: dict[str, int] = field(default_factory=dict)


def simulate_to_kafka(
    bootstrap: str,
    sim_config: SimConfig,
    hours: float,
    topics: Topics | None = None,
    incidents_topic: str | None = "incidents.v1",
    rate: float = 0.0,
    chunk_s: float = 300.0,
    bad_every: int = 0,
    start_s: float = 0.0,
    progress: Callable[[float], None] | None = None,
    sink: KafkaSink | None = None,
) -> SimSent:
    """Produce ``hours`` of simulated fleet data; returns the counts.

    Parameters
    ----------
    rate
        Telemetry events per wall second (0: as fast as possible).
    bad_every
        Every ``bad_every``-th telemetry record is replaced by a broken one (0: never).
    start_s
        Offset of the range from the simulation start.
    progress
        Called with the fraction done after each chunk.
    """
    topics = topics or Topics()
    sim = Simulator(sim_config)
    own = sink is None
    sink = sink or KafkaSink(make_producer(bootstrap, client_id="precovery-simulate"))
    sent = SimSent()
    incidents = sorted(sim.incidents(start_s / 3600.0 + hours), key=lambda d: d["started_at"])
    t0 = time.monotonic()
    range_start_ms = sim.start_ms + int(round(start_s * 1000))
    n = 0
    try:
        for chunk in sim.iter_chunks(hours, chunk_s=chunk_s, start_s=start_s):
            context: list[OutRecord] = [
                OutRecord(topics.market, orjson.dumps(m), m["venue"].encode()) for m in chunk.market
            ]
            context += [
                OutRecord(topics.positions, orjson.dumps(p), p["system"].encode())
                for p in chunk.positions
            ]
            if incidents_topic:
                while incidents and parse_ts(incidents[0]["started_at"]) < chunk.t1_ms:
                    inc = incidents.pop(0)
                    context.append(
                        OutRecord(incidents_topic, orjson.dumps(inc), inc["system"].encode())
                    )
                    sent.incidents += 1
            sink.publish(context)  # acknowledged before the telemetry that follows it
            sent.market += len(chunk.market)
            sent.positions += len(chunk.positions)
            tele: list[OutRecord] = []
            for ev in telemetry_events(chunk.telemetry):
                n += 1
                if bad_every and n % bad_every == 0:
                    reason, value = bad_message(n // bad_every, ev, KAFKA_KINDS)
                    sent.bad += 1
                    sent.bad_kinds[reason] = sent.bad_kinds.get(reason, 0) + 1
                else:
                    value = orjson.dumps(ev)
                tele.append(OutRecord(topics.telemetry, value, ev["system"].encode()))
            _send_paced(sink, tele, rate, t0, sent.telemetry)
            sent.telemetry += len(tele)
            if progress:
                progress(min(1.0, (chunk.t1_ms - range_start_ms) / (hours * 3_600_000)))
    finally:
        if own:
            sink.close()
    sent.seconds = time.monotonic() - t0
    logger.info(
        "produced %d telemetry (%d broken), %d positions, %d market, %d incidents in %.1f s",
        sent.telemetry,
        sent.bad,
        sent.positions,
        sent.market,
        sent.incidents,
        sent.seconds,
    )
    return sent


def _send_paced(
    sink: KafkaSink, records: Sequence[OutRecord], rate: float, t0: float, before: int
) -> None:
    if rate <= 0:
        sink.publish(records)
        return
    step = max(1, int(rate / 50))  # about 50 sends a second
    for i in range(0, len(records), step):
        due = t0 + (before + i) / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sink.publish(records[i : i + step])
