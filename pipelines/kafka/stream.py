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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from pipelines.driver import RecordColumns, Topics, dead_letter
from pipelines.embedded.feed import FeedMonitor
from pipelines.kafka.adapter import TP as TopicPartition
from pipelines.kafka.adapter import Consumer, Fetched
from pipelines.kafka.checkpoint import CheckpointStore
from pipelines.kafka.clients import kafka_client
from pipelines.kafka.commands import Command, CommandLog, apply_commands
from pipelines.kafka.commands import decode as decode_command
from pipelines.kafka.partition import (
    EngineFactory,
    MarketLog,
    PartitionTask,
)
from pipelines.outbound.alertmanager import AlertNotifier
from predictor.errors import PrecoveryError, SinkError, SourceError, ValidationError
from predictor.events import (
    Reject,
    decode_record,
    parse_market,
)
from predictor.ports import OutRecord, RawRecord, Sink

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
        self.market = MarketLog()
        self.commands = CommandLog()
        self.name = config.client_id or "precovery-stream"
        self._stop = threading.Event()
        self._paused: set[int] = set()
        #: the clients (:class:`~pipelines.kafka.adapter.Consumer`; None while closed)
        self.consumer: Any = None
        self.market_consumer: Any = None
        self.commands_consumer: Any = None
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
        self.assignments: list[list[int]] = []
        self.listener_error: Exception | None = None
        self._to_seek: set[int] = set()
        self.feed = FeedMonitor(config.feed_lost_after_s)
        self.notifier = notifier
        self._tele_ends: dict[int, int] = {}
        self._last_fleet_check = -math.inf
        self._fleet_moved_at: float | None = None
        #: partition -> (wall time it went quiet, its watermark and next offset then)
        self._quiet: dict[int, tuple[float, int, int]] = {}
        self._lost_reported = False
        #: wall time of the last progress (records polled or processed, or nothing to do)
        self._progress_at = time.monotonic()
        #: wall time the broker last answered a log-end query, and the processed offsets then
        self._ends_ok_at = time.monotonic()
        self._processed_mark: dict[int, int | None] = {}
        #: a new risk model waiting for the next iteration (set_model, any thread)
        self._next_model: tuple[Any] | None = None
        make_engine(None)  # fail before joining the group if the model does not fit

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
        """Open the three clients: market reader, log-end offsets, group member (all or
        none: a failure closes the ones already open and raises ``SourceError``)."""
        cfg = self.config
        opened: list[Consumer] = []
        try:
            opened.append(self.kafka.assigned_consumer(cfg.bootstrap, self.topics.market))
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
            for c in opened:
                _close_quietly(c, "client")
            raise
        self.market = MarketLog()  # the new market reader reads market.v1 from the start
        self.market_consumer, self.offsets, self.consumer = opened
        self.commands = CommandLog()  # and the commands reader commands.v1
        self.commands_consumer = self._open_commands()
        now = time.monotonic()
        self._progress_at = self._ends_ok_at = now

    def _open_commands(self) -> Consumer | None:
        """The reader of the commands topic, from its start (None without one: approvals
        taken at the API then do not reach this worker, which says so and streams on)."""
        topic = self.topics.commands
        if not topic:
            return None
        try:
            return self.kafka.assigned_consumer(self.config.bootstrap, topic)
        except PrecoveryError as exc:
            logger.error(
                "worker %s cannot read %s (%s): approved failovers will not reach it; "
                "create the topic (precovery stream does, unless --no-create-topics)",
                self.name,
                topic,
                exc,
            )
            return None

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
        for name in ("market_consumer", "commands_consumer", "offsets"):
            client = getattr(self, name)
            if client is not None:
                client.close()
                setattr(self, name, None)
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
            if time.monotonic() - self._progress_at >= min(cfg.stall_reconnect_s, 5.0):
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
                dead = task.add_positions(_raws(f))
                if dead is None:
                    self._reseek(tp, task.positions_offset)
                else:
                    out.extend(dead)
        out.extend(self._poll_market())
        if self.commands_consumer is not None:
            out.extend(self._poll_commands())
        self.feed.note(n)  # records read are input, a backlog included
        if n:
            self._fleet_moved_at = time.monotonic()
        if any(t.pending_records for t in self.tasks.values()):
            need = max(t.pending_max_ts() for t in self.tasks.values())
            market_frontier = self._market_frontier(need)
            positions = self._positions_frontiers(need)
            for p, task in self.tasks.items():
                if task.pending_records:
                    frontier = min(market_frontier, positions[p])
                    out.extend(task.advance(frontier))
        out.extend(self._watch_silence())
        if n:
            self._progress_at = time.monotonic()
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
        """Reconnect when the clients are stuck: see ``StreamConfig.stall_reconnect_s``.

        Progress is records polled (:meth:`run_once`), telemetry processed, or nothing
        left to process on the broker (:meth:`_note_lag`); time while the broker does not
        answer is not counted, so the clients get ``stall_reconnect_s`` after a broker
        comes back to recover by themselves. Without progress for
        ``stall_reconnect_s`` while the broker answered log-end queries, the group
        consumer or the market reader is stuck: every client is closed (partitions are
        checkpointed and revoked first, as in a rebalance) and opened anew, and the
        partitions resume from their checkpoints. A broker that does not answer at all
        for that long gets a fresh log-end client only (the group consumer retries by
        itself, and a new one could not join either).
        """
        limit = self.config.stall_reconnect_s
        now = time.monotonic()
        if not self.tasks:  # nothing assigned: nothing can stall (a standby member)
            self._progress_at = self._ends_ok_at = now
            return
        if limit <= 0 or self.consumer is None:
            return
        if now - self._ends_ok_at >= limit:
            logger.warning(
                "worker %s: no answer from the broker for %.0f s: a new log-end client",
                self.name,
                now - self._ends_ok_at,
            )
            self._ends_ok_at = now
            self._replace_offsets_client()
            return
        if now - self._progress_at < limit:
            return
        self.reconnect(f"nothing polled or processed for {now - self._progress_at:.0f} s")

    def _note_lag(self, ends: dict[int, int]) -> None:
        """Given fresh log-end offsets of telemetry: progress, or records left behind?"""
        now = time.monotonic()
        self._ends_ok_at = now
        processed = {p: t.telemetry_offset for p, t in self.tasks.items()}
        behind = any(
            p in ends and ends[p] > (t.telemetry_offset or 0) for p, t in self.tasks.items()
        )
        if not behind or processed != self._processed_mark:
            self._progress_at = now
        self._processed_mark = processed

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
        for name in ("consumer", "market_consumer", "commands_consumer", "offsets"):
            client = getattr(self, name)
            setattr(self, name, None)
            if client is not None:
                _close_quietly(client, name)
        try:
            self._connect()
        except SourceError as exc:  # broker away: try again after another stall period
            logger.warning("worker %s: reconnect failed (%s); retrying later", self.name, exc)
            self._progress_at = time.monotonic()

    # -- silence ------------------------------------------------------------------------
    def _watch_silence(self) -> list[OutRecord]:
        """Let quiet partitions see time pass while the fleet reports; flag a lost feed.

        Once per ``fleet_check_s``: the log-end offsets of *every* telemetry partition
        say whether the fleet still reports (they grow) — whoever's partitions they are.
        A partition of ours that is read to its end and has nothing pending is quiet: its
        event time moves on from its watermark by the wall time the fleet was seen alive
        since it went quiet (and at least to the newest watermark of our other
        partitions), so the heartbeat rule fires for a dark system within one check.
        No growth anywhere for ``feed_lost_after_s`` is ``telemetry_lost``: time then
        stands still (unless ``failover_on_feed_loss``) and health.v1 says so.
        """
        cfg = self.config
        now = time.monotonic()
        if now - self._last_fleet_check < cfg.fleet_check_s or not self.tasks:
            return []
        self._last_fleet_check = now
        ends = self._telemetry_ends()
        if ends:
            self._note_lag(ends)
        else:  # the broker does not answer: no evidence of a stuck client (a stall is
            self._progress_at = now  # counted only while the broker answers)
        growth = sum(max(0, e - self._tele_ends.get(p, e)) for p, e in ends.items())
        self._tele_ends.update(ends)
        if growth:
            self._fleet_moved_at = now
        lag = sum(
            max(0, ends[p] - (t.telemetry_next or 0)) for p, t in self.tasks.items() if p in ends
        )
        self.feed.note(growth, lag if ends else None)
        lost = self.feed.check()
        out: list[OutRecord] = []
        conditions = ["telemetry_lost"] if lost else []
        if lost != self._lost_reported:
            self._lost_reported = lost
            for task in self.tasks.values():
                out.extend(task.health(conditions))
        alive_until = now if cfg.failover_on_feed_loss else self._fleet_moved_at
        newest = max(
            (t.engine.watermark_ms for t in self.tasks.values() if t.engine.watermark_ms),
            default=None,
        )
        for p, task in self.tasks.items():
            wm = task.engine.watermark_ms
            caught_up = p in ends and (task.telemetry_next or 0) >= ends[p]
            if task.pending_records or not caught_up or wm is None:
                self._quiet.pop(p, None)
                continue
            offset = task.telemetry_next or 0
            since, base, at = self._quiet.get(p, (now, wm, offset))
            if at != offset:  # it processed records since: quiet from now
                since, base = now, wm
            self._quiet[p] = (since, base, offset)
            target = base + (
                int((alive_until - since) * 1000) if alive_until and alive_until > since else 0
            )
            if newest is not None and not lost:
                target = max(target, newest)
            if target > wm:
                out.extend(task.advance_quiet(target, conditions))
        return out

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

    def _poll_market(self) -> list[OutRecord]:
        out: list[OutRecord] = []
        assert self.market_consumer is not None
        for _ in range(100):
            polled = self.market_consumer.poll(0.0, 10_000)
            if not polled:
                break
            for f in polled:
                for r in _raws(f):
                    self.market.next_offset[f.partition] = r.offset + 1
                    try:
                        m = decode_record(r.value, parse_market, self.config.max_message_bytes)
                    except ValidationError as exc:
                        out.append(dead_letter(r, Reject(0, exc.reason, exc.detail), self.topics))
                        continue
                    self.market.add(f.partition, r.offset, m)
                    for task in self.tasks.values():
                        task.add_market([m])
        return out

    def _poll_commands(self) -> list[OutRecord]:
        """Read new failover commands; carry each out on the partition engines that know
        its system (once per epoch: see :mod:`pipelines.kafka.commands`)."""
        out: list[OutRecord] = []
        assert self.commands_consumer is not None
        for _ in range(100):
            polled = self.commands_consumer.poll(0.0, 1000)
            if not polled:
                break
            for f in polled:
                for r in _raws(f):
                    try:
                        cmd = decode_command(r.value)
                    except ValidationError as exc:
                        out.append(dead_letter(r, Reject(0, exc.reason, exc.detail), self.topics))
                        continue
                    self.commands.add(r.offset, cmd)
                    for task in self.tasks.values():
                        self._apply_commands(task, [cmd])
        return out

    def _apply_commands(self, task: PartitionTask, commands: Iterable[Command]) -> None:
        done = apply_commands(task.engine, commands)
        if done:
            task.dirty = True
            self.counters["failovers_applied"] += len(done)

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

    @staticmethod
    def _caught_up(consumer: Any, tp: Any, next_offset: int | None, ends: dict[Any, int]) -> bool:
        end = ends.get(tp)
        if end is None:
            return False
        if next_offset is None:
            try:
                next_offset = consumer.position(tp)
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
            self._quiet.pop(p, None)
        if gone:
            logger.info("worker %s: revoked partitions %s", self.name, gone)

    def on_lost(self, lost: list[Any]) -> None:
        gone = sorted({tp.partition for tp in lost if tp.topic == self.topics.telemetry})
        for p in gone:  # someone else may own it already: no checkpoint from here
            self.tasks.pop(p, None)
            self._paused.discard(p)
            self._quiet.pop(p, None)
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
        # market.v1 read so far, from what the restored state has not applied yet
        task.add_market(self.market.between(task.engine.context.applied_ms, math.inf))
        self._apply_commands(task, self.commands.commands)  # those it has are skipped
        return task

    def _rewind(self) -> None:
        """Throw away state past the checkpoints and read again from their offsets."""
        self.counters["rewinds"] += 1
        for p in list(self.tasks):
            self.tasks[p] = self._restore(p)


def _raws(f: Fetched) -> list[RawRecord]:
    t, p = f.topic, f.partition
    return [
        RawRecord(t, v, k, p, o, ts)
        for v, k, o, ts in zip(f.values, f.keys, f.offsets, f.timestamps, strict=True)
    ]


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
