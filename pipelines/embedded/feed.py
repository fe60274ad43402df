"""The stream worker's view of its input in *processing* time, for readiness and alerts.

Event time (in :mod:`predictor`) cannot tell "the fleet went quiet" from "we stopped
hearing the fleet": both look like no events. The edge can: a :class:`FeedMonitor` is
told by the worker loop how many records each poll brought and what the consumer lag
is, and says whether the feed is *lost* (``telemetry_lost``: nothing arrived for
``lost_after_s`` seconds of wall time), whether the worker thread is alive, and why
not. Readiness probes, ``/v1/status``, ``/metrics`` and the health topic read it.

>>> t = [0.0]
>>> feed = FeedMonitor(lost_after_s=30.0, clock=lambda: t[0])
>>> feed.worker_started(); feed.note(100)
>>> t[0] = 31.0
>>> feed.lost, feed.conditions()
(True, ['telemetry_lost'])
>>> feed.note(5); feed.lost
False
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class FeedMonitor:
    """Processing-time freshness of the input, consumer lag and the worker's liveness.

    Parameters
    ----------
    lost_after_s
        Wall-clock seconds without a single input record after which the feed counts as
        lost (``telemetry_lost``). Until the first record, counted from the worker start.
    max_lag
        Consumer lag (records) above which the worker is not ready.
    clock
        Monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        lost_after_s: float = 30.0,
        max_lag: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lost_after_s = lost_after_s
        self.max_lag = max_lag
        self._clock = clock
        self._lock = threading.Lock()
        self._last_input: float | None = None
        self._started: float | None = None
        self.records = 0
        self.lag: int | None = None
        self.worker_alive = False
        self.worker_error: str | None = None
        self._was_lost = False

    # -- written by the worker --------------------------------------------------------
    def worker_started(self) -> None:
        with self._lock:
            self.worker_alive = True
            self.worker_error = None
            self._started = self._clock()

    def worker_stopped(self, error: BaseException | None = None) -> None:
        """The worker loop ended; with ``error`` it died (logged at ERROR)."""
        with self._lock:
            self.worker_alive = False
            if error is not None:
                self.worker_error = f"{type(error).__name__}: {error}"[:300]
        if error is not None:
            logger.error("stream worker died: %r", error, exc_info=error)

    def note(self, records: int, lag: int | None = None) -> None:
        """One poll brought ``records`` input records; ``lag`` as the consumer sees it."""
        with self._lock:
            if records:
                self._last_input = self._clock()
                self.records += records
            if lag is not None:
                self.lag = lag
        self._log_transition()

    # -- read by the API and the health topic -----------------------------------------
    def idle_s(self) -> float | None:
        """Seconds since the last input record (since the start if none yet; None: not started)."""
        with self._lock:
            ref = self._last_input if self._last_input is not None else self._started
            return None if ref is None else max(0.0, self._clock() - ref)

    @property
    def lost(self) -> bool:
        idle = self.idle_s()
        return idle is not None and idle > self.lost_after_s

    def conditions(self) -> list[str]:
        """Named conditions now in force (``telemetry_lost``, ``worker_dead``, ``lagging``)."""
        out = []
        if self.lost:
            out.append("telemetry_lost")
        if self._started is not None and not self.worker_alive:
            out.append("worker_dead")
        if self.lag is not None and self.lag > self.max_lag:
            out.append("lagging")
        return out

    def not_ready(self) -> list[str]:
        """Why the worker is not ready, one line per reason; empty when ready."""
        reasons = []
        if self._started is None:
            reasons.append("stream worker not started")
        elif not self.worker_alive:
            reasons.append(f"stream worker dead: {self.worker_error or 'stopped'}")
        idle = self.idle_s()
        if idle is not None and idle > self.lost_after_s:
            reasons.append(
                f"telemetry_lost: no input for {idle:.1f} s (limit {self.lost_after_s:g} s)"
            )
        if self.lag is not None and self.lag > self.max_lag:
            reasons.append(f"consumer lag {self.lag} records > {self.max_lag}")
        return reasons

    def _log_transition(self) -> None:
        lost = self.lost
        if lost != self._was_lost:
            self._was_lost = lost
            if lost:
                logger.error("telemetry_lost: no input for %.1f s", self.idle_s() or 0.0)
            else:
                logger.warning("telemetry back after a loss")

    def check(self) -> bool:
        """Re-evaluate (logs a transition to lost); returns ``lost``. Call when idle."""
        self._log_transition()
        return self.lost
