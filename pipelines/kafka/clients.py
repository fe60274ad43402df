"""Which Kafka library the worker's clients are opened on (``PRECOVERY_KAFKA_CLIENT``).

:data:`DEFAULT_CLIENT` is the one ``benchmarks/bench_kafka.py`` measured faster end to end
(figures in docs/kafka.md). Each library's module is imported only when it is chosen, and
both implement the shapes of :mod:`pipelines.kafka.adapter`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from pipelines.kafka.adapter import Consumer
from predictor.errors import ConfigError
from predictor.ports import Sink

CLIENTS = ("confluent", "kafka-python")
DEFAULT_CLIENT = "kafka-python"


@dataclass(frozen=True)
class KafkaClient:
    """The factories of one library: what the worker opens its clients with."""

    name: str
    group_consumer: Callable[..., Consumer]
    assigned_consumer: Callable[..., Consumer]
    offsets_client: Callable[[str], Consumer]
    sink: Callable[..., Sink]


def client_name(name: str | None = None) -> str:
    """``name``, else ``PRECOVERY_KAFKA_CLIENT``, else the default; checked."""
    chosen = (name or os.environ.get("PRECOVERY_KAFKA_CLIENT") or DEFAULT_CLIENT).strip()
    if chosen not in CLIENTS:
        raise ConfigError(f"PRECOVERY_KAFKA_CLIENT={chosen!r} is not one of {', '.join(CLIENTS)}")
    return chosen


def kafka_client(name: str | None = None) -> KafkaClient:
    """The adapter of ``name`` (see :func:`client_name`), imported only when asked for."""
    chosen = client_name(name)
    if chosen == "confluent":
        from pipelines.kafka import client_confluent as lib
    else:
        from pipelines.kafka import client_python as lib  # type: ignore[no-redef]
    return KafkaClient(
        chosen,
        lib.adapted_group_consumer,
        lib.adapted_assigned_consumer,
        lib.adapted_offsets_client,
        lib.adapted_sink,
    )
