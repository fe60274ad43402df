"""Failover commands on Kafka: an approval taken at the API reaches the engine that
owns the system (commands.v1, docs/kafka.md "Approvals on Kafka").

On a Kafka deployment the engines live in the stream workers, one per telemetry
partition, and ``precovery serve`` (any number of replicas) has none. An approved
failover therefore travels as a record on the commands topic::

    {"kind": "fail_over", "command_id": "<rec id>.approved", "system": "eq-oms",
     "recommendation_id": "...", "epoch": 17, "from_site": "ldn-1", "to_site": "ldn-2",
     "decided_by": "...", "decided_at": "2026-12-03T14:02:11.120Z"}

keyed by system, on a topic of **one partition** (a single order for every command).
Every worker reads the whole topic from the beginning when it connects (commands are
rare: a topic of a few hundred records a year) and keeps it (:class:`CommandLog`). Each
command goes to every partition engine that knows the system (seen, or declared in the
topology) through :meth:`~predictor.engine.Engine.fail_over` with the approved
recommendation's ``epoch``: an engine flips a system's site at most once per epoch, so
reading the topic again after a restart, a rebalance or a rewind changes nothing that
was applied already, and a partition that moves to another worker carries its site in
its checkpoint and is handed the log again by its new owner (the flips it has are
skipped by epoch). The flip applies from the next batch on, in processing time: the
failover happened when a person approved it, not at some event time of the telemetry.

A command that does not parse goes to the dead-letter topic with the reason, like any
bad input; the stream goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from predictor.errors import ValidationError
from predictor.ports import OutRecord, Sink

logger = logging.getLogger(__name__)

KIND = "fail_over"


@dataclass(frozen=True, slots=True)
class Command:
    """One approved failover to carry out."""

    command_id: str
    system: str
    epoch: int
    recommendation_id: str
    from_site: str | None
    to_site: str | None
    decided_by: str
    decided_at: str


def command_for(rec: dict[str, Any], decided_by: str, decided_at: str) -> Command:
    """The command that carries out the approval of recommendation ``rec``."""
    return Command(
        command_id=f"{rec['recommendation_id']}.approved",
        system=str(rec["system"]),
        epoch=int(rec["epoch"]),
        recommendation_id=str(rec["recommendation_id"]),
        from_site=_opt(rec.get("active_site")),
        to_site=_opt(rec.get("failover_site")),
        decided_by=decided_by,
        decided_at=decided_at,
    )


def encode(cmd: Command) -> bytes:
    return orjson.dumps({"kind": KIND, **{k: getattr(cmd, k) for k in Command.__slots__}})


def parse_command(obj: Any) -> Command:
    """A :class:`Command` from a decoded commands.v1 record; ValidationError naming the
    field otherwise.

    >>> parse_command({"kind": "fail_over", "command_id": "r1.approved", "system": "s",
    ...                "epoch": 3, "recommendation_id": "r1", "decided_by": "ann",
    ...                "decided_at": "2026-12-03T14:02:11Z"}).epoch
    3
    >>> try:
    ...     parse_command({"kind": "fail_over", "system": "s", "epoch": "x"})
    ... except ValidationError as exc:
    ...     print(exc.reason, exc.detail)
    bad_field commands.v1 field 'epoch' must be a positive integer, got 'x'
    """
    if not isinstance(obj, dict):
        raise ValidationError("invalid", f"commands.v1 record must be an object, got {obj!r}")
    if obj.get("kind") != KIND:
        raise ValidationError(
            "bad_field", f"commands.v1 field 'kind' must be {KIND!r}, got {obj.get('kind')!r}"
        )
    epoch = obj.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise ValidationError(
            "bad_field", f"commands.v1 field 'epoch' must be a positive integer, got {epoch!r}"
        )
    out: dict[str, Any] = {"epoch": epoch}
    for name in ("command_id", "system", "recommendation_id", "decided_by", "decided_at"):
        v = obj.get(name)
        if not isinstance(v, str) or not v:
            raise ValidationError(
                "bad_field", f"commands.v1 field {name!r} must be a non-empty string, got {v!r}"
            )
        out[name] = v
    return Command(**out, from_site=_opt(obj.get("from_site")), to_site=_opt(obj.get("to_site")))


def decode(raw: bytes) -> Command:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError("invalid_json", f"commands.v1 record is not JSON: {exc}") from exc
    return parse_command(obj)


def _opt(v: Any) -> str | None:
    return None if v is None else str(v)


class CommandLog:
    """The commands read so far, in topic order (bounded: the oldest go first)."""

    def __init__(self, max_commands: int = 100_000) -> None:
        self.commands: list[Command] = []
        self.max_commands = max_commands

    def add(self, cmd: Command) -> None:
        self.commands.append(cmd)
        if len(self.commands) > self.max_commands:
            del self.commands[: len(self.commands) - self.max_commands]

    def __len__(self) -> int:
        return len(self.commands)


def apply_commands(engine: Any, commands: Iterable[Command]) -> list[Command]:
    """Carry ``commands`` out on ``engine`` where it knows the system; returns those that
    flipped a site now (the others were applied before, by epoch, or are not its)."""
    done = []
    for cmd in commands:
        if not engine.knows_system(cmd.system):
            continue
        if engine.failover_epoch(cmd.system) >= cmd.epoch:
            continue
        site = engine.fail_over(cmd.system, epoch=cmd.epoch)
        logger.info(
            "%s: %s failed over to %s (epoch %d, by %s)",
            cmd.command_id,
            cmd.system,
            site,
            cmd.epoch,
            cmd.decided_by,
        )
        done.append(cmd)
    return done


class CommandPublisher:
    """What ``precovery serve`` hands :class:`~pipelines.records.approvals.Approvals`: an
    approved failover becomes a commands.v1 record, and the decision record goes to the
    recommendations topic (to the orchestrator through the deliverer, and to every
    replica's log). Both wait for the broker's acknowledgement: a person is told "done"
    only when the command is durable; a broker that does not acknowledge fails the
    request (``SinkError``, 502) and nothing is audited.
    """

    def __init__(self, sink: Sink, commands_topic: str, recommendations_topic: str) -> None:
        self.sink = sink
        self.commands_topic = commands_topic
        self.recommendations_topic = recommendations_topic
        self.sent = 0

    def fail_over(self, rec: dict[str, Any], decided_by: str = "", decided_at: str = "") -> str:
        cmd = command_for(rec, decided_by or "api", decided_at or "")
        self.sink.publish([OutRecord(self.commands_topic, encode(cmd), cmd.system.encode())])
        self.sent += 1
        return cmd.to_site or str(rec.get("active_site") or "")

    def close(self) -> None:
        close = getattr(self.sink, "close", None)
        if close is not None:
            close()

    def forward(self, records: Sequence[dict[str, Any]]) -> None:
        self.sink.publish(
            [
                OutRecord(self.recommendations_topic, orjson.dumps(r), str(r["system"]).encode())
                for r in records
            ]
        )
