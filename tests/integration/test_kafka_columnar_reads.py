"""On a real broker, the columnar reader returns what kafka-python's own reader returns.

The topic mixes what a reader meets: batches of many records and of one, gzip batches,
null keys and values, headers, and a transactional producer's aborted and committed
transactions (control batches, which neither reader returns). Both readers go through
the same adapter (:class:`~pipelines.kafka.client_python.KafkaPythonConsumer`), with small
polls (a batch split between ``take`` calls) and after a seek into the middle of a batch.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from kafka import KafkaProducer

from pipelines.kafka.adapter import TP
from pipelines.kafka.client_python import KafkaPythonConsumer, assigned_consumer


def _produce(bootstrap: str, topic: str) -> int:
    """Write the mix to partition 0; return how many records a reader should see."""
    n = 0
    for extra in ({}, {"compression_type": "gzip"}):
        p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, acks="all", **extra)
        for i in range(300):
            key = None if i % 7 == 0 and i % 11 else f"k{i}".encode()
            value = None if i % 11 == 0 else (b"v" * (i * 37 % 500)) + str(i).encode()
            headers = [("h", str(i).encode()), ("empty", b"")] if i % 5 == 0 else []
            p.send(topic, key=key, value=value, headers=headers, partition=0)
            n += 1
        p.flush(timeout=30)
        p.send(topic, value=b"alone", partition=0).get(timeout=30)  # a batch of one
        n += 1
        p.close(timeout=10)
    tx = KafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"test-columns-{uuid.uuid4().hex[:6]}",
        acks="all",
    )
    tx.init_transactions()
    for commit in (False, True):
        tx.begin_transaction()
        for i in range(20):
            tx.send(topic, key=b"tx", value=f"{commit}-{i}".encode(), partition=0)
        tx.flush(timeout=30)  # on the log before the abort marker
        tx.commit_transaction() if commit else tx.abort_transaction()
        n += 20  # read_uncommitted: the aborted records are read too
    tx.close(timeout=10)
    return n


def _read_all(bootstrap: str, topic: str, columnar: bool, max_records: int, start: int = 0) -> Any:
    c = KafkaPythonConsumer(assigned_consumer(bootstrap, topic), columnar=columnar)
    assert c.columnar is columnar
    try:
        c.seek(TP(topic, 0), start)
        end = c.end_offsets([TP(topic, 0)])[TP(topic, 0)]
        rows: list[tuple[Any, ...]] = []
        deadline = time.monotonic() + 60
        while (c.position(TP(topic, 0)) or 0) < end and time.monotonic() < deadline:
            for f in c.poll(0.5, max_records):
                rows.extend(zip(f.offsets, f.timestamps, f.keys, f.values, strict=True))
        return rows, c.columns
    finally:
        c.close()


def test_columnar_reads_equal_kafka_pythons(kafka_bootstrap: str, tmp_topic: Any) -> None:
    topic = tmp_topic(partitions=1, prefix="columns")
    expected = _produce(kafka_bootstrap, topic)
    plain, _ = _read_all(kafka_bootstrap, topic, columnar=False, max_records=5000)
    assert len(plain) == expected
    for max_records in (5000, 7):
        got, columns = _read_all(kafka_bootstrap, topic, columnar=True, max_records=max_records)
        assert got == plain
        assert columns.fast == expected and columns.slow == 0
    middle = plain[len(plain) // 3][0]  # inside a batch: its leading records are skipped
    got, _ = _read_all(kafka_bootstrap, topic, columnar=True, max_records=50, start=middle)
    assert got == [r for r in plain if r[0] >= middle]
