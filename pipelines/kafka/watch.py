"""What a stream worker watches besides its records: a stuck client, and silence.

- **Stall** (``StreamConfig.stall_reconnect_s``; docs/streaming.md, "Broker restarts"):
  progress is records polled, telemetry processed, or nothing left to process on the
  broker; time while the broker does not answer is not counted. Without progress for that
  long while the broker answered log-end queries, the clients are stuck and the worker
  reconnects; a broker that does not answer at all for that long gets a fresh log-end
  client only.
- **Silence** (docs/streaming.md, "Silence"): once per ``fleet_check_s`` the log-end
  offsets of *every* telemetry partition say whether the fleet still reports. A partition
  of ours read to its end with nothing pending is quiet: its event time moves on from its
  watermark by the wall time the fleet was seen alive since it went quiet (and at least
  to the newest watermark of our other partitions), so the heartbeat rule fires for a
  dark system within one check. No growth anywhere for ``feed_lost_after_s`` is
  ``telemetry_lost``: time then stands still (unless ``failover_on_feed_loss``) and
  health.v1 says so.

:class:`Watch` keeps the clocks and marks; the worker asks it after every poll and acts
on the answer (it owns the clients).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from pipelines.embedded.feed import FeedMonitor
from pipelines.kafka.partition import PartitionTask
from predictor.ports import OutRecord

logger = logging.getLogger(__name__)

#: :meth:`Watch.stall`'s answers besides a reconnect reason
NEW_LOG_END_CLIENT = "new log-end client"


class WatchConfig(Protocol):
    """What :class:`Watch` reads of ``StreamConfig``."""

    @property
    def stall_reconnect_s(self) -> float: ...
    @property
    def fleet_check_s(self) -> float: ...
    @property
    def failover_on_feed_loss(self) -> bool: ...


class Watch:
    """Clocks and marks of one worker's stall and silence watch (see the module)."""

    def __init__(
        self,
        config: WatchConfig,
        feed: FeedMonitor,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.feed = feed
        self.clock = clock
        now = clock()
        #: wall time of the last progress (records polled or processed, or nothing to do)
        self.progress_at = now
        #: wall time the broker last answered a log-end query
        self.ends_ok_at = now
        self.fleet_moved_at: float | None = None
        self.processed_mark: dict[int, int | None] = {}
        self.last_fleet_check = -math.inf
        self.tele_ends: dict[int, int] = {}
        #: partition -> (wall time it went quiet, its watermark and next offset then)
        self.quiet: dict[int, tuple[float, int, int]] = {}
        self.lost_reported = False

    # -- what the worker tells it -------------------------------------------------------
    def connected(self) -> None:
        self.progress_at = self.ends_ok_at = self.clock()

    def polled(self, n: int) -> None:
        """``n`` input records were read (a backlog included)."""
        self.feed.note(n)
        if n:
            self.fleet_moved_at = self.clock()

    def progressed(self) -> None:
        self.progress_at = self.clock()

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions that left this worker."""
        for p in partitions:
            self.quiet.pop(p, None)

    def note_lag(self, ends: Mapping[int, int], tasks: Mapping[int, PartitionTask]) -> None:
        """Given fresh log-end offsets of telemetry: progress, or records left behind?"""
        now = self.clock()
        self.ends_ok_at = now
        processed = {p: t.telemetry_offset for p, t in tasks.items()}
        behind = any(p in ends and ends[p] > (t.telemetry_offset or 0) for p, t in tasks.items())
        if not behind or processed != self.processed_mark:
            self.progress_at = now
        self.processed_mark = processed

    # -- what it answers ----------------------------------------------------------------
    def stall(self, tasks: Mapping[int, PartitionTask], connected: bool) -> str | None:
        """None, :data:`NEW_LOG_END_CLIENT`, or why the worker must reconnect."""
        limit = self.config.stall_reconnect_s
        now = self.clock()
        if not tasks:  # nothing assigned: nothing can stall (a standby member)
            self.progress_at = self.ends_ok_at = now
            return None
        if limit <= 0 or not connected:
            return None
        if now - self.ends_ok_at >= limit:
            logger.warning("no answer from the broker for %.0f s", now - self.ends_ok_at)
            self.ends_ok_at = now
            return NEW_LOG_END_CLIENT
        if now - self.progress_at < limit:
            return None
        return f"nothing polled or processed for {now - self.progress_at:.0f} s"

    def silence(
        self,
        tasks: Mapping[int, PartitionTask],
        telemetry_ends: Callable[[], dict[int, int]],
    ) -> list[OutRecord]:
        """Let quiet partitions see time pass while the fleet reports; flag a lost feed
        (at most once per ``fleet_check_s``; ``telemetry_ends`` asks the broker)."""
        cfg = self.config
        now = self.clock()
        if now - self.last_fleet_check < cfg.fleet_check_s or not tasks:
            return []
        self.last_fleet_check = now
        ends = telemetry_ends()
        if ends:
            self.note_lag(ends, tasks)
        else:  # the broker does not answer: no evidence of a stuck client (a stall is
            self.progress_at = now  # counted only while the broker answers)
        growth = sum(max(0, e - self.tele_ends.get(p, e)) for p, e in ends.items())
        self.tele_ends.update(ends)
        if growth:
            self.fleet_moved_at = now
        lag = sum(max(0, ends[p] - (t.telemetry_next or 0)) for p, t in tasks.items() if p in ends)
        self.feed.note(growth, lag if ends else None)
        lost = self.feed.check()
        out: list[OutRecord] = []
        conditions = ["telemetry_lost"] if lost else []
        if lost != self.lost_reported:
            self.lost_reported = lost
            for task in tasks.values():
                out.extend(task.health(conditions))
        alive_until = now if cfg.failover_on_feed_loss else self.fleet_moved_at
        newest = max(
            (t.engine.watermark_ms for t in tasks.values() if t.engine.watermark_ms),
            default=None,
        )
        for p, task in tasks.items():
            wm = task.engine.watermark_ms
            caught_up = p in ends and (task.telemetry_next or 0) >= ends[p]
            if task.pending_records or not caught_up or wm is None:
                self.quiet.pop(p, None)
                continue
            offset = task.telemetry_next or 0
            since, base, at = self.quiet.get(p, (now, wm, offset))
            if at != offset:  # it processed records since: quiet from now
                since, base = now, wm
            self.quiet[p] = (since, base, offset)
            target = base + (
                int((alive_until - since) * 1000) if alive_until and alive_until > since else 0
            )
            if newest is not None and not lost:
                target = max(target, newest)
            if target > wm:
                out.extend(task.advance_quiet(target, conditions))
        return out
