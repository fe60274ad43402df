"""One telemetry partition's share of the Kafka stream: its driver, buffers and offsets.

A :class:`PartitionTask` holds the :class:`~pipelines.driver.Driver` (and so the
:class:`~predictor.engine.Engine`) of the systems in one telemetry partition, the
co-partitioned positions.v1 partition, and the offsets the state reflects. Context
(positions, market) is handed to the engine as it is read and applied by the engine at its
own ticks, by event time; the task's only job about time is the *frontier*: telemetry is
processed only up to the event time to which context is known to be complete, so a
replay decides exactly as the first run did. :class:`MarketLog` keeps market.v1, which
every worker reads whole, to hand to partitions assigned later. See docs/streaming.md.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.driver import Driver, RecordColumns, Topics, dead_letter
from pipelines.kafka.checkpoint import Checkpoint
from predictor.engine import Engine, EngineConfig
from predictor.events import MarketState, Position, Reject, TelemetryBatch, decode_telemetry
from predictor.ports import OutRecord, RawRecord
from predictor.risk import RiskModel

logger = logging.getLogger(__name__)

EngineFactory = Callable[[dict[str, Any] | None], Engine]


class MarketLog:
    """market.v1 in event-time order, for partitions assigned after it was read."""

    def __init__(self, max_records: int = 200_000) -> None:
        self._keys: list[tuple[int, int, int]] = []
        self._items: list[MarketState] = []
        self.max_records = max_records
        self.next_offset: dict[int, int] = {}
        self.max_ts: dict[int, int] = {}

    def add(self, partition: int, offset: int, m: MarketState) -> None:
        key = (m.ts_ms, partition, offset)
        i = bisect.bisect_right(self._keys, key)
        self._keys.insert(i, key)
        self._items.insert(i, m)
        if len(self._keys) > self.max_records:  # oldest first; a replay that far back is rare
            del self._keys[0], self._items[0]
        self.max_ts[partition] = max(self.max_ts.get(partition, m.ts_ms), m.ts_ms)

    def between(self, after_ms: int | None, upto_ms: float) -> list[MarketState]:
        """Records with ``after_ms < ts <= upto_ms``, in event-time order."""
        lo = 0 if after_ms is None else bisect.bisect_right(self._keys, (after_ms, 1 << 62, 0))
        hi = (
            len(self._keys)
            if math.isinf(upto_ms)
            else bisect.bisect_right(self._keys, (int(upto_ms), 1 << 62, 0))
        )
        return self._items[lo:hi] if hi > lo else []

    def __len__(self) -> int:
        return len(self._keys)


@dataclass(slots=True)
class _Chunk:
    records: RecordColumns
    batch: TelemetryBatch


def _slice(batch: TelemetryBatch, lo: int, hi: int) -> TelemetryBatch:
    """Rows and rejects of input records ``[lo, hi)``, re-indexed from 0."""
    sel = (batch.index >= lo) & (batch.index < hi)
    rows = np.flatnonzero(sel)
    return TelemetryBatch(
        keys=[batch.keys[i] for i in rows.tolist()],
        ts_ms=batch.ts_ms[rows],
        x=batch.x[rows],
        index=batch.index[rows] - lo,
        rejects=[
            Reject(r.index - lo, r.reason, r.detail) for r in batch.rejects if lo <= r.index < hi
        ],
    )


class PartitionTask:
    """One telemetry partition's driver, its pending telemetry and its offsets.

    Pure of Kafka: records in, output records out, so a replay can be checked against
    a straight run of the same records (the integration tests do).
    """

    def __init__(
        self,
        partition: int,
        make_engine: EngineFactory,
        topics: Topics,
        max_message_bytes: int = 64 * 1024,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.partition = partition
        self.topics = topics
        self.max_message_bytes = max_message_bytes
        ck = checkpoint
        self.engine = make_engine(ck.engine if ck else None)
        self.driver = Driver(self.engine, topics, max_message_bytes, f"partition {partition}")
        self.telemetry_offset: int | None = ck.telemetry_offset if ck else None
        self.positions_offset: int | None = ck.positions_offset if ck else None
        self.positions_max_ts: int | None = None
        self.stats: dict[str, int] = dict(ck.stats) if ck else {}
        self.pending: deque[_Chunk] = deque()
        self.pending_records = 0
        #: Next telemetry offset expected from the consumer (processed + pending).
        self.telemetry_next: int | None = self.telemetry_offset
        self.dirty = False
        self.last_checkpoint = time.monotonic()

    def _count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n

    # -- input ------------------------------------------------------------------------
    def add_telemetry(self, records: Sequence[RawRecord]) -> bool:
        """Queue records for processing; False (and nothing queued) on an offset gap.

        ``records`` are of this partition in offset order; a
        :class:`~pipelines.driver.RecordColumns` (what the Kafka worker hands over) is
        kept as it is: no object per record.
        """
        cols = RecordColumns.of(records)
        nxt = self.telemetry_next
        if nxt is not None and cols.offsets and cols.offsets[0] < nxt:
            keep = [i for i, o in enumerate(cols.offsets) if o >= nxt]
            cols = cols[keep[0] :] if keep else cols[:0]
        if nxt is not None and cols.offsets and cols.offsets[0] != nxt:
            return False
        if not cols.offsets:
            return True
        batch = decode_telemetry(
            cols.values, self.engine.config.metric_names, self.max_message_bytes
        )
        self.pending.append(_Chunk(cols, batch))
        self.pending_records += len(cols)
        self.telemetry_next = cols.offsets[-1] + 1
        return True

    def pending_max_ts(self) -> float:
        """Largest event time among pending telemetry (-inf if none)."""
        return max(
            (float(c.batch.ts_ms.max()) for c in self.pending if len(c.batch)), default=-math.inf
        )

    def start_at(self, telemetry: int, positions: int) -> None:
        """Where the consumer was positioned for this task (after an assignment)."""
        self.telemetry_next = telemetry
        if self.telemetry_offset is None:
            self.telemetry_offset = telemetry
        if self.positions_offset is None:
            self.positions_offset = positions

    def add_positions(self, records: Sequence[RawRecord]) -> list[OutRecord] | None:
        """Hand positions to the engine (applied at their event time); returns dead letters
        (None on an offset gap)."""
        out = []
        nxt = self.positions_offset
        if nxt is not None:
            records = [r for r in records if r.offset >= nxt]
            if records and records[0].offset != nxt:
                return None
        for r in records:
            self.positions_offset = r.offset + 1
            self.dirty = True
            got = self.driver.add_context(r)
            if isinstance(got, Reject):
                out.append(dead_letter(r, got, self.topics))
                self._count("positions_dlq")
                continue
            assert isinstance(got, Position)
            self._count("positions_in")
            self.positions_max_ts = max(self.positions_max_ts or got.ts_ms, got.ts_ms)
        return out

    def add_market(self, states: Sequence[MarketState]) -> None:
        """Hand market states to the engine (applied at their event time)."""
        if states:
            self.engine.add_market(states)
            self.dirty = True

    # -- processing -------------------------------------------------------------------
    def advance(self, frontier_ms: float) -> list[OutRecord]:
        """Process pending telemetry with event time up to ``frontier_ms``."""
        out: list[OutRecord] = []
        while self.pending:
            chunk = self.pending[0]
            b = chunk.batch
            k = len(chunk.records)
            if len(b) and float(b.ts_ms.max()) > frontier_ms:
                j = int(np.argmax(b.ts_ms > frontier_ms))
                k = int(b.index[j])
            if k == 0:
                break
            whole = k == len(chunk.records)
            head = chunk if whole else _Chunk(chunk.records[:k], _slice(b, 0, k))
            step = self.driver.telemetry(head.records, head.batch)
            out.extend(step.out)
            self._count("telemetry_in", k)
            self._count("telemetry_dlq", step.rejected)
            self._count("recommendations", len(step.recommendations))
            self.telemetry_offset = head.records.offsets[-1] + 1
            self.dirty = True
            self.pending_records -= k
            if whole:
                self.pending.popleft()
            else:
                self.pending[0] = _Chunk(chunk.records[k:], _slice(b, k, len(chunk.records)))
                break
        return out

    def advance_quiet(self, t_ms: int, conditions: Sequence[str] = ()) -> list[OutRecord]:
        """Move this quiet partition's event time on to ``t_ms``: the fleet still reports.

        Nothing arrives for the partition's systems, so without this their engine would
        never see time pass and a dark system would never miss a heartbeat. The worker
        calls it only while other partitions of the telemetry topic grow (see
        docs/streaming.md, "Silence").
        """
        eng = self.engine
        if self.pending_records or eng.watermark_ms is None or t_ms <= eng.watermark_ms:
            return []
        step = self.driver.advance_to(t_ms, conditions)
        self.dirty = True
        self._count("quiet_advances")
        self._count("recommendations", len(step.recommendations))
        return step.out

    def health(self, conditions: Sequence[str] = ()) -> list[OutRecord]:
        """health.v1 records of this partition's systems, with the worker's conditions."""
        return self.driver.health(conditions)

    # -- state ------------------------------------------------------------------------
    def checkpoint(self, writer: str = "") -> Checkpoint | None:
        if self.telemetry_offset is None:
            return None
        return Checkpoint(
            partition=self.partition,
            telemetry_offset=self.telemetry_offset,
            positions_offset=self.positions_offset,
            engine=self.engine.snapshot(),
            stats=dict(self.stats),
            model_version=self.engine.model_version,
            writer=writer,
        )


def engine_factory(config: EngineConfig, model: RiskModel | None) -> EngineFactory:
    """``snapshot or None -> Engine`` with one config and model for every partition."""

    def make(snapshot: dict[str, Any] | None) -> Engine:
        if snapshot is None:
            return Engine(config, model=model)
        return Engine.from_snapshot(snapshot, config, model)

    return make
