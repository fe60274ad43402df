"""The local Apache Kafka broker (scripts/kafka) behaves like Kafka: no mocks.

Run with a broker: ``scripts/kafka start``, then
``KAFKA_BOOTSTRAP_SERVERS=... pytest tests/integration`` (./scripts/test does both).
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.partitioner.default import murmur2

SESSION_TIMEOUT_MS = 6_000  # the broker's group.min.session.timeout.ms default


def _producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        request_timeout_ms=30_000,
        client_id=f"precovery-test-producer-{uuid.uuid4().hex[:6]}",
    )


def _produce(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]
) -> dict[bytes, set[int]]:
    """Send (key, value) pairs with acks=all; return the partitions each key landed in."""
    partitions_by_key: dict[bytes, set[int]] = defaultdict(set)
    producer = _producer(bootstrap)
    try:
        futures = [(key, producer.send(topic, key=key, value=value)) for key, value in records]
        producer.flush(timeout=30)
        for key, future in futures:
            metadata = future.get(timeout=30)
            partitions_by_key[key].add(metadata.partition)
    finally:
        producer.close(timeout=10)
    return partitions_by_key


def _consumer(bootstrap: str, group_id: str | None, *topics: str) -> KafkaConsumer:
    return KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=1_000,
        request_timeout_ms=30_000,
        client_id=f"precovery-test-consumer-{uuid.uuid4().hex[:6]}",
    )


def _consume(consumer: KafkaConsumer, expected: int, timeout_s: float = 30.0) -> list:
    """Poll until ``expected`` records arrived (or the deadline passes)."""
    records: list = []
    deadline = time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=500, max_records=expected - len(records))
        for part_records in batch.values():
            records.extend(part_records)
    return records


def _expected_partition(key: bytes, partitions: int) -> int:
    # Java client's default partitioner for keyed records: murmur2(key) & 0x7fffffff % n.
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_keyed_messages_round_trip_through_a_consumer_group(
    kafka_bootstrap: str, tmp_topic
) -> None:
    topic = tmp_topic(partitions=3, prefix="keyed")
    n_keys, per_key = 20, 10
    records = [
        (f"host-{k:03d}".encode(), f"event-{k}-{i}".encode())
        for i in range(per_key)
        for k in range(n_keys)
    ]

    partitions_by_key = _produce(kafka_bootstrap, topic, records)

    # Every key went to exactly one partition, the one Kafka's default partitioner picks.
    assert len(partitions_by_key) == n_keys
    for key, parts in partitions_by_key.items():
        assert parts == {_expected_partition(key, 3)}, key
    assert len({p for parts in partitions_by_key.values() for p in parts}) > 1

    consumer = _consumer(kafka_bootstrap, f"test-group-{uuid.uuid4().hex[:8]}", topic)
    try:
        got = _consume(consumer, expected=len(records))
        assert {tp.partition for tp in consumer.assignment()} == {0, 1, 2}
        consumer.commit()
        committed = {p: consumer.committed(TopicPartition(topic, p)) for p in range(3)}
    finally:
        consumer.close()

    assert len(got) == len(records)
    assert sorted((r.key, r.value) for r in got) == sorted(records)
    per_partition: dict[int, int] = defaultdict(int)
    for r in got:
        assert r.topic == topic
        assert r.partition == _expected_partition(r.key, 3)
        per_partition[r.partition] += 1
    # Within a key, order is kept (one partition, offsets increase).
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for r in sorted(got, key=lambda r: (r.partition, r.offset)):
        by_key[r.key].append(r.value)
    for k in range(n_keys):
        key = f"host-{k:03d}".encode()
        assert by_key[key] == [f"event-{k}-{i}".encode() for i in range(per_key)]
    # Committed offsets are "last processed + 1" = the partition's record count.
    assert committed == {p: per_partition.get(p, 0) for p in range(3)}


def test_compacted_topic_config_is_set(kafka_admin: KafkaAdminClient, tmp_topic) -> None:
    topic = tmp_topic(
        partitions=1,
        configs={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"},
        prefix="compact",
    )
    result = kafka_admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": None})]
    )
    configs = result["topic"][topic]
    value = configs["cleanup.policy"]
    value = value.get("value") if isinstance(value, dict) else value
    assert value == "compact", configs


def test_data_survives_broker_restart_on_same_address(
    kafka_bootstrap: str, tmp_topic, kafka_broker_control
) -> None:
    topic = tmp_topic(partitions=3, prefix="restart")
    group = f"test-restart-group-{uuid.uuid4().hex[:8]}"
    records = [(f"k{i % 7}".encode(), f"before-restart-{i}".encode()) for i in range(60)]
    _produce(kafka_bootstrap, topic, records)

    # Consume and commit part of the data in a group before the restart.
    consumer = _consumer(kafka_bootstrap, group, topic)
    try:
        first = _consume(consumer, expected=len(records))
        assert len(first) == len(records)
        consumer.commit()
    finally:
        consumer.close()

    t0 = time.monotonic()
    kafka_broker_control.stop_keep_data()
    assert kafka_broker_control.start() == kafka_bootstrap
    restart_s = time.monotonic() - t0
    assert restart_s < 90, restart_s

    # Everything written before the restart is still there, on the same address.
    reader = _consumer(kafka_bootstrap, None)
    try:
        reader.assign([TopicPartition(topic, p) for p in range(3)])
        reader.seek_to_beginning()
        again = _consume(reader, expected=len(records), timeout_s=45)
    finally:
        reader.close()
    assert sorted((r.key, r.value) for r in again) == sorted(records)

    # The group's committed offsets survived too: new writes are all it sees.
    later = [(b"k-after", f"after-restart-{i}".encode()) for i in range(5)]
    _produce(kafka_bootstrap, topic, later)
    consumer = _consumer(kafka_bootstrap, group, topic)
    try:
        rest = _consume(consumer, expected=len(later), timeout_s=45)
        # Give a stray re-delivery a moment to show up.
        rest.extend(_consume(consumer, expected=1, timeout_s=1.0))
    finally:
        consumer.close()
    assert sorted(r.value for r in rest) == sorted(v for _, v in later)
