"""The stream worker on the in-memory source and sink: DLQ, commits, keyed output."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest

from pipelines.embedded.memory import MemorySink, MemorySource
from pipelines.embedded.stream import StreamWorker, Topics
from predictor.engine import Engine, EngineConfig
from predictor.errors import SinkError
from predictor.ports import OutRecord
from predictor.risk import RiskModel
from tests.factories import (
    INTERVAL_MS,
    T0_MS,
    SimStream,
    market_state,
    position,
    steady_stream,
    telemetry_bytes,
    telemetry_event,
)

TOPICS = Topics()
A = ("sys-a", "comp-a", "h1")
B = ("sys-a", "comp-b", "h2")


def load(source: MemorySource, events: Sequence[dict[str, object] | bytes]) -> None:
    for ev in events:
        value = ev if isinstance(ev, bytes) else orjson.dumps(ev)
        source.append(TOPICS.telemetry, value, b"sys-a")


def headers(rec: OutRecord) -> dict[str, bytes]:
    return dict(rec.headers)


def test_bad_input_goes_to_the_dlq_with_original_bytes_and_reasons() -> None:
    source, sink = MemorySource(), MemorySink()
    bad = [
        b'{"ts": 1767571200000, "system": "s"',  # truncated
        b'{"ts": 1767571200000, "system": "s", "component": "c", "host": "h",'
        b' "metrics": {"cpu_pct": NaN}}',
        telemetry_bytes(metrics={"cpu_pct": "high"}),
    ]
    load(
        source, [telemetry_event(T0_MS, *A), bad[0], bad[1], bad[2], telemetry_event(T0_MS, *A)]
    )  # the last one is a duplicate
    source.append(TOPICS.market, b"{not json", b"XNYS")
    source.append(TOPICS.positions, orjson.dumps({**position(), "open_orders": -1}), b"sys-a")
    source.append("elsewhere.v1", b"{}")
    worker = StreamWorker(Engine(EngineConfig()), source, sink)
    report = worker.run_once(0.0)
    assert report.records == 8 and report.telemetry == 5 and report.rejected == 7

    dlq = sink.topics[TOPICS.dlq]
    by_reason = {headers(r)["dlq.reason"].decode(): r for r in dlq}
    assert set(by_reason) == {
        "malformed_json",
        "non_finite",
        "wrong_type",
        "duplicate",
        "out_of_range",
        "unknown_topic",
    }
    assert len(dlq) == 7  # two malformed_json: the telemetry one and the market one
    for rec in dlq:
        h = headers(rec)
        assert {
            "dlq.source.topic",
            "dlq.source.partition",
            "dlq.source.offset",
            "dlq.reason",
            "dlq.detail",
        } <= set(h)
        topic, offset = h["dlq.source.topic"].decode(), int(h["dlq.source.offset"])
        original = source._logs[(topic, int(h["dlq.source.partition"]))][offset]
        assert rec.value == original.value  # the original bytes, untouched
        assert rec.key == original.key
    assert by_reason["non_finite"].value == bad[1]
    assert headers(by_reason["wrong_type"])["dlq.detail"] == b"metrics.cpu_pct"
    assert headers(by_reason["duplicate"])["dlq.source.offset"] == b"4"
    assert headers(by_reason["unknown_topic"])["dlq.source.topic"] == b"elsewhere.v1"


def test_offsets_are_committed_after_the_sink_acknowledges() -> None:
    source = MemorySource()
    load(source, steady_stream([A, B], 5))
    source.append(TOPICS.market, orjson.dumps(market_state()), b"XNYS")
    committed_at_publish: list[dict[tuple[str, int], int]] = []

    class Spy(MemorySink):
        def publish(self, records: Sequence[OutRecord]) -> None:
            committed_at_publish.append(dict(source.committed))
            super().publish(records)

    StreamWorker(Engine(EngineConfig()), source, Spy()).run_once(0.0)
    assert committed_at_publish == [{}]
    assert source.committed == {(TOPICS.telemetry, 0): 10, (TOPICS.market, 0): 1}


def test_nothing_is_committed_when_publishing_fails() -> None:
    class Down(MemorySink):
        def publish(self, records: Sequence[OutRecord]) -> None:
            raise SinkError("broker down")

    source = MemorySource()
    load(source, steady_stream([A], 3))
    worker = StreamWorker(Engine(EngineConfig()), source, Down())
    with pytest.raises(SinkError):
        worker.run_once(0.0)
    assert source.committed == {}
    source.seek_to_committed()
    assert source.pending() == 3  # a restart reads them again


def test_recommendations_keyed_by_system_with_idempotency_key() -> None:
    source, sink = MemorySource(), MemorySink()
    both = steady_stream([A, B], 20)
    only_b = steady_stream([B], 10, start_ms=T0_MS + 20 * INTERVAL_MS, seed=1)
    load(source, both + only_b)
    seen = []
    worker = StreamWorker(
        Engine(EngineConfig()),
        source,
        sink,
        max_batch=7,
        on_batch=lambda rep, res: seen.append(rep),
    )
    worker.run(poll_timeout_s=0.0, idle_exit=True)
    assert sum(r.records for r in seen) == len(both) + len(only_b)
    out = sink.topics[TOPICS.recommendations]
    assert len(out) == 1
    rec = orjson.loads(out[0].value)
    assert rec["action"] == "failover_now" and rec["component"] == "comp-a"
    assert out[0].key == b"sys-a"
    assert headers(out[0]) == {"idempotency-key": rec["recommendation_id"].encode()}
    health = [orjson.loads(r.value) for r in sink.topics[TOPICS.health]]
    assert health and all(r.key == b"sys-a" for r in sink.topics[TOPICS.health])
    assert health[-1]["system"] == "sys-a" and health[-1]["health"] == 0.0
    assert source.committed == {(TOPICS.telemetry, 0): len(both) + len(only_b)}
    assert TOPICS.dlq not in sink.topics


def test_context_is_applied_before_telemetry(small_model: RiskModel) -> None:
    """Market and positions in a batch are applied before its telemetry is decided."""
    source, sink = MemorySource(), MemorySink()
    both = steady_stream([A, B], 20)
    only_b = steady_stream([B], 10, start_ms=T0_MS + 20 * INTERVAL_MS, seed=1)
    load(source, both + only_b)
    source.append(TOPICS.positions, orjson.dumps(position("sys-a", "XNYS", T0_MS, 1e6, 2e6, 3)))
    source.append(TOPICS.market, orjson.dumps(market_state("XNYS", T0_MS, "opening_auction")))
    StreamWorker(Engine(EngineConfig()), source, sink).run(poll_timeout_s=0.0, idle_exit=True)
    rec = orjson.loads(sink.topics[TOPICS.recommendations][0].value)
    assert rec["exposure_usd"]["open_orders"] == 3
    assert rec["market"]["session"] == "opening_auction"


def test_replay_after_restart_publishes_the_same_ids(
    failure_stream: SimStream, small_model: RiskModel
) -> None:
    """At-least-once in, idempotent out: a replay from offset 0 repeats the same ids."""

    def run() -> list[bytes]:
        source, sink = MemorySource(), MemorySink()
        load(source, failure_stream.events)
        engine = Engine(
            EngineConfig(),
            model=small_model,
            critical=failure_stream.critical,
            system_venue=failure_stream.sim.fleet.system_venue,
        )
        StreamWorker(engine, source, sink, max_batch=997).run(poll_timeout_s=0.0, idle_exit=True)
        return [dict(r.headers)["idempotency-key"] for r in sink.topics[TOPICS.recommendations]]

    first, second = run(), run()
    assert first and first == second


# -- survive production: poison, a dead worker, a lost feed ----------------------------------
class _Poisoned(Engine):
    def process(self, batch, collect_features=False, decide=True):  # type: ignore[no-untyped-def]
        if any(k[2] == "poison" for k in batch.keys):
            raise RuntimeError("boom")
        return super().process(batch, collect_features, decide)


def test_a_record_that_makes_the_engine_raise_is_isolated_in_process() -> None:
    source, sink = MemorySource(), MemorySink()
    events = steady_stream([A, B], 5)
    events.insert(3, telemetry_event(T0_MS + 15_000, "sys-a", "comp-a", "poison"))
    load(source, events)
    worker = StreamWorker(_Poisoned(EngineConfig()), source, sink)
    report = worker.run_once(0.0)
    assert report.telemetry == 11 and report.rejected == 1
    (dead,) = sink.topics[TOPICS.dlq]
    assert headers(dead)["dlq.reason"] == b"poison" and b"boom" in headers(dead)["dlq.detail"]
    assert worker.engine.counters["events"] == 10  # every valid record was processed
    assert source.committed[(TOPICS.telemetry, 0)] == 11


def test_a_dead_worker_thread_is_reported_not_silent(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(MemorySource):
        def poll(self, max_records: int, timeout_s: float):  # type: ignore[no-untyped-def]
            raise OSError("disk gone")

    worker = StreamWorker(Engine(EngineConfig()), Broken(), MemorySink())
    with pytest.raises(OSError):
        worker.run(0.0)
    assert not worker.feed.worker_alive
    assert "worker_dead" in worker.feed.conditions()
    assert any("disk gone" in r for r in worker.feed.not_ready())
    assert any(r.levelname == "ERROR" and "died" in r.message for r in caplog.records)


def test_a_lost_feed_flags_health_and_blames_nobody() -> None:
    clock = [0.0]
    from pipelines.embedded.feed import FeedMonitor

    feed = FeedMonitor(lost_after_s=5.0, clock=lambda: clock[0])
    source, sink = MemorySource(), MemorySink()
    load(source, steady_stream([A, B], 6))
    worker = StreamWorker(Engine(EngineConfig()), source, sink, feed=feed)
    feed.worker_started()
    worker.run_once(0.0)
    clock[0] = 60.0  # a minute of wall time without a single record
    worker.run_once(0.0)
    worker.run_once(0.0)
    flagged = [orjson.loads(r.value) for r in sink.topics[TOPICS.health]]
    assert [h["conditions"] for h in flagged if h["conditions"]] == [["telemetry_lost"]]
    assert TOPICS.recommendations not in sink.topics  # no failover on global silence
    # ... unless a setting says so
    worker.failover_on_feed_loss = True
    worker._lost_reported = False
    worker.run_once(0.0)
    recs = [orjson.loads(r.value) for r in sink.topics[TOPICS.recommendations]]
    assert {r["action"] for r in recs} == {"failover_now"}
