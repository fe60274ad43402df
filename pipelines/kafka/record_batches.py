"""Fetched Kafka record batches read as columns, on kafka-python: no object per record.

kafka-python turns every fetched record into a ``DefaultRecord`` and then a
``ConsumerRecord`` in pure Python: about 13 µs a record on this machine, most of what a
bare consume costs and about as much as the whole engine spends on the record afterwards
(issue 8, docs/kafka.md "Columnar fetch"). Here one compiled pass
(:func:`scan_records`) walks a record batch (message format v2) and returns the
offsets, timestamps and the positions of keys and values; the values are then cut from
the batch's buffer, one ``bytes`` each (what the decoder needs anyway).

How it plugs in: :func:`install` gives one ``KafkaConsumer``'s fetcher a
``PartitionRecords`` class of its own (the class the fetcher instantiates for each
completed fetch: ``self.PartitionRecords(...)``), so the fetcher, the positions, the
pausing, the rebalances and the metrics stay kafka-python's. Its ``take(n)`` returns the
offsets it took (the fetcher only counts and concatenates them) and appends the columns to
the consumer's :class:`Columns` side channel, which
:class:`~pipelines.kafka.client_python.KafkaPythonConsumer` reads after ``poll`` and
checks against the offsets the fetcher handed back.

Kept as kafka-python does it: CRC checks per batch, control batches skipped, the fetch
offset's leading records skipped, ``LOG_APPEND_TIME`` batches stamped with their max
timestamp, compressed batches decompressed by kafka-python's own codecs, an exception
after some records raised by the next ``take`` (and, unlike kafka-python's reader, by
every ``take`` after it: a bad batch is never skipped). Left to
kafka-python: a record batch the kernel finds malformed (decoded again the slow way, so the
error is kafka-python's own), legacy message formats (v0/v1) and consumers reading with
``isolation_level="read_committed"`` (never installed there). The tests compare both paths
on the same topic (uncompressed and gzip, keys and null values, headers, transactions).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from predictor.jit import kernel

logger = logging.getLogger(__name__)

#: kafka-python's ``DefaultRecordBase.LOG_APPEND_TIME``
_LOG_APPEND_TIME = 1


@kernel
def _varint(buf: np.ndarray, pos: int) -> tuple[Any, int]:
    """A zig-zag varint (Kafka's varint / varlong) at ``pos``: (value, next pos); pos -1 if bad."""
    shift = 0
    raw = np.int64(0)
    n = len(buf)
    while True:
        if pos >= n or shift > 63:
            return 0, -1
        b = np.int64(buf[pos])
        pos += 1
        raw |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    return (raw >> 1) ^ -(raw & 1), pos


@kernel
def scan_records(
    buf: np.ndarray,
    pos: int,
    count: int,
    base_offset: int,
    first_ts: int,
    max_ts: int,
    log_append: bool,
    offsets: np.ndarray,
    stamps: np.ndarray,
    spans: np.ndarray,
) -> int:
    """Read ``count`` records of a v2 batch from ``buf[pos:]`` into the arrays.

    ``spans[i]`` = (key start, key length, value start, value length, record size in
    bytes); a length of -1 is a null. Headers are checked and skipped. Returns 0, or 1
    when the bytes are not ``count`` well-formed records filling the buffer exactly
    (kafka-python's own reader then raises its error).
    """
    for i in range(count):
        length, p = _varint(buf, pos)
        if p < 0:
            return 1
        start = p
        if p >= len(buf):
            return 1
        p += 1  # attributes (int8, unused)
        ts_delta, p = _varint(buf, p)
        if p < 0:
            return 1
        off_delta, p = _varint(buf, p)
        if p < 0:
            return 1
        key_len, p = _varint(buf, p)
        if p < 0:
            return 1
        key_at = p
        if key_len > 0:
            p += key_len
        val_len, p = _varint(buf, p)
        if p < 0:
            return 1
        val_at = p
        if val_len > 0:
            p += val_len
        n_headers, p = _varint(buf, p)
        if p < 0 or n_headers < 0:
            return 1
        for _ in range(n_headers):
            h_key, p = _varint(buf, p)
            if p < 0 or h_key < 0:
                return 1
            p += h_key
            h_val, p = _varint(buf, p)
            if p < 0:
                return 1
            if h_val > 0:
                p += h_val
        if p - start != length or p > len(buf):
            return 1
        offsets[i] = base_offset + off_delta
        stamps[i] = max_ts if log_append else first_ts + ts_delta
        spans[i, 0] = key_at
        spans[i, 1] = key_len if key_len >= 0 else -1
        spans[i, 2] = val_at
        spans[i, 3] = val_len if val_len >= 0 else -1
        spans[i, 4] = length  # kafka-python counts the body (its size_in_bytes)
        pos = p
    return 0 if pos == len(buf) else 1


@dataclass(slots=True)
class Chunk:
    """Records taken from one partition in one ``take``: columns, in offset order."""

    offsets: list[int]
    timestamps: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]

    @staticmethod
    def join(chunks: list[Chunk]) -> Chunk:
        """The chunks one after the other (an empty list gives an empty chunk)."""
        out = Chunk([], [], [], [])
        for c in chunks:
            out.offsets += c.offsets
            out.timestamps += c.timestamps
            out.keys += c.keys
            out.values += c.values
        return out


@dataclass
class Columns:
    """The side channel of one consumer: chunks taken since the last :meth:`pop`."""

    chunks: dict[tuple[str, int], list[Chunk]] = field(default_factory=lambda: defaultdict(list))
    #: records read through the compiled path / the slow path (batches it left alone)
    fast: int = 0
    slow: int = 0

    def clear(self) -> None:
        self.chunks.clear()

    def pop(self, topic: str, partition: int) -> list[Chunk]:
        return self.chunks.pop((topic, partition), [])


def _cut(buf: bytes, at: np.ndarray, ln: np.ndarray) -> list[bytes | None]:
    """``buf[a:a+l]`` for each span (None where ``l`` is -1)."""
    ends = (at + ln).tolist()
    out: list[bytes | None] = [buf[a:e] for a, e in zip(at.tolist(), ends, strict=True)]
    if (ln < 0).any():
        for i in np.flatnonzero(ln < 0).tolist():
            out[i] = None
    return out


def read_batch(batch: Any) -> tuple[Chunk, int] | None:
    """One kafka-python ``DefaultRecordBatch`` (v2, not control) as columns and its records'
    size in bytes (None if the kernel finds it malformed: the caller reads it the slow way,
    for kafka-python's own error)."""
    batch._maybe_uncompress()
    raw = batch._buffer
    pos = batch._pos
    n = batch.records_count
    buf = np.frombuffer(raw, dtype=np.uint8)
    offsets = np.empty(n, np.int64)
    stamps = np.empty(n, np.int64)
    spans = np.empty((n, 5), np.int64)
    err = scan_records(
        buf,
        pos,
        n,
        batch.base_offset,
        batch.first_timestamp,
        batch.max_timestamp,
        batch.timestamp_type == _LOG_APPEND_TIME,
        offsets,
        stamps,
        spans,
    )
    if err:
        return None
    data = bytes(raw)
    return Chunk(
        offsets.tolist(),
        stamps.tolist(),
        _cut(data, spans[:, 0], spans[:, 1]),
        _cut(data, spans[:, 2], spans[:, 3]),
    ), int(spans[:, 4].sum())


def install(consumer: Any, side: Columns) -> bool:
    """Give ``consumer`` (a kafka-python ``KafkaConsumer``) the columnar reader.

    Returns False, and leaves the consumer as it was, where the reader does not apply:
    ``read_committed`` consumers, deserializers configured, or a kafka-python whose fetcher
    does not have the shape this module was written against (logged once).
    """
    try:
        from kafka.consumer.fetcher import Fetcher

        fetcher = consumer._fetcher
        base = Fetcher.PartitionRecords
        committed = consumer.config["isolation_level"] != "read_uncommitted"
        deser = consumer.config["key_deserializer"] or consumer.config["value_deserializer"]
    except (ImportError, AttributeError, KeyError) as exc:
        logger.warning("kafka-python's fetcher is not as expected (%r): per-record reads", exc)
        return False
    if committed or deser:
        return False
    fetcher.PartitionRecords = partition_records_class(side, base)
    warm_up()
    return True


def warm_up() -> None:
    """Load (or compile) :func:`scan_records` now, not inside the first poll that has records."""
    none = np.empty(0, np.int64)
    scan_records(
        np.empty(0, np.uint8), 0, 0, 0, 0, 0, False, none, none, np.empty((0, 5), np.int64)
    )


def partition_records_class(side: Columns, base: type | None = None) -> type:
    """A subclass of kafka-python's ``Fetcher.PartitionRecords`` (or ``base``) that reads
    record batches as columns into ``side``.

    An error reading a batch (a CRC mismatch, say) is raised by every ``take`` from then
    on, after the records before it were handed over: the batch is never skipped, so no
    record is lost silently (the worker's stall watch reconnects; a corrupt batch on the
    broker stays an error until someone looks).
    """
    import kafka.errors as errors

    if base is None:
        from kafka.consumer.fetcher import Fetcher

        base = Fetcher.PartitionRecords
    parent: Any = base

    class ColumnarPartitionRecords(parent):
        def __init__(self, fetch_offset: int, tp: Any, records: Any, **kwargs: Any) -> None:
            super().__init__(fetch_offset, tp, records, **kwargs)
            self._memory = records
            self._chunk: Chunk | None = None
            self._unread_bytes = 0  # of the loaded batch, counted when it is first taken
            self._at = 0
            self._last_batch: Any = None
            self._failed: Exception | None = None

        def _load(self) -> bool:
            """Read the next batch into ``_chunk``; False when none is left."""
            batch = self._memory.next_batch()
            if batch is None:
                last = self._last_batch
                if last is not None and last.magic == 2:
                    self.next_fetch_offset = last.next_offset
                return False
            self._last_batch = batch
            if self.check_crcs and not batch.validate_crc():
                raise errors.CorruptRecordError(
                    f"Record batch for partition {self.topic_partition} at offset "
                    f"{batch.base_offset} failed crc check"
                )
            chunk: Chunk | None = None
            size = 0
            if batch.magic == 2:
                self.leader_epoch = batch.leader_epoch
                if batch.is_control_batch:
                    self.next_fetch_offset = batch.next_offset
                    self._chunk, self._at = Chunk([], [], [], []), 0
                    return True
                got = read_batch(batch)
                if got is not None:
                    chunk, total = got
                    size = total
                    side.fast += len(chunk.offsets)
            if chunk is None:  # legacy format or malformed: kafka-python's own reader
                recs = list(batch)
                chunk = Chunk(
                    [r.offset for r in recs],
                    [r.timestamp for r in recs],
                    [r.key for r in recs],
                    [r.value for r in recs],
                )
                size = sum(r.size_in_bytes for r in recs)
                side.slow += len(recs)
            skip = 0
            while skip < len(chunk.offsets) and chunk.offsets[skip] < self.fetch_offset:
                skip += 1
            if skip:
                chunk = Chunk(
                    chunk.offsets[skip:],
                    chunk.timestamps[skip:],
                    chunk.keys[skip:],
                    chunk.values[skip:],
                )
            self._chunk, self._unread_bytes, self._at = chunk, size, 0
            return True

        def take(self, n: int | None = None) -> list[int]:
            if self._failed is not None:
                raise self._failed
            if self.record_iterator is None:
                return []
            want = n if n is not None else 1 << 62
            parts: list[Chunk] = []
            got = 0
            try:
                while got < want:
                    c = self._chunk
                    if c is None or self._at >= len(c.offsets):
                        if not self._load():
                            self.drain()
                            break
                        continue
                    lo = self._at
                    hi = min(len(c.offsets), lo + want - got)
                    whole = lo == 0 and hi == len(c.offsets)
                    parts.append(
                        c
                        if whole
                        else Chunk(
                            c.offsets[lo:hi], c.timestamps[lo:hi], c.keys[lo:hi], c.values[lo:hi]
                        )
                    )
                    self.bytes_read += self._unread_bytes
                    self._unread_bytes = 0
                    self.records_read += hi - lo
                    self.next_fetch_offset = c.offsets[hi - 1] + 1
                    self._at = hi
                    got += hi - lo
            except Exception as exc:
                self._failed = exc  # raised now, or by the next take if records came first
                if not got:
                    raise
            if not parts:
                return []
            tp = self.topic_partition
            side.chunks[(tp.topic, tp.partition)].extend(parts)
            if len(parts) == 1:
                return parts[0].offsets
            return [o for p in parts for o in p.offsets]

    return ColumnarPartitionRecords
