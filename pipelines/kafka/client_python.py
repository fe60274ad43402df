"""Kafka edges on kafka-python: a :class:`~predictor.ports.Sink`, the consumers, topic setup.

Small on purpose, so another client (confluent-kafka) could stand behind the same shape:

- :class:`KafkaSink` publishes a batch, waits for every acknowledgement (``acks=all``,
  idempotent producer) and raises :class:`~predictor.errors.SinkError` on failure;
- :func:`group_consumer` joins the stream workers' consumer group (manual commits, the
  range assignor so that co-partitioned topics land on the same worker);
- :func:`assigned_consumer` reads given partitions outside any group (market context);
- :func:`ensure_topics` creates the contract topics (``health.v1`` compacted).

Vendor exceptions are translated here: nothing above this module imports ``kafka``.
"""

from __future__ import annotations

import logging
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipelines.kafka.adapter import TP, Fetched, RebalanceHandler
from pipelines.kafka.record_batches import Chunk, Columns, install
from predictor.errors import ConfigError, SinkError, SourceError
from predictor.ports import OutRecord, RawRecord

with warnings.catch_warnings():
    # kafka-python 3.0.12 reads its protocol schemas with a deprecated importlib API.
    warnings.filterwarnings(
        "ignore", message="(read|open)_text is deprecated", category=DeprecationWarning
    )
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.errors import KafkaError

logger = logging.getLogger(__name__)

__all__ = [
    "ConsumerRebalanceListener",
    "KafkaConsumer",
    "KafkaSink",
    "TopicPartition",
    "assigned_consumer",
    "ensure_topics",
    "group_consumer",
    "make_producer",
    "offsets_client",
    "raw_records",
]


def make_producer(bootstrap: str, client_id: str | None = None, **overrides: Any) -> Any:
    """A kafka-python producer with ``acks=all`` and idempotence (bytes in, no serializers)."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "compression_type": None,
        "request_timeout_ms": 30_000,
        "max_request_size": 4 * 1024 * 1024,
        "client_id": client_id or f"precovery-producer-{uuid.uuid4().hex[:6]}",
    }
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except KafkaError as exc:
        raise SinkError(f"cannot connect a producer to {bootstrap}: {exc}") from exc


class KafkaSink:
    """Publishes :class:`~predictor.ports.OutRecord` batches and waits for the broker's acks.

    Parameters
    ----------
    producer
        A ``KafkaProducer`` (see :func:`make_producer`); closed by :meth:`close`.
    flush_timeout_s
        How long :meth:`publish` waits for every acknowledgement.
    """

    def __init__(self, producer: Any, flush_timeout_s: float = 60.0) -> None:
        self.producer = producer
        self.flush_timeout_s = flush_timeout_s
        self.acked = 0

    def publish(self, records: Sequence[OutRecord]) -> None:
        if not records:
            return
        try:
            futures = [
                self.producer.send(
                    r.topic, value=r.value, key=r.key, headers=list(r.headers) or None
                )
                for r in records
            ]
            self.producer.flush(timeout=self.flush_timeout_s)
            for fut in futures:
                # flush() returned: every future is done; get() raises its error, if any.
                fut.get(timeout=self.flush_timeout_s)
        except KafkaError as exc:
            raise SinkError(f"publishing {len(records)} records failed: {exc!r}") from exc
        self.acked += len(records)

    def close(self, timeout_s: float = 10.0) -> None:
        try:
            self.producer.close(timeout=timeout_s)
        except KafkaError as exc:  # closing must not hide the caller's own outcome
            logger.warning("producer close failed: %r", exc)


def group_consumer(
    bootstrap: str,
    group_id: str,
    topics: Sequence[str],
    listener: ConsumerRebalanceListener,
    session_timeout_ms: int = 10_000,
    client_id: str | None = None,
    max_partition_fetch_bytes: int = 4 * 1024 * 1024,
) -> Any:
    """Join ``group_id`` on ``topics`` with manual commits and the range assignor.

    The range assignor gives partition *n* of every subscribed topic to the same member
    when the topics have the same partition count: that is what co-partitions
    positions.v1 with telemetry.v1.

    ``max_partition_fetch_bytes`` is 4 MiB (kafka-python's default is 1 MiB): a partition
    catching up fetches ~7,000 telemetry records a round trip instead of ~1,700, so the
    worker waits less for the broker between batches (the benchmark's raw consumer reads
    with the same setting). Memory: at most 4 MiB buffered per assigned partition.
    """
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            client_id=client_id or f"precovery-stream-{uuid.uuid4().hex[:6]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(500, session_timeout_ms // 6),
            max_poll_interval_ms=300_000,
            request_timeout_ms=max(30_000, session_timeout_ms + 5_000),
            max_partition_fetch_bytes=max_partition_fetch_bytes,
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        # Without metadata at the first join the assignor sees no partitions and hands out
        # nothing (kafka-python does not always rejoin when metadata arrives later).
        for topic in topics:
            partitions_for(consumer, topic)
        consumer.subscribe(topics=list(topics), listener=listener)
    except KafkaError as exc:
        raise SourceError(f"cannot join group {group_id} at {bootstrap}: {exc}") from exc
    return consumer


def assigned_consumer(
    bootstrap: str, topic: str, from_beginning: bool = True, timeout_s: float = 30.0
) -> Any:
    """A group-less consumer assigned every partition of ``topic``."""
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            client_id=f"precovery-context-{uuid.uuid4().hex[:6]}",
        )
        parts = partitions_for(consumer, topic, timeout_s)
        consumer.assign([TopicPartition(topic, p) for p in parts])
        if from_beginning:
            consumer.seek_to_beginning()
    except KafkaError as exc:
        raise SourceError(f"cannot read {topic} at {bootstrap}: {exc}") from exc
    return consumer


def offsets_client(bootstrap: str) -> Any:
    """A consumer that only answers ``end_offsets``: on a consumer that is fetching, the
    request waits behind the long-poll fetch (``fetch_max_wait_ms``, 0.5 s); here it does not.
    """
    try:
        return KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id=f"precovery-offsets-{uuid.uuid4().hex[:6]}",
        )
    except KafkaError as exc:
        raise SourceError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc


def partitions_for(consumer: Any, topic: str, timeout_s: float = 30.0) -> list[int]:
    """Partition numbers of ``topic`` (waits for metadata)."""
    deadline = time.monotonic() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        if time.monotonic() > deadline:
            raise ConfigError(f"topic {topic} does not exist (or has no partitions)")
        time.sleep(0.2)


def raw_records(polled: Mapping[Any, Sequence[Any]]) -> list[RawRecord]:
    """kafka-python ``poll()`` output as :class:`~predictor.ports.RawRecord` s."""
    out: list[RawRecord] = []
    for tp, recs in polled.items():
        for r in recs:
            out.append(RawRecord(tp.topic, r.value, r.key, tp.partition, r.offset, r.timestamp))
    return out


def ensure_topics(
    bootstrap: str,
    names: Mapping[str, str],
    partitions: int = 3,
    context_partitions: int = 1,
    on_created: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Create the contract topics that are missing; return ``{topic: partitions}``.

    ``names`` maps roles (``telemetry``, ``positions``, ``market``, ``recommendations``,
    ``health``, ``dlq``, ``incidents``, ``commands``) to topic names (an empty name is
    skipped). telemetry, positions and the outputs keyed by system get ``partitions``;
    market gets ``context_partitions``; commands one (a single order); ``health`` is
    compacted. Raises :class:`ConfigError` when telemetry and positions
    exist with different partition counts (they must be co-partitioned).
    """
    names = {role: topic for role, topic in names.items() if topic}
    sizes = {
        role: 1 if role == "commands" else context_partitions if role == "market" else partitions
        for role in names
    }
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    except KafkaError as exc:
        raise SourceError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        spec: dict[str, dict[str, Any]] = {}
        for role, topic in names.items():
            if topic in existing:
                continue
            s: dict[str, Any] = {"num_partitions": sizes[role], "replication_factor": -1}
            if role == "health":
                s["configs"] = {"cleanup.policy": "compact"}
            spec[topic] = s
        if spec:
            admin.create_topics(spec, timeout_ms=30_000, wait_for_metadata=True)
            for topic in spec:
                logger.info("created topic %s (%s)", topic, spec[topic])
                if on_created:
                    on_created(topic)
        described = admin.describe_topics(list(names.values()))
    except KafkaError as exc:
        raise SourceError(f"creating topics at {bootstrap} failed: {exc}") from exc
    finally:
        admin.close()
    counts = {d["name"]: len(d["partitions"]) for d in described}
    tele, pos = names.get("telemetry"), names.get("positions")
    if tele and pos and counts.get(tele) != counts.get(pos):
        raise ConfigError(
            f"{tele} has {counts.get(tele)} partitions but {pos} has {counts.get(pos)}: "
            "they must be co-partitioned (same count, keyed by system)"
        )
    return counts


class GuardedListener(ConsumerRebalanceListener):
    """Relays rebalance callbacks to a worker, keeping the worker's own exception."""

    def __init__(self, worker: RebalanceHandler) -> None:
        self.worker = worker

    # kafka-python swallows a callback's exception into a generic KafkaError: keep ours.
    def on_partitions_revoked(self, revoked: list[Any]) -> None:
        self._guard(self.worker.on_revoked, revoked)

    def on_partitions_assigned(self, assigned: list[Any]) -> None:
        self._guard(self.worker.on_assigned, assigned)

    def on_partitions_lost(self, lost: list[Any]) -> None:
        self._guard(self.worker.on_lost, lost)

    def _guard(self, fn: Callable[[list[Any]], None], parts: list[Any]) -> None:
        try:
            fn(parts)
        except Exception as exc:
            self.worker.listener_error = exc
            raise


# -- the adapter (pipelines.kafka.adapter.Consumer) on kafka-python --------------------------
class KafkaPythonConsumer:
    """:class:`~pipelines.kafka.adapter.Consumer` on a kafka-python ``KafkaConsumer``.

    Fetched records are read as columns (:mod:`pipelines.kafka.record_batches`) unless
    ``columnar`` is False or the consumer does not allow it.
    """

    def __init__(self, consumer: Any, columnar: bool = True) -> None:
        self.raw = consumer
        self.columns = Columns()
        self.columnar = columnar and install(consumer, self.columns)

    def poll(self, timeout_s: float, max_records: int) -> list[Fetched]:
        self.columns.clear()
        try:
            polled = self.raw.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            raise SourceError(f"poll failed: {exc!r}") from exc
        out = []
        for tp, recs in polled.items():
            if self.columnar:
                out.append(self._columns(tp, recs))
                continue
            out.append(
                Fetched(
                    tp.topic,
                    tp.partition,
                    [r.value for r in recs],
                    [r.key for r in recs],
                    [r.offset for r in recs],
                    [r.timestamp for r in recs],
                )
            )
        return out

    def _columns(self, tp: Any, offsets: list[int]) -> Fetched:
        """The columns the fetcher's reader set aside for the ``offsets`` it returned."""
        chunks = self.columns.pop(tp.topic, tp.partition)
        c = chunks[0] if len(chunks) == 1 else Chunk.join(chunks)
        if c.offsets != offsets:  # the fetcher returns all it takes: never, unless it changed
            raise SourceError(
                f"{tp.topic}[{tp.partition}]: the columns read ({len(c.offsets)} records) do "
                f"not match the {len(offsets)} offsets kafka-python returned"
            )
        return Fetched(tp.topic, tp.partition, c.values, c.keys, c.offsets, c.timestamps)  # type: ignore[arg-type]

    def pause(self, tps: Sequence[TP]) -> None:
        self.raw.pause(*(TopicPartition(*tp) for tp in tps))

    def resume(self, tps: Sequence[TP]) -> None:
        self.raw.resume(*(TopicPartition(*tp) for tp in tps))

    def seek(self, tp: TP, offset: int) -> None:
        self.raw.seek(TopicPartition(*tp), offset)

    def committed(self, tp: TP) -> int | None:
        try:
            off = self.raw.committed(TopicPartition(*tp))
        except KafkaError as exc:
            raise SourceError(f"committed offset of {tp} unknown: {exc!r}") from exc
        return None if off is None else int(off)

    def beginning_offset(self, tp: TP) -> int:
        try:
            return int(self.raw.beginning_offsets([TopicPartition(*tp)])[TopicPartition(*tp)])
        except KafkaError as exc:
            raise SourceError(f"beginning offset of {tp} unknown: {exc!r}") from exc

    def end_offsets(self, tps: Sequence[TP], timeout_s: float = 5.0) -> dict[TP, int]:
        if not tps:
            return {}
        try:
            got = self.raw.end_offsets(
                [TopicPartition(*tp) for tp in tps], timeout_ms=int(timeout_s * 1000)
            )
        except KafkaError as exc:
            raise SourceError(f"log-end offsets unknown: {exc!r}") from exc
        return {TP(tp.topic, tp.partition): int(off) for tp, off in got.items()}

    def position(self, tp: TP) -> int | None:
        try:
            off = self.raw.position(TopicPartition(*tp), timeout_ms=100)
        except KafkaError:
            return None
        return None if off is None else int(off)

    def commit(self, offsets: Mapping[TP, int]) -> None:
        from kafka.structs import OffsetAndMetadata

        try:
            self.raw.commit(
                offsets={
                    TopicPartition(*tp): OffsetAndMetadata(off, "", -1)
                    for tp, off in offsets.items()
                }
            )
        except KafkaError as exc:
            raise SourceError(f"offset commit failed: {exc!r}") from exc

    def assignment(self) -> list[TP]:
        return [TP(tp.topic, tp.partition) for tp in self.raw.assignment()]

    def partitions_for(self, topic: str, timeout_s: float = 30.0) -> list[int]:
        try:
            return partitions_for(self.raw, topic, timeout_s)
        except KafkaError as exc:
            raise SourceError(f"partitions of {topic} unknown: {exc!r}") from exc

    def close(self, timeout_s: float = 5.0) -> None:
        try:
            self.raw.close(timeout_ms=int(timeout_s * 1000))
        except KafkaError as exc:
            raise SourceError(f"closing the consumer failed: {exc!r}") from exc


def adapted_group_consumer(
    bootstrap: str,
    group_id: str,
    topics: Sequence[str],
    handler: RebalanceHandler,
    session_timeout_ms: int = 10_000,
    client_id: str | None = None,
) -> KafkaPythonConsumer:
    """:func:`group_consumer` behind the adapter, callbacks relayed to ``handler``."""
    return KafkaPythonConsumer(
        group_consumer(
            bootstrap,
            group_id,
            topics,
            GuardedListener(handler),
            session_timeout_ms=session_timeout_ms,
            client_id=client_id,
        )
    )


def adapted_assigned_consumer(bootstrap: str, topic: str) -> KafkaPythonConsumer:
    """:func:`assigned_consumer` (every partition, from the start) behind the adapter."""
    return KafkaPythonConsumer(assigned_consumer(bootstrap, topic))


def adapted_offsets_client(bootstrap: str) -> KafkaPythonConsumer:
    """:func:`offsets_client` behind the adapter."""
    return KafkaPythonConsumer(offsets_client(bootstrap))


def adapted_sink(bootstrap: str, client_id: str | None = None) -> KafkaSink:
    """A :class:`KafkaSink` on a new producer."""
    return KafkaSink(make_producer(bootstrap, client_id=client_id))
