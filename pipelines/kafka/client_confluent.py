"""The stream worker's Kafka clients on confluent-kafka (librdkafka).

Same verbs as the kafka-python adapter in :mod:`pipelines.kafka.client_python`
(:class:`~pipelines.kafka.adapter.Consumer`, a :class:`~predictor.ports.Sink`) and the
same settings where both clients have them: manual commits, the range assignor (so that
co-partitioned telemetry.v1 and positions.v1 land on one worker), ``earliest`` reset,
``acks=all`` and idempotence on the producer. Records come out of ``consume()`` in one
call per poll; librdkafka fetches, decompresses and parses in C on threads of its own.

Vendor exceptions are translated here (``KafkaException`` → ``SourceError`` /
``SinkError``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as CTP

from pipelines.kafka.adapter import TP, Fetched, RebalanceHandler
from predictor.errors import ConfigError, SinkError, SourceError
from predictor.ports import OutRecord

logger = logging.getLogger(__name__)

_NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: no committed offset


def _retrying(call: Callable[[float], Any], what: str, timeout_s: float = 30.0) -> Any:
    """``call(seconds left)``, again while it fails with a retriable error (a leader not
    elected yet on a new topic, a broker coming back), until ``timeout_s``: kafka-python
    retries these inside the client, librdkafka hands them to the caller."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            return call(max(0.1, left))
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            retriable = isinstance(err, KafkaError) and (
                err.retriable()
                or err.code()
                in (
                    KafkaError.NOT_LEADER_FOR_PARTITION,
                    KafkaError.LEADER_NOT_AVAILABLE,
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                    KafkaError._TRANSPORT,
                    KafkaError._TIMED_OUT,
                )
            )
            if not retriable or time.monotonic() >= deadline:
                raise SourceError(f"{what}: {exc}") from exc
            time.sleep(0.2)


def _base(bootstrap: str, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        # librdkafka logs through its own thread to stderr by default: quieter, and errors
        # that matter surface as exceptions from the calls below.
        "log_level": 3,
    }


class ConfluentConsumer:
    """:class:`~pipelines.kafka.adapter.Consumer` on a confluent-kafka ``Consumer``."""

    def __init__(self, consumer: Any, from_beginning: bool = False) -> None:
        self.raw = consumer
        self._closed = False
        #: assigned from the log start: before any record, the position is the log start
        self.from_beginning = from_beginning
        #: start offsets set by re-assignment since the last poll (see :meth:`seek`)
        self._starts: dict[tuple[str, int], int] = {}

    def poll(self, timeout_s: float, max_records: int) -> list[Fetched]:
        self._starts.clear()
        # What is queued, without waiting; else wait for one record, then take what came
        # with it. ``consume(n, timeout)`` itself waits for n records or the timeout (and
        # measured, well past a 50 ms timeout): at a paced input that is seconds of latency.
        try:
            msgs = self.raw.consume(num_messages=max_records, timeout=0)
            if not msgs and timeout_s > 0:
                first = self.raw.poll(timeout_s)
                if first is not None:
                    msgs = [first]
                    if max_records > 1:
                        msgs.extend(self.raw.consume(num_messages=max_records - 1, timeout=0))
        except KafkaException as exc:
            raise SourceError(f"poll failed: {exc}") from exc
        by_tp: dict[tuple[str, int], Fetched] = {}
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if not err.retriable() and err.fatal():
                    raise SourceError(f"consumer error: {err}")
                logger.debug("consumer error (retried by librdkafka): %s", err)
                continue
            key = (m.topic(), m.partition())
            f = by_tp.get(key)
            if f is None:
                f = by_tp[key] = Fetched(key[0], key[1], [], [], [], [])
            f.values.append(m.value())
            f.keys.append(m.key())
            f.offsets.append(m.offset())
            kind, ts = m.timestamp()
            f.timestamps.append(ts if kind else None)
        return list(by_tp.values())

    def pause(self, tps: Sequence[TP]) -> None:
        self.raw.pause([CTP(t, p) for t, p in tps])

    def resume(self, tps: Sequence[TP]) -> None:
        self.raw.resume([CTP(t, p) for t, p in tps])

    def seek(self, tp: TP, offset: int) -> None:
        """Move ``tp`` to ``offset``.

        librdkafka refuses a seek on a partition that was just assigned and is not being
        fetched yet (``_STATE``, "Erroneous state"): that one is assigned again with the
        offset as its start, with every other partition kept at its position (or at the
        start another seek since the last poll gave it).
        """
        try:
            self.raw.seek(CTP(tp.topic, tp.partition, offset))
            return
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError) and err.code() == KafkaError._STATE):
                raise SourceError(f"seek of {tp} to {offset} failed: {exc}") from exc
        self._starts[(tp.topic, tp.partition)] = offset
        try:
            current = self.raw.position(self.raw.assignment())
            self.raw.assign(
                [
                    CTP(c.topic, c.partition, self._starts.get((c.topic, c.partition), c.offset))
                    for c in current
                ]
            )
        except KafkaException as exc:
            raise SourceError(f"seek of {tp} to {offset} (by assignment) failed: {exc}") from exc

    def committed(self, tp: TP) -> int | None:
        got = _retrying(
            lambda left: self.raw.committed([CTP(tp.topic, tp.partition)], timeout=left),
            f"committed offset of {tp} unknown",
        )
        off = got[0].offset if got else _NO_OFFSET
        return None if off < 0 else int(off)

    def beginning_offset(self, tp: TP) -> int:
        low, _ = _retrying(
            lambda left: self.raw.get_watermark_offsets(
                CTP(tp.topic, tp.partition), timeout=left, cached=False
            ),
            f"beginning offset of {tp} unknown",
        )
        return int(low)

    def end_offsets(self, tps: Sequence[TP], timeout_s: float = 5.0) -> dict[TP, int]:
        out = {}
        deadline = time.monotonic() + timeout_s
        for tp in tps:
            ctp = CTP(tp.topic, tp.partition)

            def ask(left: float, ctp: Any = ctp) -> Any:
                return self.raw.get_watermark_offsets(ctp, timeout=left, cached=False)

            _, high = _retrying(
                ask, f"log-end offset of {tp} unknown", max(0.1, deadline - time.monotonic())
            )
            out[TP(tp.topic, tp.partition)] = int(high)
        return out

    def position(self, tp: TP) -> int | None:
        """The next offset to read; before the first record librdkafka knows none (as
        kafka-python does): for a reader from the log start that is the log start."""
        try:
            got = self.raw.position([CTP(tp.topic, tp.partition)])
        except KafkaException:
            return None
        off = got[0].offset if got else _NO_OFFSET
        if off < 0 and self.from_beginning:
            try:
                return self.beginning_offset(tp)
            except SourceError:
                return None
        return None if off < 0 else int(off)

    def commit(self, offsets: Mapping[TP, int]) -> None:
        try:
            self.raw.commit(
                offsets=[CTP(t, p, off) for (t, p), off in offsets.items()], asynchronous=False
            )
        except KafkaException as exc:
            raise SourceError(f"offset commit failed: {exc}") from exc

    def assignment(self) -> list[TP]:
        return [TP(tp.topic, tp.partition) for tp in self.raw.assignment()]

    def partitions_for(self, topic: str, timeout_s: float = 30.0) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                md = self.raw.list_topics(topic, timeout=max(0.5, deadline - time.monotonic()))
                t = md.topics.get(topic)
                if t is not None and t.error is None and t.partitions:
                    return sorted(t.partitions)
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise SourceError(f"partitions of {topic} unknown: {exc}") from exc
            if time.monotonic() > deadline:
                raise ConfigError(f"topic {topic} does not exist (or has no partitions)")
            time.sleep(0.2)

    def close(self, timeout_s: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.raw.close()
        except (KafkaException, RuntimeError) as exc:
            raise SourceError(f"closing the consumer failed: {exc}") from exc


def _tps(parts: Sequence[Any]) -> list[TP]:
    return [TP(p.topic, p.partition) for p in parts]


def adapted_group_consumer(
    bootstrap: str,
    group_id: str,
    topics: Sequence[str],
    handler: RebalanceHandler,
    session_timeout_ms: int = 10_000,
    client_id: str | None = None,
) -> ConfluentConsumer:
    """Join ``group_id`` on ``topics``: manual commits, the range assignor, eager rebalance.

    The handler's callbacks run inside ``poll`` (librdkafka's rebalance callback); the
    partitions are assigned right after ``on_assigned`` returns, and the worker seeks
    them to their checkpoints after that poll, as with kafka-python.
    """
    config = {
        **_base(bootstrap, client_id or f"precovery-stream-{uuid.uuid4().hex[:6]}"),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(500, session_timeout_ms // 6),
        "max.poll.interval.ms": 300_000,
        "partition.assignment.strategy": "range",
        "fetch.wait.max.ms": 100,
        "queued.max.messages.kbytes": 16 * 1024,
    }

    def guard(fn: Any, parts: list[Any]) -> None:
        try:
            fn(_tps(parts))
        except Exception as exc:
            handler.listener_error = exc
            raise

    def on_assign(consumer: Any, parts: list[Any]) -> None:
        guard(handler.on_assigned, parts)
        consumer.assign(parts)

    def on_revoke(consumer: Any, parts: list[Any]) -> None:
        guard(handler.on_revoked, parts)

    def on_lost(consumer: Any, parts: list[Any]) -> None:
        guard(handler.on_lost, parts)

    try:
        consumer = Consumer(config)
        adapted = ConfluentConsumer(consumer)
        for topic in topics:  # the first join must see every partition (as kafka-python)
            adapted.partitions_for(topic)
        consumer.subscribe(list(topics), on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    except KafkaException as exc:
        raise SourceError(f"cannot join group {group_id} at {bootstrap}: {exc}") from exc
    return adapted


def adapted_assigned_consumer(bootstrap: str, topic: str) -> ConfluentConsumer:
    """Every partition of ``topic`` from the beginning, outside any group."""
    config = {
        **_base(bootstrap, f"precovery-context-{uuid.uuid4().hex[:6]}"),
        "group.id": f"precovery-context-{uuid.uuid4().hex[:6]}",  # required; never joined
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    }
    try:
        consumer = ConfluentConsumer(Consumer(config), from_beginning=True)
        parts = consumer.partitions_for(topic)
        consumer.raw.assign([CTP(topic, p, OFFSET_BEGINNING) for p in parts])
    except KafkaException as exc:
        raise SourceError(f"cannot read {topic} at {bootstrap}: {exc}") from exc
    return consumer


def adapted_offsets_client(bootstrap: str) -> ConfluentConsumer:
    """A consumer that only answers log-end offsets and partition counts."""
    config = {
        **_base(bootstrap, f"precovery-offsets-{uuid.uuid4().hex[:6]}"),
        "group.id": f"precovery-offsets-{uuid.uuid4().hex[:6]}",  # required; never joined
        "enable.auto.commit": False,
    }
    try:
        return ConfluentConsumer(Consumer(config))
    except KafkaException as exc:
        raise SourceError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc


class ConfluentSink:
    """Publishes :class:`~predictor.ports.OutRecord` batches, waits for every ack.

    ``acks=all`` with the idempotent producer; a delivery error of any record raises
    :class:`~predictor.errors.SinkError` once the batch is flushed.
    """

    def __init__(self, producer: Any, flush_timeout_s: float = 60.0) -> None:
        self.producer = producer
        self.flush_timeout_s = flush_timeout_s
        self.acked = 0

    def publish(self, records: Sequence[OutRecord]) -> None:
        if not records:
            return
        errors: list[str] = []

        def done(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        produce = self.producer.produce
        try:
            for r in records:
                while True:
                    try:
                        produce(
                            r.topic,
                            r.value,
                            r.key,
                            headers=list(r.headers) or None,
                            on_delivery=done,
                        )
                        break
                    except BufferError:  # local queue full: let deliveries drain
                        self.producer.poll(0.05)
            left = self.producer.flush(self.flush_timeout_s)
        except KafkaException as exc:
            raise SinkError(f"publishing {len(records)} records failed: {exc}") from exc
        if left:
            raise SinkError(f"publishing {len(records)} records: {left} not acknowledged in time")
        if errors:
            raise SinkError(f"publishing {len(records)} records failed: {errors[0]}")
        self.acked += len(records)

    def close(self, timeout_s: float = 10.0) -> None:
        left = self.producer.flush(timeout_s)
        if left:
            logger.warning("producer closed with %d records not acknowledged", left)


def adapted_sink(bootstrap: str, client_id: str | None = None) -> ConfluentSink:
    """A :class:`ConfluentSink` on a new idempotent producer."""
    config = {
        **_base(bootstrap, client_id or f"precovery-producer-{uuid.uuid4().hex[:6]}"),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.size": 256 * 1024,
        "message.max.bytes": 4 * 1024 * 1024,
        "request.timeout.ms": 30_000,
    }
    try:
        return ConfluentSink(Producer(config))
    except KafkaException as exc:
        raise SinkError(f"cannot connect a producer to {bootstrap}: {exc}") from exc
