"""One telemetry partition's share of the stream: its engine, buffers and context.

A :class:`PartitionTask` holds the :class:`~predictor.engine.Engine` of the systems in one
telemetry partition, the positions of the co-partitioned positions.v1 partition, and
applies context (positions, market) in event time just before each decision tick, so a
replay decides exactly as the first run did. :class:`MarketLog` keeps market.v1, which
every worker reads whole, in event-time order. See docs/streaming.md.
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
import orjson

from pipelines.checkpoint import Checkpoint
from pipelines.stream import Topics, dead_letter, health_records, process_isolating
from predictor.engine import Engine, EngineConfig
from predictor.errors import ValidationError
from predictor.events import (
    MarketState,
    Position,
    Reject,
    TelemetryBatch,
    decode_record,
    decode_telemetry,
    parse_position,
)
from predictor.ports import OutRecord, RawRecord
from predictor.risk import RiskModel

logger = logging.getLogger(__name__)

#: Header on every output: the Kafka timestamp of the input that triggered it (latency).
SRC_TS_HEADER = "precovery.src_ts_ms"

EngineFactory = Callable[[dict[str, Any] | None], Engine]


class MarketLog:
    """market.v1 in event-time order, for every engine of the worker to apply at its ticks."""

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

    def between(self, after_ms: int | None, upto_ms: int) -> list[MarketState]:
        """Records with ``after_ms < ts <= upto_ms``, in event-time order."""
        lo = 0 if after_ms is None else bisect.bisect_right(self._keys, (after_ms, 1 << 62, 0))
        hi = bisect.bisect_right(self._keys, (upto_ms, 1 << 62, 0))
        return self._items[lo:hi] if hi > lo else []

    def __len__(self) -> int:
        return len(self._keys)


@dataclass(slots=True)
class _Chunk:
    records: list[RawRecord]
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
    """One telemetry partition's engine, its context buffers and its offsets.

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
        self.telemetry_offset: int | None = ck.telemetry_offset if ck else None
        self.positions_offset: int | None = ck.positions_offset if ck else None
        self.pending_positions: list[tuple[int, int, Position]] = [
            (t, o, p if isinstance(p, Position) else parse_position(p))
            for t, o, p in (ck.pending_positions if ck else [])
        ]
        self.positions_max_ts: int | None = max(
            (t for t, _, _ in self.pending_positions), default=None
        )
        self.market_cursor_ms: int | None = ck.market_cursor_ms if ck else None
        self.stats: dict[str, int] = dict(ck.stats) if ck else {}
        self.pending: deque[_Chunk] = deque()
        self.pending_records = 0
        #: Next telemetry offset expected from the consumer (processed + pending).
        self.telemetry_next: int | None = self.telemetry_offset
        self.dirty = False
        self.last_checkpoint = time.monotonic()
        self._last_health_tick: int | None = self.engine.last_tick_ms

    def _count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n

    # -- input ------------------------------------------------------------------------
    def add_telemetry(self, records: Sequence[RawRecord]) -> bool:
        """Queue records for processing; False (and nothing queued) on an offset gap."""
        if self.telemetry_next is not None:
            records = [r for r in records if r.offset >= self.telemetry_next]
            if records and records[0].offset != self.telemetry_next:
                return False
        if not records:
            return True
        batch = decode_telemetry(
            [r.value for r in records], self.engine.config.metric_names, self.max_message_bytes
        )
        self.pending.append(_Chunk(list(records), batch))
        self.pending_records += len(records)
        self.telemetry_next = records[-1].offset + 1
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
        """Buffer positions until their event time; returns dead letters (None on a gap)."""
        out = []
        nxt = self.positions_offset
        if nxt is not None:
            records = [r for r in records if r.offset >= nxt]
            if records and records[0].offset != nxt:
                return None
        for r in records:
            self.positions_offset = r.offset + 1
            self.dirty = True
            try:
                pos = decode_record(r.value, parse_position, self.max_message_bytes)
            except ValidationError as exc:
                out.append(dead_letter(r, Reject(0, exc.reason, exc.detail), self.topics))
                self._count("positions_dlq")
                continue
            self._count("positions_in")
            self.pending_positions.append((pos.ts_ms, r.offset, pos))
            self.positions_max_ts = max(self.positions_max_ts or pos.ts_ms, pos.ts_ms)
        return out

    # -- processing -------------------------------------------------------------------
    def advance(self, frontier_ms: float, market: MarketLog) -> list[OutRecord]:
        """Process pending telemetry with event time up to ``frontier_ms``."""
        out: list[OutRecord] = []
        last_src_ts: int | None = None
        while self.pending:
            chunk = self.pending[0]
            b = chunk.batch
            k = len(chunk.records)
            if len(b) and float(b.ts_ms.max()) > frontier_ms:
                j = int(np.argmax(b.ts_ms > frontier_ms))
                k = int(b.index[j])
            if k == 0:
                break
            head = chunk if k == len(chunk.records) else _Chunk(chunk.records[:k], _slice(b, 0, k))
            out.extend(self._process(head, market))
            last_src_ts = _max_ts(head.records, last_src_ts)
            self.pending_records -= k
            if k == len(chunk.records):
                self.pending.popleft()
            else:
                self.pending[0] = _Chunk(chunk.records[k:], _slice(b, k, len(chunk.records)))
                break
        tick = self.engine.last_tick_ms
        if tick is not None and tick != self._last_health_tick:
            self._last_health_tick = tick
            src = _headers(last_src_ts)
            out.extend(
                OutRecord(r.topic, r.value, r.key, src)
                for r in health_records(self.engine, self.topics)
            )
        return out

    def _process(self, chunk: _Chunk, market: MarketLog) -> list[OutRecord]:
        b, recs = chunk.batch, chunk.records
        eng = self.engine
        tick = int(eng.config.tick_s * 1000)
        pieces: list[tuple[int, int | None]] = [(0, None)]  # (first input index, tick T)
        if len(b):
            ts = b.ts_ms
            wm0 = eng.watermark_ms if eng.watermark_ms is not None else int(ts[0])
            # Mirror the engine's tick split; leave out stamps it will refuse as far-future.
            med = int(np.median(ts))
            limit = med + (med - int(ts.min())) + int(eng.config.max_future_skew_s * 1000)
            running = np.maximum.accumulate(np.maximum(np.where(ts <= limit, ts, wm0), wm0))
            tick_idx = running // tick
            cuts = np.flatnonzero(np.diff(np.concatenate([[wm0 // tick], tick_idx])) > 0)
            for c in cuts.tolist():
                start = int(b.index[c])
                t_ms = int(tick_idx[c]) * tick
                if start == pieces[-1][0]:
                    pieces[-1] = (start, t_ms)
                else:
                    pieces.append((start, t_ms))
        out: list[OutRecord] = []
        n = len(recs)
        for i, (lo, tick_ms) in enumerate(pieces):
            hi = pieces[i + 1][0] if i + 1 < len(pieces) else n
            if hi <= lo:
                continue
            if tick_ms is not None:
                self._apply_context(tick_ms, market)
            sub = b if (lo, hi) == (0, n) else _slice(b, lo, hi)
            rec_out, rejects = self._run(sub)
            trigger = recs[lo + int(sub.index[0])] if len(sub) else recs[lo]
            out.extend(self._recommendation_records(rec_out, trigger.timestamp_ms))
            for rj in rejects:
                out.append(dead_letter(recs[lo + rj.index], rj, self.topics))
            self._count("telemetry_in", hi - lo)
            self._count("telemetry_dlq", len(rejects))
            self._count("recommendations", len(rec_out))
        self.telemetry_offset = recs[-1].offset + 1
        self.dirty = True
        return out

    def _recommendation_records(
        self, recs: Sequence[dict[str, Any]], src_ts: int | None
    ) -> list[OutRecord]:
        src = _headers(src_ts)
        return [
            OutRecord(
                self.topics.recommendations,
                orjson.dumps(rec),
                rec["system"].encode(),
                (("idempotency-key", rec["recommendation_id"].encode()), *src),
            )
            for rec in recs
        ]

    def advance_quiet(
        self, t_ms: int, market: MarketLog, conditions: Sequence[str] = ()
    ) -> list[OutRecord]:
        """Move this quiet partition's event time on to ``t_ms``: the fleet still reports.

        Nothing arrives for the partition's systems, so without this their engine would
        never see time pass and a dark system would never miss a heartbeat. The worker
        calls it only while other partitions of the telemetry topic grow (see
        docs/streaming.md, "Silence"). Context due by ``t_ms`` is applied first.
        """
        eng = self.engine
        if self.pending_records or eng.watermark_ms is None or t_ms <= eng.watermark_ms:
            return []
        self._apply_context(t_ms, market)
        recs = eng.advance_to(t_ms)
        self.dirty = True
        self._count("quiet_advances")
        self._count("recommendations", len(recs))
        out = self._recommendation_records(recs, None)
        out.extend(self.health(conditions, only_if_ticked=True))
        return out

    def health(
        self, conditions: Sequence[str] = (), only_if_ticked: bool = False
    ) -> list[OutRecord]:
        """health.v1 records of this partition's systems (if a tick passed, with the flag)."""
        tick = self.engine.last_tick_ms
        if only_if_ticked and (tick is None or tick == self._last_health_tick):
            return []
        self._last_health_tick = tick
        return health_records(self.engine, self.topics, conditions)

    def _run(self, sub: TelemetryBatch) -> tuple[list[dict[str, Any]], list[Reject]]:
        res = process_isolating(self.engine, sub, f"partition {self.partition}")
        return res.recommendations, res.rejects

    def _apply_context(self, t_ms: int, market: MarketLog) -> None:
        if self.pending_positions:
            due = sorted((p for p in self.pending_positions if p[0] <= t_ms), key=_by_ts_off)
            if due:
                self.pending_positions = [p for p in self.pending_positions if p[0] > t_ms]
                self.engine.update_positions([p for _, _, p in due])
        states = market.between(self.market_cursor_ms, t_ms)
        if states:
            self.engine.update_market(states)
        self.market_cursor_ms = (
            t_ms if self.market_cursor_ms is None else max(self.market_cursor_ms, t_ms)
        )

    # -- state ------------------------------------------------------------------------
    def checkpoint(self, writer: str = "") -> Checkpoint | None:
        if self.telemetry_offset is None:
            return None
        return Checkpoint(
            partition=self.partition,
            telemetry_offset=self.telemetry_offset,
            positions_offset=self.positions_offset,
            engine=self.engine.snapshot(),
            pending_positions=list(self.pending_positions),
            market_cursor_ms=self.market_cursor_ms,
            stats=dict(self.stats),
            model_version=self.engine.model_version,
            writer=writer,
        )


def _by_ts_off(p: tuple[int, int, Position]) -> tuple[int, int]:
    return p[0], p[1]


def _max_ts(records: Sequence[RawRecord], prev: int | None) -> int | None:
    ts = [r.timestamp_ms for r in records if r.timestamp_ms is not None]
    if not ts:
        return prev
    return max(ts) if prev is None else max(prev, max(ts))


def _headers(src_ts: int | None) -> tuple[tuple[str, bytes], ...]:
    return () if src_ts is None else ((SRC_TS_HEADER, str(src_ts).encode()),)


def engine_factory(config: EngineConfig, model: RiskModel | None) -> EngineFactory:
    """``snapshot or None -> Engine`` with one config and model for every partition."""

    def make(snapshot: dict[str, Any] | None) -> Engine:
        if snapshot is None:
            return Engine(config, model=model)
        return Engine.from_snapshot(snapshot, config, model)

    return make
