"""The stream worker: poll → decode → engine → publish → commit.

One loop for every source (in memory for the embedded default, Kafka in production):

1. poll a micro-batch of raw records;
2. apply market and positions records first (newest wins), then decode and validate
   the telemetry in one pass;
3. run the engine over it (features, detectors, risk, health, decisions at each tick);
4. publish recommendations, health snapshots and dead letters, and wait until the sink
   has acknowledged them;
5. only then commit the input offsets (at-least-once in, idempotent ids out).

A dead letter keeps the original bytes as its value and says where it came from and why
in headers: ``dlq.source.topic``, ``dlq.source.partition``, ``dlq.source.offset``,
``dlq.reason``, ``dlq.detail``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from pipelines.feed import FeedMonitor
from predictor.engine import Engine, StepResult
from predictor.errors import PrecoveryError, ValidationError
from predictor.events import (
    Reject,
    TelemetryBatch,
    decode_record,
    decode_telemetry,
    parse_market,
    parse_position,
)
from predictor.ports import OutRecord, RawRecord, Sink, Source

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Topics:
    telemetry: str = "telemetry.v1"
    positions: str = "positions.v1"
    market: str = "market.v1"
    recommendations: str = "recommendations.v1"
    health: str = "health.v1"
    dlq: str = "telemetry.dlq.v1"


@dataclass(slots=True)
class BatchReport:
    """What one iteration did (for logs, metrics and the terminal view)."""

    records: int = 0
    telemetry: int = 0
    rejected: int = 0
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    decode_s: float = 0.0
    engine_s: float = 0.0
    publish_s: float = 0.0


class StreamWorker:
    """Runs the engine over a source and publishes to a sink.

    ``lock`` guards the engine against readers (the API) between batches.
    """

    def __init__(
        self,
        engine: Engine,
        source: Source,
        sink: Sink,
        topics: Topics | None = None,
        max_batch: int = 5000,
        max_message_bytes: int = 64 * 1024,
        lock: threading.Lock | None = None,
        on_batch: Callable[[BatchReport, StepResult | None], None] | None = None,
        feed: FeedMonitor | None = None,
        failover_on_feed_loss: bool = False,
    ) -> None:
        self.engine = engine
        self.source = source
        self.sink = sink
        self.topics = topics or Topics()
        self.max_batch = max_batch
        self.max_message_bytes = max_message_bytes
        self.lock = lock or threading.Lock()
        self.on_batch = on_batch
        self._stop = threading.Event()
        self._last_health_tick: int | None = None
        #: Processing-time view of the input (``telemetry_lost``) and of this loop's life.
        self.feed = feed if feed is not None else FeedMonitor()
        self.failover_on_feed_loss = failover_on_feed_loss
        self._lost_reported = False
        self._wm_at_input: int | None = None

    def stop(self) -> None:
        self._stop.set()

    def run(self, poll_timeout_s: float = 0.2, idle_exit: bool = False) -> None:
        """Loop until :meth:`stop` (or, with ``idle_exit``, until a poll comes back empty).

        Whatever ends the loop is reported to :attr:`feed` (an exception: logged at ERROR,
        and readiness fails with it), so a dead worker thread is never silent.
        """
        self.feed.worker_started()
        error: Exception | None = None
        try:
            while not self._stop.is_set():
                report = self.run_once(poll_timeout_s)
                if idle_exit and report.records == 0:
                    return
        except Exception as exc:
            error = exc
            raise
        finally:
            self.feed.worker_stopped(error)

    def run_once(self, poll_timeout_s: float = 0.2) -> BatchReport:
        records = self.source.poll(self.max_batch, poll_timeout_s)
        report = BatchReport(records=len(records))
        self.feed.note(len(records))
        if not records:
            self._on_idle()
            return report
        self._lost_reported = False
        t0 = time.perf_counter()
        tele: list[RawRecord] = []
        dead: list[tuple[RawRecord, Reject]] = []
        out: list[OutRecord] = []
        with self.lock:
            for rec in records:
                if rec.topic == self.topics.telemetry:
                    tele.append(rec)
                elif rec.topic in (self.topics.market, self.topics.positions):
                    err = self._apply_context(rec)
                    if err is not None:
                        dead.append((rec, err))
                else:
                    dead.append((rec, Reject(0, "unknown_topic", rec.topic)))
            batch = decode_telemetry(
                [r.value for r in tele], self.engine.config.metric_names, self.max_message_bytes
            )
            t1 = time.perf_counter()
            result = process_isolating(self.engine, batch, "stream")
            t2 = time.perf_counter()
            health = self._health_records() if result.recommendations or self._tick_moved() else []
        for r in result.rejects:
            dead.append((tele[r.index], r))
        out.extend(self._recommendation_record(r) for r in result.recommendations)
        out.extend(health)
        out.extend(self._dead_letter(rec, why) for rec, why in dead)
        self.sink.publish(out)
        t3 = time.perf_counter()
        self.source.commit(_next_offsets(records))
        self._wm_at_input = self.engine.watermark_ms
        report.telemetry = len(tele)
        report.rejected = len(dead)
        report.recommendations = result.recommendations
        report.decode_s, report.engine_s, report.publish_s = t1 - t0, t2 - t1, t3 - t2
        logger.debug(
            "batch: %d records, %d telemetry, %d rejected, %d recommendations",
            report.records,
            report.telemetry,
            report.rejected,
            len(result.recommendations),
        )
        if self.on_batch:
            self.on_batch(report, result)
        return report

    def _on_idle(self) -> None:
        """No input: say so once on the health topic when the feed is lost.

        A lost feed is not evidence that the fleet is down, so event time stands still
        (no heartbeat fires) unless ``failover_on_feed_loss`` lets it run on.
        """
        if not self.feed.check():
            return
        out: list[OutRecord] = []
        recs: list[dict[str, Any]] = []
        with self.lock:
            # Time runs on from the last event time seen, at wall speed.
            wm, idle = self._wm_at_input, self.feed.idle_s()
            if self.failover_on_feed_loss and wm is not None and idle is not None:
                recs = self.engine.advance_to(wm + int(idle * 1000))
            if recs or not self._lost_reported:
                out = health_records(self.engine, self.topics, ["telemetry_lost"])
        self._lost_reported = True
        out[:0] = [self._recommendation_record(r) for r in recs]
        if out:
            self.sink.publish(out)
        if recs and self.on_batch:
            empty = np.zeros(0)
            result = StepResult(empty, empty, empty, empty, [], recs)
            self.on_batch(BatchReport(recommendations=recs), result)

    def _recommendation_record(self, rec: dict[str, Any]) -> OutRecord:
        return OutRecord(
            self.topics.recommendations,
            orjson.dumps(rec),
            rec["system"].encode(),
            (("idempotency-key", rec["recommendation_id"].encode()),),
        )

    def _tick_moved(self) -> bool:
        t = self.engine.last_tick_ms
        if t is not None and t != self._last_health_tick:
            self._last_health_tick = t
            return True
        return False

    def _apply_context(self, rec: RawRecord) -> Reject | None:
        market = rec.topic == self.topics.market
        try:
            item = decode_record(
                rec.value, parse_market if market else parse_position, self.max_message_bytes
            )
        except ValidationError as exc:
            return Reject(0, exc.reason, exc.detail)
        rejects = (
            self.engine.update_market([item]) if market else self.engine.update_positions([item])
        )
        return rejects[0] if rejects else None

    def _health_records(self) -> list[OutRecord]:
        return health_records(self.engine, self.topics)

    def _dead_letter(self, rec: RawRecord, why: Reject) -> OutRecord:
        return dead_letter(rec, why, self.topics)


def health_records(
    engine: Engine, topics: Topics, conditions: Sequence[str] = ()
) -> list[OutRecord]:
    """health.v1 records (key = system) for every system of ``engine``, as of its last tick.

    ``conditions`` names what the worker knows beyond the engine (``telemetry_lost``: no
    input at all, so these figures are stale, not evidence of a healthy fleet).
    """
    as_of = engine.last_tick_ms
    out = []
    for view in engine.systems_view():
        view = {**view, "as_of_ms": as_of, "conditions": list(conditions)}
        out.append(OutRecord(topics.health, orjson.dumps(view), view["system"].encode()))
    return out


def process_isolating(engine: Engine, batch: TelemetryBatch, where: str) -> StepResult:
    """``engine.process(batch)``; if it raises unexpectedly, retry row by row (poison).

    A row that still makes the engine raise is rejected as ``poison`` with the exception,
    so one record never stops a stream. Errors of the project's own tree (a model that
    does not fit, say) are not poison: they propagate.
    """
    try:
        return engine.process(batch)
    except PrecoveryError:
        raise
    except Exception as exc:
        logger.warning(
            "%s: engine failed on a batch of %d (%r); retrying one by one",
            where,
            len(batch.index) + len(batch.rejects),
            exc,
        )
    parts: list[StepResult] = []
    rejects = list(batch.rejects)
    for row in range(len(batch)):
        one = TelemetryBatch(
            keys=[batch.keys[row]],
            ts_ms=batch.ts_ms[row : row + 1],
            x=batch.x[row : row + 1],
            index=batch.index[row : row + 1],
        )
        try:
            res = engine.process(one)
        except PrecoveryError:
            raise
        except Exception as exc:
            logger.warning("%s: poison record: %r", where, exc)
            rejects.append(Reject(int(batch.index[row]), "poison", repr(exc)[:300]))
            continue
        parts.append(res)
        rejects.extend(res.rejects)
    rejects.sort(key=lambda r: r.index)

    def cat(name: str) -> np.ndarray:
        arrays = [getattr(p, name) for p in parts]
        return np.concatenate(arrays) if arrays else np.zeros(0)

    return StepResult(
        index=cat("index").astype(np.int64),
        anomaly=cat("anomaly"),
        risk=cat("risk"),
        health=cat("health"),
        rejects=rejects,
        recommendations=[r for p in parts for r in p.recommendations],
    )


def dead_letter(rec: RawRecord, why: Reject, topics: Topics) -> OutRecord:
    """telemetry.dlq.v1 record: the original bytes and key, where they came from and why."""
    headers = (
        ("dlq.source.topic", rec.topic.encode()),
        ("dlq.source.partition", str(rec.partition).encode()),
        ("dlq.source.offset", str(rec.offset).encode()),
        ("dlq.reason", why.reason.encode()),
        ("dlq.detail", why.detail[:500].encode()),
    )
    return OutRecord(topics.dlq, rec.value, rec.key, headers)


def _next_offsets(records: Sequence[RawRecord]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        if r.offset + 1 > out.get(tp, -1):
            out[tp] = r.offset + 1
    return out
