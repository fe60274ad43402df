"""RecordColumns: the Kafka worker's records as columns decide exactly as RawRecord lists do."""

from __future__ import annotations

import orjson

from pipelines.driver import RecordColumns, Topics
from pipelines.kafka.partition import PartitionTask, engine_factory
from predictor.engine import EngineConfig
from predictor.ports import RawRecord
from predictor.risk import RiskModel
from tests.factories import SimStream


def _records(stream: SimStream, topics: Topics) -> list[RawRecord]:
    out = []
    for i, e in enumerate(stream.events):
        value = orjson.dumps(e) if i % 97 else b"{not json"  # a few dead letters too
        out.append(RawRecord(topics.telemetry, value, None, 0, i, 1_000_000 + i))
    return out


def test_columns_behave_as_a_sequence_of_raw_records() -> None:
    recs = [
        RawRecord("t", bytes([i]), None, 2, 10 + i, None if i == 0 else 50 - i) for i in range(5)
    ]
    cols = RecordColumns.of(recs)
    assert len(cols) == 5 and list(cols) == recs
    assert cols[3] == recs[3] and cols[-1] == recs[-1]
    assert list(cols[1:3]) == recs[1:3] and isinstance(cols[1:3], RecordColumns)
    assert cols.first_timestamp() == 46  # the None is skipped
    assert RecordColumns.of(cols) is cols
    assert len(RecordColumns.of([])) == 0


def test_a_partition_fed_columns_decides_as_one_fed_raw_records(
    failure_stream: SimStream, small_model: RiskModel
) -> None:
    topics = Topics()
    recs = _records(failure_stream, topics)
    make = engine_factory(EngineConfig(), small_model)
    outs = []
    for as_columns in (False, True):
        task = PartitionTask(0, make, topics)
        out = []
        for lo in range(0, len(recs), 700):  # several polls, one split at the frontier
            chunk = recs[lo : lo + 700]
            assert task.add_telemetry(RecordColumns.of(chunk) if as_columns else chunk)
            out.extend(task.advance(float(failure_stream.events[lo]["ts"]) + 300_000))
        out.extend(task.advance(float("inf")))
        outs.append((out, task.telemetry_offset, dict(task.stats)))
    assert outs[0] == outs[1]
    out, offset, stats = outs[1]
    assert offset == len(recs)
    assert stats["telemetry_dlq"] >= len(recs) // 97
    assert any(o.topic == topics.recommendations for o in out)
    assert any(o.topic == topics.dlq for o in out)
