"""The stream on Apache Kafka: one consumer group, one engine per telemetry partition.

See docs/streaming.md for the design and the delivery guarantee. In short:

- The group subscribes to telemetry.v1 and positions.v1 with the range assignor; the two
  topics are co-partitioned (same partition count, keyed by system), so partition *n* of
  both lands on one worker and feeds one :class:`PartitionTask` (one
  :class:`~predictor.engine.Engine`). market.v1 is small and read whole by every worker,
  outside the group.
- Context is applied in event time: before an engine decides at tick ``T``, the
  positions and market records with event time ``<= T`` are applied, and telemetry of a
  partition is processed only up to the context *frontier* (the event time up to which
  each context partition has been read, or "all of it" once the consumer is at the log
  end). Decisions, and so recommendation ids, do not depend on how records interleave.
- Each iteration: poll → decode → engine → publish and wait for the acks → checkpoint
  (engine state + the offsets it reflects) → commit the checkpointed offsets. On
  (re)assignment a partition is restored from its newest checkpoint and the consumer
  seeks to the checkpoint's offsets; the checkpoint, not the group commit, is the
  source of truth.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from pipelines.checkpoint import Checkpoint, CheckpointStore
from pipelines.kafka_io import (
    ConsumerRebalanceListener,
    KafkaSink,
    TopicPartition,
    assigned_consumer,
    group_consumer,
    make_producer,
    offsets_client,
)
from pipelines.stream import Topics, dead_letter, health_records
from predictor.engine import Engine, EngineConfig
from predictor.errors import PrecoveryError, SinkError, ValidationError
from predictor.events import (
    MarketState,
    Position,
    Reject,
    TelemetryBatch,
    decode_telemetry,
    loads,
    parse_market,
    parse_position,
)
from predictor.ports import OutRecord, RawRecord, Sink
from predictor.risk import RiskModel

logger = logging.getLogger(__name__)

#: Header on every output: the Kafka timestamp of the input that triggered it (latency).
SRC_TS_HEADER = "precovery.src_ts_ms"

EngineFactory = Callable[[dict[str, Any] | None], Engine]


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """Settings of one stream worker.

    Attributes
    ----------
    bootstrap
        Kafka ``host:port[,...]``.
    group_id
        Consumer group shared by the workers.
    topics
        Topic names.
    checkpoint_dir
        Directory every worker can read (checkpoints live under ``<dir>/<group>/``).
    max_batch
        Records per poll, at most.
    max_message_bytes
        Larger input goes to the DLQ as ``too_large``.
    poll_timeout_s
        Longest wait in one poll.
    checkpoint_interval_s
        A partition with new state is checkpointed at least this often (and when the
        worker is idle, on revoke and on shutdown).
    session_timeout_ms
        Group session timeout: how fast a dead worker's partitions move.
    max_pending
        Decoded but unprocessed telemetry per partition before its fetching pauses.
    client_id
        Shown in the broker's group view and in logs.
    """

    bootstrap: str
    group_id: str = "precovery-stream"
    topics: Topics = field(default_factory=Topics)
    checkpoint_dir: Path = Path(".precovery/checkpoints")
    max_batch: int = 5000
    max_message_bytes: int = 64 * 1024
    poll_timeout_s: float = 0.2
    checkpoint_interval_s: float = 5.0
    session_timeout_ms: int = 10_000
    max_pending: int = 20_000
    client_id: str | None = None


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
                pos = parse_position(loads(r.value, self.max_message_bytes))
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
            src = _headers(trigger.timestamp_ms)
            for rec in rec_out:
                out.append(
                    OutRecord(
                        self.topics.recommendations,
                        orjson.dumps(rec),
                        rec["system"].encode(),
                        (("idempotency-key", rec["recommendation_id"].encode()), *src),
                    )
                )
            for rj in rejects:
                out.append(dead_letter(recs[lo + rj.index], rj, self.topics))
            self._count("telemetry_in", hi - lo)
            self._count("telemetry_dlq", len(rejects))
            self._count("recommendations", len(rec_out))
        self.telemetry_offset = recs[-1].offset + 1
        self.dirty = True
        return out

    def _run(self, sub: TelemetryBatch) -> tuple[list[dict[str, Any]], list[Reject]]:
        """Run the engine; on an unexpected error, retry record by record (poison)."""
        try:
            res = self.engine.process(sub)
            return res.recommendations, res.rejects
        except PrecoveryError:
            raise
        except Exception as exc:
            logger.warning(
                "partition %d: engine failed on a batch of %d (%r); retrying one by one",
                self.partition,
                len(sub.index) + len(sub.rejects),
                exc,
            )
        recs: list[dict[str, Any]] = []
        rejects = list(sub.rejects)
        for row in range(len(sub)):
            one = TelemetryBatch(
                keys=[sub.keys[row]],
                ts_ms=sub.ts_ms[row : row + 1],
                x=sub.x[row : row + 1],
                index=sub.index[row : row + 1],
            )
            try:
                res = self.engine.process(one)
            except PrecoveryError:
                raise
            except Exception as exc:
                logger.warning("partition %d: poison record: %r", self.partition, exc)
                rejects.append(Reject(int(sub.index[row]), "poison", repr(exc)[:300]))
                continue
            recs.extend(res.recommendations)
            rejects.extend(res.rejects)
        rejects.sort(key=lambda r: r.index)
        return recs, rejects

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


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: KafkaStreamWorker) -> None:
        self.worker = worker

    # kafka-python swallows a callback's exception into a generic KafkaError: keep ours.
    def on_partitions_revoked(self, revoked: list[Any]) -> None:
        self._guard(self.worker._on_revoked, revoked)

    def on_partitions_assigned(self, assigned: list[Any]) -> None:
        self._guard(self.worker._on_assigned, assigned)

    def on_partitions_lost(self, lost: list[Any]) -> None:
        self._guard(self.worker._on_lost, lost)

    def _guard(self, fn: Callable[[list[Any]], None], parts: list[Any]) -> None:
        try:
            fn(parts)
        except Exception as exc:
            self.worker._listener_error = exc
            raise


class KafkaStreamWorker:
    """One member of the stream group. ``run()`` until :meth:`stop` (or idle, if asked).

    Parameters
    ----------
    config
        Worker settings.
    make_engine
        ``snapshot or None -> Engine``: a fresh engine, or one restored from a checkpoint.
    sink
        Where outputs go; default a :class:`~pipelines.kafka_io.KafkaSink` on
        ``config.bootstrap``.
    """

    def __init__(
        self, config: StreamConfig, make_engine: EngineFactory, sink: Sink | None = None
    ) -> None:
        self.config = config
        self.topics = config.topics
        self.make_engine = make_engine
        self.store = CheckpointStore(
            config.checkpoint_dir, config.group_id, config.topics.telemetry
        )
        self._own_sink = sink is None
        self.sink: Sink = sink or KafkaSink(
            make_producer(config.bootstrap, client_id=f"{config.client_id or 'precovery'}-out")
        )
        self.tasks: dict[int, PartitionTask] = {}
        self.market = MarketLog()
        self.name = config.client_id or "precovery-stream"
        self._stop = threading.Event()
        self._paused: set[int] = set()
        self.consumer: Any = None
        self.market_consumer: Any = None
        self.offsets: Any = None
        self.counters: dict[str, int] = {
            "polled": 0,
            "published": 0,
            "checkpoints": 0,
            "rewinds": 0,
            "batches": 0,
        }
        self.assignments: list[list[int]] = []
        self._listener_error: Exception | None = None
        self._to_seek: set[int] = set()
        make_engine(None)  # fail before joining the group if the model does not fit

    # -- lifecycle --------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self, idle_exit_s: float | None = None) -> None:
        """Consume until :meth:`stop`; with ``idle_exit_s``, also stop after that long idle."""
        cfg = self.config
        self.market_consumer = assigned_consumer(cfg.bootstrap, self.topics.market)
        self.offsets = offsets_client(cfg.bootstrap)
        self.consumer = group_consumer(
            cfg.bootstrap,
            cfg.group_id,
            [self.topics.telemetry, self.topics.positions],
            _Listener(self),
            session_timeout_ms=cfg.session_timeout_ms,
            client_id=cfg.client_id,
        )
        logger.info("stream worker %s joined group %s", self.name, cfg.group_id)
        idle_since = time.monotonic()
        last_log = time.monotonic()
        try:
            while not self._stop.is_set():
                n = self.run_once()
                now = time.monotonic()
                busy = n > 0 or any(t.pending_records for t in self.tasks.values())
                if busy:
                    idle_since = now
                elif (
                    idle_exit_s is not None
                    and now - idle_since >= idle_exit_s
                    and self.tasks
                    and self.caught_up()
                ):
                    logger.info("idle for %.1f s: stopping", idle_exit_s)
                    break
                if now - last_log >= 10.0:
                    last_log = now
                    logger.info(
                        "worker %s: %s, partitions %s", self.name, self.counters, sorted(self.tasks)
                    )
        finally:
            self.close()

    def close(self) -> None:
        """Checkpoint everything, commit, leave the group, close the clients."""
        if self.consumer is not None:
            for task in list(self.tasks.values()):
                self._checkpoint(task)
            self._commit()
            try:
                self.consumer.close()  # revokes: the listener checkpoints once more (cheap)
            except Exception as exc:  # closing must not hide the loop's own error
                logger.warning("consumer close failed: %r", exc)
            self.consumer = None
        for name in ("market_consumer", "offsets"):
            client = getattr(self, name)
            if client is not None:
                client.close()
                setattr(self, name, None)
        if self._own_sink and isinstance(self.sink, KafkaSink):
            self.sink.close()

    # -- the loop ---------------------------------------------------------------------
    def run_once(self) -> int:
        """One iteration; returns how many input records it polled."""
        cfg = self.config
        try:
            polled = self.consumer.poll(
                timeout_ms=int(cfg.poll_timeout_s * 1000), max_records=cfg.max_batch
            )
        except Exception as exc:
            err, self._listener_error = self._listener_error, None
            if err is not None:
                raise err from exc
            raise
        out: list[OutRecord] = []
        n = 0
        fresh = self._position_new_tasks()
        for tp, krecs in polled.items():
            task = self.tasks.get(tp.partition)
            n += len(krecs)
            if task is None or tp.partition in fresh:
                continue  # fetched before the (re)assignment's seek: read again from there
            raws = [
                RawRecord(tp.topic, r.value, r.key, tp.partition, r.offset, r.timestamp)
                for r in krecs
            ]
            if tp.topic == self.topics.telemetry:
                if not task.add_telemetry(raws):
                    self._reseek(tp, task.telemetry_next)
            else:
                dead = task.add_positions(raws)
                if dead is None:
                    self._reseek(tp, task.positions_offset)
                else:
                    out.extend(dead)
        out.extend(self._poll_market())
        if any(t.pending_records for t in self.tasks.values()):
            need = max(t.pending_max_ts() for t in self.tasks.values())
            market_frontier = self._market_frontier(need)
            positions = self._positions_frontiers(need)
            for p, task in self.tasks.items():
                if task.pending_records:
                    frontier = min(market_frontier, positions[p])
                    out.extend(task.advance(frontier, self.market))
        self.counters["polled"] += n
        if out:
            try:
                self.sink.publish(out)
            except SinkError as exc:
                logger.error("publish failed (%s): rewinding to the checkpoints", exc)
                self._rewind()
                time.sleep(1.0)
                return n
            self.counters["published"] += len(out)
            self.counters["batches"] += 1
        self._maybe_checkpoint(idle=n == 0)
        self._flow_control()
        return n

    def _poll_market(self) -> list[OutRecord]:
        out: list[OutRecord] = []
        for _ in range(100):
            polled = self.market_consumer.poll(timeout_ms=0, max_records=10_000)
            if not polled:
                break
            for tp, krecs in polled.items():
                for r in krecs:
                    self.market.next_offset[tp.partition] = r.offset + 1
                    try:
                        m = parse_market(loads(r.value, self.config.max_message_bytes))
                    except ValidationError as exc:
                        raw = RawRecord(
                            tp.topic, r.value, r.key, tp.partition, r.offset, r.timestamp
                        )
                        out.append(dead_letter(raw, Reject(0, exc.reason, exc.detail), self.topics))
                        continue
                    self.market.add(tp.partition, r.offset, m)
        return out

    def _log_ends(self, _consumer: Any, tps: list[Any]) -> dict[Any, int]:
        """Log-end offsets asked of the broker *now* (a fetch's high watermark can be stale:
        telemetry in hand may be newer than the last context fetch). {} if unreachable."""
        if not tps:
            return {}
        try:
            return dict(self.offsets.end_offsets(tps, timeout_ms=5_000))
        except Exception as exc:  # broker away: treat context as incomplete (safe)
            logger.debug("end_offsets failed: %r", exc)
            return {}

    @staticmethod
    def _caught_up(consumer: Any, tp: Any, next_offset: int | None, ends: dict[Any, int]) -> bool:
        end = ends.get(tp)
        if end is None:
            return False
        if next_offset is None:
            try:
                next_offset = consumer.position(tp, timeout_ms=100)
            except Exception:
                return False
        return next_offset is not None and next_offset >= end

    def _market_frontier(self, need: float) -> float:
        tps = list(self.market_consumer.assignment())
        seen = min((self.market.max_ts.get(tp.partition, -math.inf) for tp in tps), default=0)
        if seen >= need:  # event time alone covers what is pending: no broker round trip
            return float(seen)
        ends = self._log_ends(self.market_consumer, tps)
        f = math.inf
        for tp in tps:
            nxt = self.market.next_offset.get(tp.partition)
            if not self._caught_up(self.market_consumer, tp, nxt, ends):
                f = min(f, self.market.max_ts.get(tp.partition, -math.inf))
        return f

    def _positions_frontiers(self, need: float) -> dict[int, float]:
        tps = {p: TopicPartition(self.topics.positions, p) for p in self.tasks}
        seen = {p: t.positions_max_ts for p, t in self.tasks.items()}
        if all(v is not None and v >= need for v in seen.values()):
            return {p: float(v) for p, v in seen.items() if v is not None}
        ends = self._log_ends(self.consumer, list(tps.values()))
        out = {}
        for p, task in self.tasks.items():
            if self._caught_up(self.consumer, tps[p], task.positions_offset, ends):
                out[p] = math.inf
            else:
                mx = task.positions_max_ts
                out[p] = -math.inf if mx is None else float(mx)
        return out

    def caught_up(self) -> bool:
        """Nothing pending and every assigned telemetry partition read to its log end."""
        if any(t.pending_records for t in self.tasks.values()):
            return False
        tps = {p: TopicPartition(self.topics.telemetry, p) for p in self.tasks}
        ends = self._log_ends(self.consumer, list(tps.values()))
        return all(
            self._caught_up(self.consumer, tps[p], t.telemetry_offset, ends)
            for p, t in self.tasks.items()
        )

    def _flow_control(self) -> None:
        limit = self.config.max_pending
        for p, task in self.tasks.items():
            tp = TopicPartition(self.topics.telemetry, p)
            if task.pending_records > limit and p not in self._paused:
                self.consumer.pause(tp)
                self._paused.add(p)
            elif task.pending_records <= limit // 2 and p in self._paused:
                self.consumer.resume(tp)
                self._paused.discard(p)

    # -- checkpoints and offsets ------------------------------------------------------
    def _checkpoint(self, task: PartitionTask) -> bool:
        if not task.dirty:
            return False
        ck = task.checkpoint(self.name)
        if ck is None:
            return False
        try:
            self.store.save(ck)
        except OSError as exc:
            logger.error("checkpoint of partition %d failed: %s", task.partition, exc)
            return False
        task.dirty = False
        task.last_checkpoint = time.monotonic()
        self.counters["checkpoints"] += 1
        return True

    def _maybe_checkpoint(self, idle: bool) -> None:
        now = time.monotonic()
        saved = False
        for task in self.tasks.values():
            if task.dirty and (
                idle or now - task.last_checkpoint >= self.config.checkpoint_interval_s
            ):
                saved |= self._checkpoint(task)
        if saved:
            self._commit()

    def _commit(self) -> None:
        """Commit the checkpointed offsets (never ahead of a checkpoint)."""
        from kafka.structs import OffsetAndMetadata

        offsets = {}
        for p, task in self.tasks.items():
            if task.dirty or task.telemetry_offset is None:
                continue
            offsets[TopicPartition(self.topics.telemetry, p)] = OffsetAndMetadata(
                task.telemetry_offset, "", -1
            )
            if task.positions_offset is not None:
                offsets[TopicPartition(self.topics.positions, p)] = OffsetAndMetadata(
                    task.positions_offset, "", -1
                )
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets)
        except Exception as exc:  # a rebalance in flight: the checkpoint already holds them
            logger.warning("offset commit failed (%r); the checkpoints hold the offsets", exc)

    # -- rebalance --------------------------------------------------------------------
    def _on_revoked(self, revoked: list[Any]) -> None:
        gone = sorted({tp.partition for tp in revoked if tp.topic == self.topics.telemetry})
        for p in gone:
            task = self.tasks.pop(p, None)
            if task is not None:
                self._checkpoint(task)
            self._paused.discard(p)
        if gone:
            logger.info("worker %s: revoked partitions %s", self.name, gone)

    def _on_lost(self, lost: list[Any]) -> None:
        gone = sorted({tp.partition for tp in lost if tp.topic == self.topics.telemetry})
        for p in gone:  # someone else may own it already: no checkpoint from here
            self.tasks.pop(p, None)
            self._paused.discard(p)
        if gone:
            logger.warning("worker %s: lost partitions %s", self.name, gone)

    def _reseek(self, tp: Any, offset: int | None) -> None:
        logger.warning("offset gap on %s: seeking back to %s", tp, offset)
        if offset is not None:
            self.consumer.seek(tp, offset)

    def _position_new_tasks(self) -> set[int]:
        """Seek newly assigned partitions to their checkpoint (else committed, else start).

        Done after ``poll`` returns, outside the rebalance callback (blocking calls there
        stall the client's event loop); records that ``poll`` returned for these partitions
        are dropped, since they may come from before the seek.
        """
        todo, self._to_seek = self._to_seek & set(self.tasks), set()
        for p in sorted(todo):
            task = self.tasks[p]
            tele = TopicPartition(self.topics.telemetry, p)
            pos = TopicPartition(self.topics.positions, p)
            starts = {}
            for tp, known in ((tele, task.telemetry_offset), (pos, task.positions_offset)):
                off = known
                if off is None:
                    off = self.consumer.committed(tp)
                if off is None:
                    off = self.consumer.beginning_offsets([tp])[tp]
                self.consumer.seek(tp, off)
                starts[tp] = off
            task.start_at(starts[tele], starts[pos])
        return todo

    def _on_assigned(self, assigned: list[Any]) -> None:
        parts = sorted({tp.partition for tp in assigned if tp.topic == self.topics.telemetry})
        notes = []
        for p in parts:
            if p in self.tasks:
                continue
            self.tasks[p] = self._restore(p)
            t = self.tasks[p]
            notes.append(
                f"p{p}@{t.telemetry_offset}" if t.telemetry_offset is not None else f"p{p}:fresh"
            )
        self.assignments.append(sorted(self.tasks))
        logger.info(
            "worker %s: assigned partitions %s (%s)",
            self.name,
            sorted(self.tasks),
            ", ".join(notes) or "kept",
        )

    def _restore(self, p: int) -> PartitionTask:
        ck = self.store.load(p)
        self._to_seek.add(p)
        return PartitionTask(p, self.make_engine, self.topics, self.config.max_message_bytes, ck)

    def _rewind(self) -> None:
        """Throw away state past the checkpoints and read again from their offsets."""
        self.counters["rewinds"] += 1
        for p in list(self.tasks):
            self.tasks[p] = self._restore(p)


def run_stream(
    config: StreamConfig,
    make_engine: EngineFactory,
    idle_exit_s: float | None = None,
    stop: threading.Event | None = None,
) -> KafkaStreamWorker:
    """Run one worker to the end (``stop`` set, or idle); returns it for its counters."""
    worker = KafkaStreamWorker(config, make_engine)
    if stop is not None:

        def relay() -> None:
            stop.wait()
            worker.stop()

        threading.Thread(target=relay, daemon=True).start()
    worker.run(idle_exit_s=idle_exit_s)
    return worker


def engine_factory(config: EngineConfig, model: RiskModel | None) -> EngineFactory:
    """``snapshot or None -> Engine`` with one config and model for every partition."""

    def make(snapshot: dict[str, Any] | None) -> Engine:
        if snapshot is None:
            return Engine(config, model=model)
        return Engine.from_snapshot(snapshot, config, model)

    return make
