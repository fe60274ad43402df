"""The one path from input records to output records, for every mode.

:class:`Driver` takes raw records (telemetry.v1, positions.v1, market.v1 — from memory,
files or Kafka, whatever the :class:`~predictor.ports.Source`) and returns the records to
publish (recommendations.v1, health.v1, telemetry.dlq.v1):

1. context records are decoded (any exception → a dead letter with its reason) and handed
   to the engine, which applies each at the first tick at or after its event time;
2. telemetry is decoded a micro-batch at a time and run through the engine, a record
   that makes the engine raise isolated as ``poison`` (:func:`process_isolating`);
3. each recommendation becomes a record keyed by system with an ``idempotency-key``
   header, health snapshots follow each tick, rejects become dead letters.

The embedded stream (:class:`pipelines.embedded.stream.StreamWorker`), each Kafka partition
(:class:`pipelines.kafka.partition.PartitionTask`), ``precovery replay`` and the backtest run
this same code, so the same input decides the same way in each (tested).

A dead letter keeps the original bytes as its value and says where it came from and why
in headers: ``dlq.source.topic``, ``dlq.source.partition``, ``dlq.source.offset``,
``dlq.reason``, ``dlq.detail``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import orjson

from predictor import contracts
from predictor.engine import Engine, StepResult
from predictor.errors import PrecoveryError, ValidationError
from predictor.events import (
    MarketState,
    Position,
    Reject,
    TelemetryBatch,
    decode_record,
    decode_telemetry,
    parse_market,
    parse_position,
)
from predictor.ports import OutRecord, RawRecord

logger = logging.getLogger(__name__)

#: Header on every output: the Kafka timestamp of the input that triggered it (latency).
SRC_TS_HEADER = "precovery.src_ts_ms"


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names of the contracts (settings ``PRECOVERY_KAFKA__*_TOPIC``)."""

    telemetry: str = contracts.TOPIC_TELEMETRY
    positions: str = contracts.TOPIC_POSITIONS
    market: str = contracts.TOPIC_MARKET
    recommendations: str = contracts.TOPIC_RECOMMENDATIONS
    health: str = contracts.TOPIC_HEALTH
    dlq: str = contracts.TOPIC_DLQ
    #: Failover commands from the API (:mod:`pipelines.kafka.commands`); None: the
    #: workers read none (approvals are then taken only where the engine is, the demo).
    commands: str | None = None


class RecordColumns(Sequence[RawRecord]):
    """Records of one topic partition as columns: a Sequence of :class:`RawRecord`, but
    a ``RawRecord`` object is made only for the one asked for (a dead letter, the last
    offset), not one per record as it arrives (the Kafka worker's hot path).
    """

    __slots__ = ("keys", "offsets", "partition", "timestamps", "topic", "values")

    def __init__(
        self,
        topic: str,
        partition: int,
        values: list[bytes],
        keys: list[bytes | None],
        offsets: list[int],
        timestamps: list[int | None],
    ) -> None:
        self.topic, self.partition = topic, partition
        self.values, self.keys, self.offsets, self.timestamps = values, keys, offsets, timestamps

    @classmethod
    def of(cls, records: Sequence[RawRecord]) -> RecordColumns:
        """Columns of ``records`` (one topic partition, as the stream hands them over)."""
        if isinstance(records, RecordColumns):
            return records
        first = records[0] if records else RawRecord("", b"")
        return cls(
            first.topic,
            first.partition,
            [r.value for r in records],
            [r.key for r in records],
            [r.offset for r in records],
            [r.timestamp_ms for r in records],
        )

    def __len__(self) -> int:
        return len(self.offsets)

    @overload
    def __getitem__(self, i: int) -> RawRecord: ...
    @overload
    def __getitem__(self, i: slice) -> RecordColumns: ...
    def __getitem__(self, i: int | slice) -> RawRecord | RecordColumns:
        if isinstance(i, slice):
            return RecordColumns(
                self.topic,
                self.partition,
                self.values[i],
                self.keys[i],
                self.offsets[i],
                self.timestamps[i],
            )
        return RawRecord(
            self.topic,
            self.values[i],
            self.keys[i],
            self.partition,
            self.offsets[i],
            self.timestamps[i],
        )

    def __iter__(self) -> Iterator[RawRecord]:
        for i in range(len(self.offsets)):
            yield self[i]

    def first_timestamp(self) -> int | None:
        """The earliest timestamp (None if none is known)."""
        known = [t for t in self.timestamps if t is not None]
        return min(known) if known else None


@dataclass(slots=True)
class DriverStep:
    """What one :meth:`Driver.step` did."""

    out: list[OutRecord] = field(default_factory=list)
    result: StepResult | None = None
    telemetry: int = 0
    rejected: int = 0
    #: Seconds spent decoding telemetry (the rest of a step is the engine's).
    decode_s: float = 0.0
    #: Situation reports due in this step (also in ``out``, on recommendations.v1).
    reports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def recommendations(self) -> list[dict[str, Any]]:
        return self.result.recommendations if self.result is not None else []


class Driver:
    """Runs an engine over raw records and says what to publish.

    Parameters
    ----------
    engine
        The state of the systems these records are about.
    topics
        Topic names (to route input and to address output).
    max_message_bytes
        Larger messages are dead-lettered as ``too_large``.
    where
        A name for logs (``stream``, ``partition 3``, ``replay``).
    """

    def __init__(
        self,
        engine: Engine,
        topics: Topics | None = None,
        max_message_bytes: int = 64 * 1024,
        where: str = "stream",
    ) -> None:
        self.engine = engine
        self.topics = topics or Topics()
        self.max_message_bytes = max_message_bytes
        self.where = where
        self._last_health_tick: int | None = engine.last_tick_ms

    # -- input ------------------------------------------------------------------------
    def step(self, records: Sequence[RawRecord]) -> DriverStep:
        """Context first, then the telemetry of ``records`` (in their order)."""
        tele: list[RawRecord] = []
        dead: list[OutRecord] = []
        for rec in records:
            if rec.topic == self.topics.telemetry:
                tele.append(rec)
            elif rec.topic in (self.topics.market, self.topics.positions):
                got = self.add_context(rec)
                if isinstance(got, Reject):
                    dead.append(dead_letter(rec, got, self.topics))
            else:
                dead.append(dead_letter(rec, Reject(0, "unknown_topic", rec.topic), self.topics))
        t0 = time.perf_counter()
        batch = decode_telemetry(
            [r.value for r in tele], self.engine.config.metric_names, self.max_message_bytes
        )
        decode_s = time.perf_counter() - t0
        out = self.telemetry(tele, batch)
        out.out.extend(dead)
        out.rejected += len(dead)
        out.decode_s = decode_s
        return out

    def add_context(self, rec: RawRecord) -> Position | MarketState | Reject:
        """Hand one positions/market record to the engine: the decoded item, or why not."""
        market = rec.topic == self.topics.market
        item: Position | MarketState
        try:
            if market:
                item = decode_record(rec.value, parse_market, self.max_message_bytes)
            else:
                item = decode_record(rec.value, parse_position, self.max_message_bytes)
        except ValidationError as exc:
            why = Reject(0, exc.reason, exc.detail)
            self.engine.count_rejects([why])
            return why
        if isinstance(item, MarketState):
            self.engine.add_market([item])
        else:
            self.engine.add_positions([item])
        return item

    def telemetry(self, records: Sequence[RawRecord], batch: TelemetryBatch) -> DriverStep:
        """Run decoded telemetry (``batch`` of ``records``) through the engine."""
        result = process_isolating(self.engine, batch, self.where)
        trigger = _first_src_ts(records)
        reports = self.engine.take_reports()
        out = decision_records(result.recommendations, reports, self.topics, trigger)
        out.extend(self.health(only_if_ticked=not result.recommendations, src_ts=trigger))
        out.extend(dead_letter(records[r.index], r, self.topics) for r in result.rejects)
        return DriverStep(out, result, len(records), len(result.rejects), reports=reports)

    def advance_to(self, t_ms: int, conditions: Sequence[str] = ()) -> DriverStep:
        """Move event time on without input (a quiet partition, a lost feed by choice)."""
        recs = self.engine.advance_to(t_ms)
        reports = self.engine.take_reports()
        out = decision_records(recs, reports, self.topics, None)
        out.extend(self.health(conditions, only_if_ticked=True))
        empty = np.zeros(0)
        result = StepResult(empty.astype(np.int64), empty, empty, empty, [], recs)
        return DriverStep(out, result, reports=reports)

    def health(
        self,
        conditions: Sequence[str] = (),
        only_if_ticked: bool = False,
        src_ts: int | None = None,
    ) -> list[OutRecord]:
        """health.v1 records of every system (with ``only_if_ticked``: if a tick passed)."""
        tick = self.engine.last_tick_ms
        if only_if_ticked and (tick is None or tick == self._last_health_tick):
            return []
        self._last_health_tick = tick
        return health_records(self.engine, self.topics, conditions, src_ts)


# -- output records ------------------------------------------------------------------------
def recommendation_records(
    recs: Sequence[dict[str, Any]], topics: Topics, src_ts: int | None
) -> list[OutRecord]:
    """recommendations.v1 records: key = system, header ``idempotency-key`` = the id."""
    src = _headers(src_ts)
    return [
        OutRecord(
            topics.recommendations,
            orjson.dumps(rec),
            rec["system"].encode(),
            (("idempotency-key", rec["recommendation_id"].encode()), *src),
        )
        for rec in recs
    ]


def in_time_order(
    recs: Sequence[dict[str, Any]], reports: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Recommendations and situation reports of one step merged by ``issued_at`` (a
    tick's recommendations before its reports), so that a report never follows a later
    tick's recommendation with a newer fencing epoch (the orchestrator would refuse it)."""
    return sorted([*recs, *reports], key=lambda r: str(r["issued_at"]))


def decision_records(
    recs: Sequence[dict[str, Any]],
    reports: Sequence[dict[str, Any]],
    topics: Topics,
    src_ts: int | None,
) -> list[OutRecord]:
    """recommendations.v1 records of a step's recommendations and reports, in time order."""
    if not reports:
        return recommendation_records(recs, topics, src_ts)
    out: list[OutRecord] = []
    for r in in_time_order(recs, reports):
        if r.get("kind") == "situation_report":
            out.extend(report_records([r], topics, src_ts))
        else:
            out.extend(recommendation_records([r], topics, src_ts))
    return out


def report_records(
    reports: Sequence[dict[str, Any]], topics: Topics, src_ts: int | None
) -> list[OutRecord]:
    """Situation reports on recommendations.v1 (``"kind": "situation_report"``, key =
    system, header ``idempotency-key`` = the report id)."""
    src = _headers(src_ts)
    return [
        OutRecord(
            topics.recommendations,
            orjson.dumps(rep),
            rep["system"].encode(),
            (("idempotency-key", rep["report_id"].encode()), *src),
        )
        for rep in reports
    ]


def health_records(
    engine: Engine, topics: Topics, conditions: Sequence[str] = (), src_ts: int | None = None
) -> list[OutRecord]:
    """health.v1 records (key = system) for every system of ``engine``, as of its last tick.

    ``conditions`` names what the worker knows beyond the engine (``telemetry_lost``: no
    input at all, so these figures are stale, not evidence of a healthy fleet).
    """
    as_of = engine.last_tick_ms
    src = _headers(src_ts)
    out = []
    for view in engine.systems_view():
        view = {**view, "as_of_ms": as_of, "conditions": list(conditions)}
        out.append(OutRecord(topics.health, orjson.dumps(view), view["system"].encode(), src))
    return out


def dead_letter(rec: RawRecord, why: Reject, topics: Topics) -> OutRecord:
    """telemetry.dlq.v1 record: the original bytes and key, where they came from and why."""
    headers = (
        ("dlq.source.topic", rec.topic.encode()),
        ("dlq.source.partition", str(rec.partition).encode()),
        ("dlq.source.offset", str(rec.offset).encode()),
        ("dlq.reason", why.reason.encode()),
        ("dlq.detail", why.detail[:500].encode()),
    )
    return OutRecord(topics.dlq, rec.value, rec.key, headers)


def process_isolating(engine: Engine, batch: TelemetryBatch, where: str) -> StepResult:
    """``engine.process(batch)``; if it raises unexpectedly, retry row by row (poison).

    A row that still makes the engine raise is rejected as ``poison`` with the exception,
    so one record never stops a stream. Errors of the project's own tree (a model that
    does not fit, say) are not poison: they propagate.
    """
    try:
        return engine.process(batch)
    except PrecoveryError:
        raise
    except Exception as exc:
        logger.warning(
            "%s: engine failed on a batch of %d (%r); retrying one by one",
            where,
            len(batch.index) + len(batch.rejects),
            exc,
        )
    parts: list[StepResult] = []
    rejects = list(batch.rejects)
    for row in range(len(batch)):
        one = TelemetryBatch(
            keys=[batch.keys[row]],
            ts_ms=batch.ts_ms[row : row + 1],
            x=batch.x[row : row + 1],
            index=batch.index[row : row + 1],
        )
        try:
            res = engine.process(one)
        except PrecoveryError:
            raise
        except Exception as exc:
            logger.warning("%s: poison record: %r", where, exc)
            rejects.append(Reject(int(batch.index[row]), "poison", repr(exc)[:300]))
            continue
        parts.append(res)
        rejects.extend(res.rejects)
    rejects.sort(key=lambda r: r.index)

    def cat(name: str) -> np.ndarray:
        arrays = [getattr(p, name) for p in parts]
        return np.concatenate(arrays) if arrays else np.zeros(0)

    return StepResult(
        index=cat("index").astype(np.int64),
        anomaly=cat("anomaly"),
        risk=cat("risk"),
        health=cat("health"),
        rejects=rejects,
        recommendations=[r for p in parts for r in p.recommendations],
    )


def next_offsets(records: Sequence[RawRecord]) -> dict[tuple[str, int], int]:
    """``(topic, partition) -> last offset + 1`` of ``records``: what to commit."""
    out: dict[tuple[str, int], int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        if r.offset + 1 > out.get(tp, -1):
            out[tp] = r.offset + 1
    return out


def _first_src_ts(records: Sequence[RawRecord]) -> int | None:
    """The earliest input timestamp: outputs are stamped with it (latency, conservative)."""
    if isinstance(records, RecordColumns):
        return records.first_timestamp()
    ts = [r.timestamp_ms for r in records if r.timestamp_ms is not None]
    return min(ts) if ts else None


def _headers(src_ts: int | None) -> tuple[tuple[str, bytes], ...]:
    return () if src_ts is None else ((SRC_TS_HEADER, str(src_ts).encode()),)
