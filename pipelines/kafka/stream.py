"""The stream on Apache Kafka: one consumer group, one engine per telemetry partition.

:class:`KafkaStreamWorker` polls telemetry and positions (co-partitioned, range
assignor) and reads market.v1 whole; each partition's :class:`PartitionTask` runs the
engine with context applied in event time; outputs are acknowledged, then the state is
checkpointed with its offsets, then the offsets are committed. On (re)assignment a
partition resumes from its newest checkpoint. The design and the delivery guarantee:
docs/streaming.md.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from pipelines.driver import RecordColumns, Topics
from pipelines.embedded.feed import FeedMonitor
from pipelines.kafka.adapter import TP as TopicPartition
from pipelines.kafka.adapter import Consumer
from pipelines.kafka.checkpoint import CheckpointStore
from pipelines.kafka.clients import kafka_client
from pipelines.kafka.context_readers import ContextReaders, caught_up, raws
from pipelines.kafka.partition import EngineFactory, PartitionTask
from pipelines.kafka.watch import NEW_LOG_END_CLIENT, Watch
from pipelines.outbound.alertmanager import AlertNotifier
from predictor.errors import SinkError, SourceError
from predictor.ports import OutRecord, Sink
from predictor.warmup import warm_up

if TYPE_CHECKING:
    from pipelines.records.audit import AuditLog

logger = logging.getLogger(__name__)


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
    fleet_check_s
        How often (wall seconds) the worker asks the broker whether the telemetry topic
        still grows; a quiet partition's event time moves on only while it does.
    feed_lost_after_s
        Wall seconds without any growth of the telemetry topic after which the feed is
        lost (``telemetry_lost`` in health.v1 and readiness).
    failover_on_feed_loss
        Let time run on for every partition while the whole feed is lost, so the
        heartbeat rule fires fleet-wide (off: a lost feed is not evidence of an outage).
    stall_reconnect_s
        Wall seconds of *stall* after which the worker drops its Kafka clients and connects
        afresh (0: never): the broker answers and holds telemetry of ours past what we
        processed, yet nothing was polled or processed all that time. A client can stay
        stuck after a broker restart (a failed connection or offset validation it never
        retries); a new one starts clean. See docs/streaming.md, "Broker restarts".
    client
        ``kafka-python`` or ``confluent`` (None: ``PRECOVERY_KAFKA_CLIENT``, else the
        default of :mod:`pipelines.kafka.clients`).
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
    fleet_check_s: float = 1.0
    feed_lost_after_s: float = 30.0
    failover_on_feed_loss: bool = False
    stall_reconnect_s: float = 30.0
    client: str | None = None


class KafkaStreamWorker:
    """One member of the stream group. ``run()`` until :meth:`stop` (or idle, if asked).

    Parameters
    ----------
    config
        Worker settings.
    make_engine
        ``snapshot or None -> Engine``: a fresh engine, or one restored from a checkpoint.
    sink
        Where outputs go; default a :class:`~pipelines.kafka.client_python.KafkaSink` on
        ``config.bootstrap``.
    notifier
        SRE alerts: told every published recommendation, synced with Alertmanager from a
        thread of its own (never in the poll loop), with the feed's conditions.
    audit
        Every published recommendation is queued there (docs/audit.md); after a rewind
        (at-least-once) one may be recorded again under the same ``subject``.
    """

    def __init__(
        self,
        config: StreamConfig,
        make_engine: EngineFactory,
        sink: Sink | None = None,
        notifier: AlertNotifier | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.config = config
        self.audit = audit
        self.topics = config.topics
        self.make_engine = make_engine
        self.store = CheckpointStore(
            config.checkpoint_dir, config.group_id, config.topics.telemetry
        )
        self.kafka = kafka_client(config.client)
        self._own_sink = sink is None
        self.sink: Sink = sink or self.kafka.sink(
            config.bootstrap, client_id=f"{config.client_id or 'precovery'}-out"
        )
        self.tasks: dict[int, PartitionTask] = {}
        self.name = config.client_id or "precovery-stream"
        self._stop = threading.Event()
        self._paused: set[int] = set()
        #: the clients (:class:`~pipelines.kafka.adapter.Consumer`; None while closed)
        self.consumer: Any = None
        self.offsets: Any = None
        self.counters: dict[str, int] = {
            "polled": 0,
            "published": 0,
            "checkpoints": 0,
            "rewinds": 0,
            "batches": 0,
            "reconnects": 0,
            "failovers_applied": 0,
        }
        #: market.v1 and commands.v1, read whole (pipelines.kafka.context_readers)
        self.context = ContextReaders(
            self.kafka,
            config.bootstrap,
            self.topics,
            config.max_message_bytes,
            self.name,
            self.counters,
        )
        self.assignments: list[list[int]] = []
        self.listener_error: Exception | None = None
        self._to_seek: set[int] = set()
        self.feed = FeedMonitor(config.feed_lost_after_s)
        #: stall and silence (pipelines.kafka.watch)
        self.watch = Watch(config, self.feed)
        self.notifier = notifier
        #: a new risk model waiting for the next iteration (set_model, any thread)
        self._next_model: tuple[Any] | None = None
        # Fail before joining the group if the model does not fit, and load the compiled
        # kernels now rather than inside the first tick (predictor.warmup).
        warm_up(make_engine(None))

    # -- lifecycle --------------------------------------------------------------------

    @property
    def owns_sink(self) -> bool:
        """True when the worker opened its sink itself (and so closes it)."""
        return self._own_sink

    def stop(self) -> None:
        self._stop.set()

    def run(self, idle_exit_s: float | None = None) -> None:
        """Consume until :meth:`stop`; with ``idle_exit_s``, also stop after that long idle."""
        cfg = self.config
        self._connect()
        logger.info("stream worker %s joined group %s", self.name, cfg.group_id)
        idle_since = time.monotonic()
        last_log = time.monotonic()
        self.feed.worker_started()
        error: BaseException | None = None
        alerts_stop = threading.Event()
        if self.notifier is not None:
            threading.Thread(
                target=self.notifier.run,
                args=(alerts_stop, 5.0, self.feed.conditions),
                name="alerts",
                daemon=True,
            ).start()
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
        except BaseException as exc:
            error = exc
            raise
        finally:
            alerts_stop.set()
            self.feed.worker_stopped(error if isinstance(error, Exception) else None)
            self.close()

    def _connect(self) -> None:
        """Open the clients: the context readers (market.v1, commands.v1), log-end
        offsets, group member (all or none: a failure closes the ones already open and
        raises ``SourceError``)."""
        cfg = self.config
        opened: list[Consumer] = []
        try:
            self.context.open()
            opened.append(self.kafka.offsets_client(cfg.bootstrap))
            opened.append(
                self.kafka.group_consumer(
                    cfg.bootstrap,
                    cfg.group_id,
                    [self.topics.telemetry, self.topics.positions],
                    self,
                    session_timeout_ms=cfg.session_timeout_ms,
                    client_id=cfg.client_id,
                )
            )
        except BaseException:
            self.context.close()
            for c in opened:
                _close_quietly(c, "client")
            raise
        self.offsets, self.consumer = opened
        self.watch.connected()

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
        self.context.close()
        if self.offsets is not None:
            self.offsets.close()
            self.offsets = None
        close = getattr(self.sink, "close", None)
        if self._own_sink and close is not None:
            close()

    # -- the loop ---------------------------------------------------------------------
    def set_model(self, model: Any) -> None:
        """Swap every partition's risk model before the next poll (from any thread): a
        batch is scored by one model, and no record is dropped or read twice for it."""
        self._next_model = (model,)

    def run_once(self) -> int:
        """One iteration; returns how many input records it polled."""
        cfg = self.config
        if self._next_model is not None:
            (model,), self._next_model = self._next_model, None
            for running in self.tasks.values():
                running.engine.set_model(model)
        if self.consumer is None:  # a reconnect failed: try again after a while
            if time.monotonic() - self.watch.progress_at >= min(cfg.stall_reconnect_s, 5.0):
                self.reconnect("reconnect failed before")
            else:
                time.sleep(cfg.poll_timeout_s)
            return 0
        try:
            polled = self.consumer.poll(cfg.poll_timeout_s, cfg.max_batch)
        except Exception as exc:
            err, self.listener_error = self.listener_error, None
            if err is not None:
                raise err from exc
            raise
        out: list[OutRecord] = []
        n = 0
        fresh = self._position_new_tasks()
        for f in polled:
            task = self.tasks.get(f.partition)
            n += len(f)
            if task is None or f.partition in fresh:
                continue  # fetched before the (re)assignment's seek: read again from there
            tp = TopicPartition(f.topic, f.partition)
            if f.topic == self.topics.telemetry:
                cols = RecordColumns(
                    f.topic, f.partition, f.values, f.keys, f.offsets, f.timestamps
                )
                if not task.add_telemetry(cols):
                    self._reseek(tp, task.telemetry_next)
            else:
                dead = task.add_positions(raws(f))
                if dead is None:
                    self._reseek(tp, task.positions_offset)
                else:
                    out.extend(dead)
        out.extend(self.context.poll(self.tasks))
        self.watch.polled(n)  # records read are input, a backlog included
        if any(t.pending_records for t in self.tasks.values()):
            need = max(t.pending_max_ts() for t in self.tasks.values())
            market_frontier = self.context.market_frontier(
                need, lambda tps: self._log_ends(self.consumer, tps)
            )
            positions = self._positions_frontiers(need)
            for p, task in self.tasks.items():
                if task.pending_records:
                    frontier = min(market_frontier, positions[p])
                    out.extend(task.advance(frontier))
        out.extend(self.watch.silence(self.tasks, self._telemetry_ends))
        if n:
            self.watch.progressed()
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
            if self.notifier is not None:
                self.notifier.observe(
                    orjson.loads(r.value) for r in out if r.topic == self.topics.recommendations
                )
            if self.audit is not None:  # queued: the audit's writer thread does the SQL
                self.audit.recommendations(self._published_recommendations(out), self.name)
        self._maybe_checkpoint(idle=n == 0)
        self._flow_control()
        self._watch_stall()
        return n

    def _published_recommendations(self, out: list[OutRecord]) -> list[dict[str, Any]]:
        """The recommendations among published records (situation reports have a kind)."""
        recs = (orjson.loads(r.value) for r in out if r.topic == self.topics.recommendations)
        return [rec for rec in recs if not rec.get("kind")]

    # -- a stuck client ---------------------------------------------------------------
    def _watch_stall(self) -> None:
        """Act on :meth:`Watch.stall`: a fresh log-end client, or a reconnect."""
        action = self.watch.stall(self.tasks, self.consumer is not None)
        if action == NEW_LOG_END_CLIENT:
            self._replace_offsets_client()
        elif action is not None:
            self.reconnect(action)

    def _replace_offsets_client(self) -> None:
        if self.offsets is not None:
            _close_quietly(self.offsets, "log-end client")
        self.offsets = None
        try:
            self.offsets = self.kafka.offsets_client(self.config.bootstrap)
        except SourceError as exc:
            logger.warning("no new log-end client yet: %s", exc)

    def reconnect(self, why: str) -> None:
        """Close every Kafka client (partitions checkpointed and revoked) and open new ones."""
        self.counters["reconnects"] += 1
        logger.warning("worker %s: %s: reconnecting to Kafka", self.name, why)
        for task in list(self.tasks.values()):
            self._checkpoint(task)
        self._commit()
        parts = [TopicPartition(self.topics.telemetry, p) for p in self.tasks]
        self.on_revoked(parts)  # the state is in the checkpoints: resume from there
        self._to_seek.clear()
        self.context.close()
        for name in ("consumer", "offsets"):
            client = getattr(self, name)
            setattr(self, name, None)
            if client is not None:
                _close_quietly(client, name)
        try:
            self._connect()
        except SourceError as exc:  # broker away: try again after another stall period
            logger.warning("worker %s: reconnect failed (%s); retrying later", self.name, exc)
            self.watch.progressed()

    def _telemetry_ends(self) -> dict[int, int]:
        """Log-end offset of every partition of the telemetry topic ({} if unreachable)."""
        try:
            assert self.offsets is not None
            parts = self.offsets.partitions_for(self.topics.telemetry, timeout_s=5.0)
        except Exception as exc:
            logger.debug("partitions_for failed: %r", exc)
            return {}
        tps = [TopicPartition(self.topics.telemetry, p) for p in sorted(parts)]
        return {tp.partition: off for tp, off in self._log_ends(self.offsets, tps).items()}

    def _log_ends(self, _consumer: Any, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Log-end offsets asked of the broker *now* (a fetch's high watermark can be stale:
        telemetry in hand may be newer than the last context fetch). {} if unreachable."""
        if not tps:
            return {}
        try:
            assert self.offsets is not None
            return self.offsets.end_offsets(tps, timeout_s=5.0)
        except Exception as exc:  # broker away: treat context as incomplete (safe)
            logger.debug("end_offsets failed: %r", exc)
            return {}

    def _positions_frontiers(self, need: float) -> dict[int, float]:
        tps = {p: TopicPartition(self.topics.positions, p) for p in self.tasks}
        seen = {p: t.positions_max_ts for p, t in self.tasks.items()}
        if all(v is not None and v >= need for v in seen.values()):
            return {p: float(v) for p, v in seen.items() if v is not None}
        ends = self._log_ends(self.consumer, list(tps.values()))
        out = {}
        for p, task in self.tasks.items():
            if caught_up(self.consumer, tps[p], task.positions_offset, ends):
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
            caught_up(self.consumer, tps[p], t.telemetry_offset, ends)
            for p, t in self.tasks.items()
        )

    def _flow_control(self) -> None:
        limit = self.config.max_pending
        for p, task in self.tasks.items():
            tp = TopicPartition(self.topics.telemetry, p)
            if task.pending_records > limit and p not in self._paused:
                self.consumer.pause([tp])
                self._paused.add(p)
            elif task.pending_records <= limit // 2 and p in self._paused:
                self.consumer.resume([tp])
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
        offsets = {}
        for p, task in self.tasks.items():
            if task.dirty or task.telemetry_offset is None:
                continue
            offsets[TopicPartition(self.topics.telemetry, p)] = task.telemetry_offset
            if task.positions_offset is not None:
                offsets[TopicPartition(self.topics.positions, p)] = task.positions_offset
        if not offsets or self.consumer is None:
            return
        try:
            self.consumer.commit(offsets=offsets)
        except Exception as exc:  # a rebalance in flight: the checkpoint already holds them
            logger.warning("offset commit failed (%r); the checkpoints hold the offsets", exc)

    # -- rebalance --------------------------------------------------------------------
    def on_revoked(self, revoked: list[Any]) -> None:
        gone = sorted({tp.partition for tp in revoked if tp.topic == self.topics.telemetry})
        for p in gone:
            task = self.tasks.pop(p, None)
            if task is not None:
                self._checkpoint(task)
            self._paused.discard(p)
            self.watch.forget([p])
        if gone:
            logger.info("worker %s: revoked partitions %s", self.name, gone)

    def on_lost(self, lost: list[Any]) -> None:
        gone = sorted({tp.partition for tp in lost if tp.topic == self.topics.telemetry})
        for p in gone:  # someone else may own it already: no checkpoint from here
            self.tasks.pop(p, None)
            self._paused.discard(p)
            self.watch.forget([p])
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
                    off = self.consumer.beginning_offset(tp)
                self.consumer.seek(tp, off)
                starts[tp] = off
            task.start_at(starts[tele], starts[pos])
        return todo

    def on_assigned(self, assigned: list[Any]) -> None:
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
        task = PartitionTask(p, self.make_engine, self.topics, self.config.max_message_bytes, ck)
        self.context.hand_over(task)  # the market and commands it has not applied yet
        return task

    def _rewind(self) -> None:
        """Throw away state past the checkpoints and read again from their offsets."""
        self.counters["rewinds"] += 1
        for p in list(self.tasks):
            self.tasks[p] = self._restore(p)


def _close_quietly(client: Any, what: str) -> None:
    """Close a Kafka client; a stuck one may not close cleanly: log and drop it."""
    try:
        client.close(timeout_s=5.0)
    except Exception as exc:
        logger.warning("closing the %s failed: %r", what, exc)


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
