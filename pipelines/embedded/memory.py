"""In-memory Source and Sink: the embedded default's edges, and the tests'.

They are real adapters (thread-safe, offsets, commits), not mocks: the in-process
stream runs on them exactly as it runs on Kafka.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable, MutableSequence, Sequence
from functools import partial

from predictor.ports import OutRecord, RawRecord


class MemorySource:
    """An append-only log per (topic, partition) with a committed read position.

    With ``retain=False`` (long-running modes: the demo) committed records are dropped,
    so memory holds only what is not yet processed; offsets keep counting from where
    they were. With ``retain=True`` (the tests) every record stays readable by offset.
    """

    def __init__(self, retain: bool = True) -> None:
        self._cond = threading.Condition()
        self._logs: dict[tuple[str, int], list[RawRecord]] = defaultdict(list)
        #: Offset of each log's first record still held (0 unless trimmed).
        self._base: dict[tuple[str, int], int] = defaultdict(int)
        self._pos: dict[tuple[str, int], int] = defaultdict(int)
        self.committed: dict[tuple[str, int], int] = {}
        self.closed = False
        self.retain = retain

    def append(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        partition: int = 0,
        timestamp_ms: int | None = None,
    ) -> int:
        """Add one message; returns its offset."""
        with self._cond:
            log = self._logs[(topic, partition)]
            off = self._base[(topic, partition)] + len(log)
            log.append(RawRecord(topic, value, key, partition, off, timestamp_ms))
            self._cond.notify_all()
            return off

    def extend(
        self,
        topic: str,
        values: Sequence[bytes],
        keys: Sequence[bytes | None] | None = None,
        partition: int = 0,
    ) -> None:
        with self._cond:
            log = self._logs[(topic, partition)]
            base = self._base[(topic, partition)]
            for i, v in enumerate(values):
                log.append(
                    RawRecord(topic, v, keys[i] if keys else None, partition, base + len(log))
                )
            self._cond.notify_all()

    def close(self) -> None:
        """No more input: ``poll`` returns what is left, then nothing, at once."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return sum(self._base[tp] + len(log) - self._pos[tp] for tp, log in self._logs.items())

    def poll(self, max_records: int, timeout_s: float) -> list[RawRecord]:
        with self._cond:
            if not self.pending() and not self.closed:
                self._cond.wait(timeout_s)
            out: list[RawRecord] = []
            # Context topics first, so a batch's telemetry sees the newest market state.
            for tp in sorted(self._logs, key=lambda tp: (tp[0].startswith("telemetry"), tp)):
                log, pos, base = self._logs[tp], self._pos[tp], self._base[tp]
                take = log[pos - base : pos - base + max_records - len(out)]
                out.extend(take)
                self._pos[tp] = pos + len(take)
                if len(out) >= max_records:
                    break
            return out

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        with self._cond:
            self.committed.update(offsets)
            if not self.retain:
                for tp, nxt in offsets.items():
                    drop = nxt - self._base[tp]
                    if drop > 0:
                        del self._logs[tp][:drop]
                        self._base[tp] = nxt

    def held(self) -> int:
        """Records held in memory (all of them with ``retain``, else the uncommitted)."""
        with self._cond:
            return sum(len(log) for log in self._logs.values())

    def seek_to_committed(self) -> None:
        """Rewind every log to its committed offset (a restart after a crash)."""
        with self._cond:
            for tp in self._logs:
                self._pos[tp] = max(self.committed.get(tp, 0), self._base[tp])


class MemorySink:
    """Keeps what is published, per topic; calls listeners after each publish.

    ``max_per_topic`` bounds what is kept (the newest records; long-running modes), and
    ``published`` counts every record per topic all the same.
    """

    def __init__(self, max_per_topic: int | None = None) -> None:
        self._lock = threading.Lock()
        self.topics: dict[str, MutableSequence[OutRecord]] = defaultdict(
            list if max_per_topic is None else partial(deque, maxlen=max_per_topic)
        )
        self.published: Counter[str] = Counter()
        self.listeners: list[Callable[[Sequence[OutRecord]], None]] = []

    def publish(self, records: Sequence[OutRecord]) -> None:
        with self._lock:
            for r in records:
                self.topics[r.topic].append(r)
                self.published[r.topic] += 1
        for fn in self.listeners:
            fn(records)
