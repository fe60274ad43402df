"""The edges of the core, as small protocols with one or two verbs.

``pipelines`` implements them (in memory for the embedded default and the tests, on
Kafka and HTTP in production). The core never imports an implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One message as it arrived: bytes plus where it came from."""

    topic: str
    value: bytes
    key: bytes | None = None
    partition: int = 0
    offset: int = -1
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One message to publish."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = field(default=())


class Source(Protocol):
    """A partitioned input that yields micro-batches of raw records."""

    def poll(self, max_records: int, timeout_s: float) -> Sequence[RawRecord]:
        """Return up to ``max_records`` records, waiting at most ``timeout_s``."""
        ...

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Mark ``(topic, partition) -> next offset`` as processed."""
        ...


class Sink(Protocol):
    """An output that acknowledges what it was given."""

    def publish(self, records: Sequence[OutRecord]) -> None:
        """Publish and block until every record is acknowledged; raise ``SinkError``."""
        ...
