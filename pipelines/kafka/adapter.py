"""One shape for the stream worker's Kafka clients, whichever library stands behind it.

The worker (:mod:`pipelines.kafka.stream`) talks to three consumers — the group member
that reads telemetry and positions, the reader of market.v1, and a client that only asks
for log-end offsets — and to a sink. This module says what it needs of them
(:class:`Consumer`, records handed over as :class:`Fetched` columns, partitions as
:class:`TP`). :mod:`pipelines.kafka.clients` opens them on the library the setting
``PRECOVERY_KAFKA_CLIENT`` names:

- ``kafka-python`` (the pure-Python client the project started on,
  :mod:`pipelines.kafka.client_python`);
- ``confluent`` (confluent-kafka on librdkafka, :mod:`pipelines.kafka.client_confluent`).

Vendor exceptions stop here: every method raises :class:`~predictor.errors.SourceError`
or :class:`~predictor.errors.SinkError`, and only the adapter modules import a library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol


class TP(NamedTuple):
    """A topic partition (equal to kafka-python's ``TopicPartition`` of the same fields)."""

    topic: str
    partition: int


@dataclass(slots=True)
class Fetched:
    """The records of one partition from one poll, as columns (no object per record)."""

    topic: str
    partition: int
    values: list[bytes]
    keys: list[bytes | None]
    offsets: list[int]
    timestamps: list[int | None]

    def __len__(self) -> int:
        return len(self.offsets)


class RebalanceHandler(Protocol):
    """What a group member offers the client's rebalance callbacks."""

    listener_error: Exception | None

    def on_assigned(self, assigned: list[Any]) -> None: ...
    def on_revoked(self, revoked: list[Any]) -> None: ...
    def on_lost(self, lost: list[Any]) -> None: ...


class Consumer(Protocol):
    """The consumer verbs the stream worker uses (offsets are *next* offsets)."""

    def poll(self, timeout_s: float, max_records: int) -> list[Fetched]: ...
    def pause(self, tps: Sequence[TP]) -> None: ...
    def resume(self, tps: Sequence[TP]) -> None: ...
    def seek(self, tp: TP, offset: int) -> None: ...
    def committed(self, tp: TP) -> int | None: ...
    def beginning_offset(self, tp: TP) -> int: ...
    def end_offsets(self, tps: Sequence[TP], timeout_s: float = 5.0) -> dict[TP, int]: ...
    def position(self, tp: TP) -> int | None: ...
    def commit(self, offsets: Mapping[TP, int]) -> None: ...
    def assignment(self) -> list[TP]: ...
    def partitions_for(self, topic: str, timeout_s: float = 30.0) -> list[int]: ...
    def close(self, timeout_s: float = 5.0) -> None: ...
