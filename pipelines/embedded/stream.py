"""The in-process stream worker: poll → :class:`~pipelines.driver.Driver` → publish → commit.

The embedded default's loop (the demo), on any :class:`~predictor.ports.Source`:

1. poll a micro-batch of raw records;
2. the driver hands context to the engine (applied at its ticks by event time), decodes
   and runs the telemetry, and says what to publish;
3. publish recommendations, health snapshots and dead letters, and wait until the sink
   has acknowledged them;
4. only then commit the input offsets (at-least-once in, idempotent ids out).

When no input arrives the worker tells its :class:`~pipelines.embedded.feed.FeedMonitor`; a lost
feed is flagged on health.v1 and blames nobody (see docs/streaming.md, "Silence").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipelines.driver import (
    Driver,
    Topics,
    dead_letter,
    health_records,
    next_offsets,
    process_isolating,
)
from pipelines.embedded.feed import FeedMonitor
from predictor.engine import Engine, StepResult
from predictor.ports import OutRecord, Sink, Source

logger = logging.getLogger(__name__)

__all__ = [
    "BatchReport",
    "StreamWorker",
    "Topics",
    "dead_letter",
    "health_records",
    "process_isolating",
]


@dataclass(slots=True)
class BatchReport:
    """What one iteration did (for logs, metrics and the terminal view)."""

    records: int = 0
    telemetry: int = 0
    rejected: int = 0
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    #: Situation reports published in this iteration (``kind: situation_report``).
    reports: list[dict[str, Any]] = field(default_factory=list)
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
        self.driver = Driver(engine, self.topics, max_message_bytes, "stream")
        self.max_batch = max_batch
        self.lock = lock or threading.Lock()
        self.on_batch = on_batch
        self._stop = threading.Event()
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
        with self.lock:
            step = self.driver.step(records)
        t1 = time.perf_counter()
        self.sink.publish(step.out)
        t2 = time.perf_counter()
        self.source.commit(next_offsets(records))
        self._wm_at_input = self.engine.watermark_ms
        report.telemetry, report.rejected = step.telemetry, step.rejected
        report.recommendations, report.reports = step.recommendations, step.reports
        report.decode_s = step.decode_s
        report.engine_s, report.publish_s = t1 - t0 - step.decode_s, t2 - t1
        logger.debug(
            "batch: %d records, %d telemetry, %d rejected, %d recommendations",
            report.records,
            report.telemetry,
            report.rejected,
            len(report.recommendations),
        )
        if self.on_batch:
            self.on_batch(report, step.result)
        return report

    def _on_idle(self) -> None:
        """No input: say so once on the health topic when the feed is lost.

        A lost feed is not evidence that the fleet is down, so event time stands still
        (no heartbeat fires) unless ``failover_on_feed_loss`` lets it run on.
        """
        if not self.feed.check():
            return
        out: list[OutRecord] = []
        result: StepResult | None = None
        reports: list[dict[str, Any]] = []
        with self.lock:
            # Time runs on from the last event time seen, at wall speed.
            wm, idle = self._wm_at_input, self.feed.idle_s()
            if self.failover_on_feed_loss and wm is not None and idle is not None:
                step = self.driver.advance_to(wm + int(idle * 1000), ["telemetry_lost"])
                out, result, reports = step.out, step.result, step.reports
            if not self._lost_reported and not out:
                out = self.driver.health(["telemetry_lost"])
        self._lost_reported = True
        if out:
            self.sink.publish(out)
        if result is not None and (result.recommendations or reports) and self.on_batch:
            self.on_batch(
                BatchReport(recommendations=result.recommendations, reports=reports), result
            )
