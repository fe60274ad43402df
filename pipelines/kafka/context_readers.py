"""The topics every stream worker reads whole: market.v1 and commands.v1.

Telemetry and positions are partitioned by system and shared out by the consumer group;
market conditions (keyed by venue) and failover commands (one partition) concern every
partition, so each worker reads both topics from their start with group-less consumers,
keeps what it read (:class:`~pipelines.kafka.partition.MarketLog`,
:class:`~pipelines.kafka.commands.CommandLog`) and hands it to every partition it owns:
as it arrives, and whole to a partition it is given later (a restore applies only what
the partition's checkpoint does not hold: market by event time, commands by epoch).

The market reader is required (a worker without market data would price nothing); the
commands reader is optional (without one, approvals taken at the API do not reach this
worker, which says so in its log and streams on).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pipelines.driver import Topics, dead_letter
from pipelines.kafka.adapter import TP, Consumer, Fetched
from pipelines.kafka.clients import KafkaClient
from pipelines.kafka.commands import Command, CommandLog, apply_commands
from pipelines.kafka.commands import decode as decode_command
from pipelines.kafka.partition import MarketLog, PartitionTask
from predictor.errors import PrecoveryError, ValidationError
from predictor.events import Reject, decode_record, parse_market
from predictor.ports import OutRecord, RawRecord

logger = logging.getLogger(__name__)

LogEnds = Callable[[list[TP]], dict[TP, int]]


def caught_up(consumer: Any, tp: Any, next_offset: int | None, ends: Mapping[Any, int]) -> bool:
    """Whether ``consumer`` has read ``tp`` to its log end (``ends``; unknown: False)."""
    end = ends.get(tp)
    if end is None:
        return False
    if next_offset is None:
        try:
            next_offset = consumer.position(tp)
        except Exception:
            return False
    return next_offset is not None and next_offset >= end


def raws(f: Fetched) -> list[RawRecord]:
    """The records of one fetched partition, one object each (context topics are small)."""
    t, p = f.topic, f.partition
    return [
        RawRecord(t, v, k, p, o, ts)
        for v, k, o, ts in zip(f.values, f.keys, f.offsets, f.timestamps, strict=True)
    ]


class ContextReaders:
    """market.v1 and commands.v1 for one worker (see the module docstring)."""

    def __init__(
        self,
        kafka: KafkaClient,
        bootstrap: str,
        topics: Topics,
        max_bytes: int,
        name: str,
        counters: dict[str, int],
    ) -> None:
        self.kafka = kafka
        self.bootstrap = bootstrap
        self.topics = topics
        self.max_bytes = max_bytes
        self.name = name
        self.market = MarketLog()
        self.commands = CommandLog()
        self.market_consumer: Consumer | None = None
        self.commands_consumer: Consumer | None = None
        #: the worker's counters: ``failovers_applied`` grows here
        self.counters = counters
        counters.setdefault("failovers_applied", 0)

    # -- clients ----------------------------------------------------------------------
    def open(self) -> None:
        """Open the readers, from the start of their topics (the logs start afresh).
        Raises ``SourceError`` when the market reader cannot be opened."""
        self.close()
        self.market = MarketLog()
        self.commands = CommandLog()
        self.market_consumer = self.kafka.assigned_consumer(self.bootstrap, self.topics.market)
        self.commands_consumer = self._open_commands()

    def _open_commands(self) -> Consumer | None:
        topic = self.topics.commands
        if not topic:
            return None
        try:
            return self.kafka.assigned_consumer(self.bootstrap, topic)
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
        for attr in ("market_consumer", "commands_consumer"):
            client = getattr(self, attr)
            setattr(self, attr, None)
            if client is not None:
                try:
                    client.close()
                except Exception as exc:  # closing must not hide the caller's own error
                    logger.warning("closing the %s failed: %r", attr, exc)

    # -- reading ----------------------------------------------------------------------
    def poll(self, tasks: Mapping[int, PartitionTask]) -> list[OutRecord]:
        """Read what is new on both topics and hand it to ``tasks``; returns dead letters."""
        out = self._poll_market(tasks)
        if self.commands_consumer is not None:
            out.extend(self._poll_commands(tasks))
        return out

    def _poll_market(self, tasks: Mapping[int, PartitionTask]) -> list[OutRecord]:
        out: list[OutRecord] = []
        assert self.market_consumer is not None
        for _ in range(100):
            polled = self.market_consumer.poll(0.0, 10_000)
            if not polled:
                break
            for f in polled:
                for r in raws(f):
                    self.market.next_offset[f.partition] = r.offset + 1
                    try:
                        m = decode_record(r.value, parse_market, self.max_bytes)
                    except ValidationError as exc:
                        out.append(dead_letter(r, Reject(0, exc.reason, exc.detail), self.topics))
                        continue
                    self.market.add(f.partition, r.offset, m)
                    for task in tasks.values():
                        task.add_market([m])
        return out

    def _poll_commands(self, tasks: Mapping[int, PartitionTask]) -> list[OutRecord]:
        """New failover commands, carried out on the partition engines that know their
        system (once per epoch: see :mod:`pipelines.kafka.commands`)."""
        out: list[OutRecord] = []
        assert self.commands_consumer is not None
        for _ in range(100):
            polled = self.commands_consumer.poll(0.0, 1000)
            if not polled:
                break
            for f in polled:
                for r in raws(f):
                    try:
                        cmd = decode_command(r.value)
                    except ValidationError as exc:
                        out.append(dead_letter(r, Reject(0, exc.reason, exc.detail), self.topics))
                        continue
                    self.commands.add(cmd)
                    for task in tasks.values():
                        self._apply(task, [cmd])
        return out

    def _apply(self, task: PartitionTask, commands: Iterable[Command]) -> None:
        done = apply_commands(task.engine, commands)
        if done:
            task.dirty = True
            self.counters["failovers_applied"] += len(done)

    def hand_over(self, task: PartitionTask) -> None:
        """Give a partition just restored what it has not applied yet: market.v1 after its
        engine's context, every command (those it holds are skipped by epoch)."""
        task.add_market(self.market.between(task.engine.context.applied_ms, math.inf))
        self._apply(task, self.commands.commands)

    # -- event time -------------------------------------------------------------------
    def market_frontier(self, need: float, log_ends: LogEnds) -> float:
        """Event time up to which market.v1 is known complete (``need``: what pending
        telemetry needs; when what was read covers it, no broker round trip)."""
        assert self.market_consumer is not None
        tps = list(self.market_consumer.assignment())
        seen = min((self.market.max_ts.get(tp.partition, -math.inf) for tp in tps), default=0)
        if seen >= need:
            return float(seen)
        ends = log_ends(tps)
        f = math.inf
        for tp in tps:
            nxt = self.market.next_offset.get(tp.partition)
            if not caught_up(self.market_consumer, tp, nxt, ends):
                f = min(f, self.market.max_ts.get(tp.partition, -math.inf))
        return f
