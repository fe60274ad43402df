"""The columnar reader of Kafka record batches equals kafka-python's own reader.

Batches are built with kafka-python's ``DefaultRecordBatchBuilder`` (the producer's code),
so no broker is needed here; tests/integration/test_kafka_columnar_reads.py reads a real topic
both ways.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="(read|open)_text is deprecated", category=DeprecationWarning
    )
    from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from pipelines.kafka.record_batches import (
    Chunk,
    Columns,
    partition_records_class,
    read_batch,
    scan_records,
)

_NONE, _GZIP = 0, 1

record = st.tuples(
    st.integers(min_value=0, max_value=10**7),  # timestamp delta (ms)
    st.one_of(st.none(), st.binary(max_size=300)),  # key
    st.one_of(st.none(), st.binary(max_size=3000)),  # value
    st.lists(
        st.tuples(st.text(max_size=20), st.one_of(st.none(), st.binary(max_size=40))), max_size=3
    ),  # headers
)


def _build(
    records: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
    base_offset: int = 0,
    codec: int = _NONE,
    log_append: bool = False,
) -> bytes:
    b = DefaultRecordBatchBuilder(2, codec, False, -1, -1, -1, 1 << 30)
    t0 = 1_700_000_000_000
    for i, (dt, key, value, headers) in enumerate(records):
        b.append(i, timestamp=t0 + dt, key=key, value=value, headers=headers)
    buf = bytearray(b.build())
    buf[0:8] = base_offset.to_bytes(8, "big", signed=True)
    if log_append:  # the broker sets the timestamp type bit and the max timestamp
        attrs = int.from_bytes(buf[21:23], "big") | 0x08
        buf[21:23] = attrs.to_bytes(2, "big")
    return bytes(buf)


def _kafka_python(
    raw: bytes,
) -> tuple[list[int], list[int], list[bytes | None], list[bytes | None]]:
    recs = list(DefaultRecordBatch(raw))
    return (
        [r.offset for r in recs],
        [r.timestamp for r in recs],
        [r.key for r in recs],
        [r.value for r in recs],
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(record, min_size=1, max_size=40),
    st.integers(min_value=0, max_value=2**40),
    st.sampled_from([_NONE, _GZIP]),
    st.booleans(),
)
def test_columns_equal_kafka_pythons_records(
    records: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
    base: int,
    codec: int,
    log_append: bool,
) -> None:
    raw = _build(records, base, codec, log_append)
    got = read_batch(DefaultRecordBatch(raw))
    assert got is not None
    chunk, size = got
    assert (chunk.offsets, chunk.timestamps, chunk.keys, chunk.values) == _kafka_python(raw)
    assert size == sum(r.size_in_bytes for r in DefaultRecordBatch(raw))
    assert all(type(v) is bytes for v in chunk.values if v is not None)


def test_malformed_batches_are_left_to_kafka_python() -> None:
    """Truncated or padded record bytes: the kernel says so (1) and reads nothing past."""
    raw = _build([(0, b"k", b"v" * 200, [("h", b"x")]), (5, None, b"w", [])])
    batch = DefaultRecordBatch(raw)
    batch._maybe_uncompress()
    good = np.frombuffer(batch._buffer, np.uint8)
    pos = batch._pos

    def scan(buf: np.ndarray, count: int = 2) -> int:
        out = np.empty(count, np.int64), np.empty(count, np.int64), np.empty((count, 5), np.int64)
        return int(scan_records(buf, pos, count, 0, 0, 0, False, *out))

    assert scan(good) == 0
    assert scan(good[:-1]) == 1  # a record cut short
    assert scan(np.concatenate([good, np.zeros(3, np.uint8)])) == 1  # bytes left over
    assert scan(good, 3) == 1  # fewer records than the header counts
    bad = good.copy()
    bad[pos] = 0xFF  # a length varint that never ends within the record
    bad[pos + 1 : pos + 11] = 0xFF
    assert scan(bad) == 1


@pytest.mark.parametrize("codec", [_NONE, _GZIP])
def test_large_values_and_empty_ones(codec: int) -> None:
    values = [b"", b"x" * 70_000, None, b"{}"]
    raw = _build([(i, None, v, []) for i, v in enumerate(values)], 41, codec)
    got = read_batch(DefaultRecordBatch(raw))
    assert got is not None
    assert got[0].values == values
    assert got[0].offsets == [41, 42, 43, 44]


def _partition_records(raw: bytes, fetch_offset: int = 0) -> Any:
    from kafka.record import MemoryRecords
    from kafka.structs import TopicPartition

    side = Columns()
    cls = partition_records_class(side)
    return cls(fetch_offset, TopicPartition("t", 0), MemoryRecords(raw)), side


def test_take_hands_over_columns_and_splits_batches() -> None:
    a = _build([(i, None, f"a{i}".encode(), []) for i in range(5)], 10)
    b = _build([(i, b"k", f"b{i}".encode(), []) for i in range(4)], 15)
    part, side = _partition_records(a + b, fetch_offset=12)  # inside the first batch
    assert part.take(2) == [12, 13]
    assert part.take(None) == [14, 15, 16, 17, 18]
    assert part.take(5) == []  # the batches are spent: drained, position after the last
    assert not part and part.next_fetch_offset == 19
    chunks = side.pop("t", 0)
    got = Chunk.join(chunks)
    assert got.offsets == [12, 13, 14, 15, 16, 17, 18]
    assert got.values == [b"a2", b"a3", b"a4", b"b0", b"b1", b"b2", b"b3"]
    assert got.keys == [None, None, None, b"k", b"k", b"k", b"k"]
    assert side.fast == 9 and side.slow == 0


def test_a_corrupt_batch_is_never_skipped() -> None:
    """A CRC mismatch: the records before it come out, then every take raises."""
    from kafka.errors import CorruptRecordError

    good = _build([(0, None, b"x", [])] * 3, 0)
    bad = bytearray(_build([(0, None, b"y", [])] * 3, 3))
    bad[-1] ^= 0xFF  # the last value byte: the CRC no longer matches
    after = _build([(0, None, b"z", [])] * 3, 6)
    part, _ = _partition_records(good + bytes(bad) + after)
    assert part.take(None) == [0, 1, 2]
    for _ in range(3):
        with pytest.raises(CorruptRecordError):
            part.take(None)
    assert part.next_fetch_offset == 3
