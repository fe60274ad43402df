"""The stream on a real Kafka broker: end to end, crash, rebalance, dead letters, restart.

The guarantee under test (docs/streaming.md): at-least-once processing with idempotent,
deterministic recommendation ids. After any crash or rebalance, the set of distinct
recommendation ids on recommendations.v1 equals the set from one straight, uninterrupted
run over the same input; a repeated id always carries the same payload; every telemetry
offset is either processed into the checkpointed state or dead-lettered, exactly once in
the state (no gap, no double count).

Workers that get killed run as subprocesses (``precovery stream``), started and killed by
PID. The reference run is a :class:`PartitionTask` fed each partition's records in one go.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from pipelines.embedded.stream import Topics
from pipelines.kafka.checkpoint import CheckpointStore
from pipelines.kafka.partition import MarketLog, PartitionTask, engine_factory
from pipelines.kafka.sim import SimSent, simulate_to_kafka
from pipelines.kafka.stream import KafkaStreamWorker, StreamConfig
from predictor.engine import Engine, EngineConfig, StepResult
from predictor.events import TelemetryBatch, parse_market
from predictor.ports import RawRecord
from predictor.risk import RiskModel
from predictor.sim import SimConfig

PRECOVERY = str(Path(sys.executable).parent / "precovery")
SESSION_MS = 6_000
SIM = SimConfig(seed=7, failures_per_day=48.0)


@pytest.fixture(scope="session")
def model(small_model: RiskModel) -> RiskModel:
    """The session's small model: it always matches the engine's current features."""
    return small_model


# -- reading topics (short-lived clients: nothing stays open across a broker restart) ------
def read_all(bootstrap: str, topic: str, idle_s: float = 1.5, timeout_s: float = 30.0) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in parts])
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(list(consumer.assignment()))
        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=int(idle_s * 1000))
            for recs in polled.values():
                got.extend(recs)
            if not polled and all(consumer.position(tp) >= end for tp, end in ends.items()):
                break
        return got
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        consumer.close()


# -- the reference: a straight run of each partition, no Kafka client in the loop ----------
@dataclass
class Reference:
    ids: dict[str, bytes]
    dlq: set[tuple[int, int, str]]
    events: dict[int, int]
    ends: dict[int, int]


def reference(bootstrap: str, topics: Topics, model: RiskModel | None) -> Reference:
    market = MarketLog()
    for r in read_all(bootstrap, topics.market):
        market.add(r.partition, r.offset, parse_market(orjson.loads(r.value)))
    by_part: dict[str, dict[int, list[RawRecord]]] = {
        "t": defaultdict(list),
        "p": defaultdict(list),
    }
    for name, topic in (("t", topics.telemetry), ("p", topics.positions)):
        for r in read_all(bootstrap, topic):
            raw = RawRecord(topic, r.value, r.key, r.partition, r.offset, r.timestamp)
            by_part[name][r.partition].append(raw)
    make = engine_factory(EngineConfig(), model)
    ids: dict[str, bytes] = {}
    dlq: set[tuple[int, int, str]] = set()
    events: dict[int, int] = {}
    ends: dict[int, int] = {}
    for p, tele in by_part["t"].items():
        tele.sort(key=lambda r: r.offset)
        task = PartitionTask(p, make, topics)
        task.add_positions(sorted(by_part["p"].get(p, []), key=lambda r: r.offset))
        task.add_market(market.between(None, float("inf")))
        task.add_telemetry(tele)
        for out in task.advance(float("inf")):
            if out.topic == topics.recommendations:
                if orjson.loads(out.value).get("kind") == "situation_report":
                    continue  # predictor/sitrep.py: reports ride the same topic
                ids[orjson.loads(out.value)["recommendation_id"]] = out.value
            elif out.topic == topics.dlq:
                h = dict(out.headers)
                dlq.add(
                    (
                        int(h["dlq.source.partition"]),
                        int(h["dlq.source.offset"]),
                        h["dlq.reason"].decode(),
                    )
                )
        events[p] = task.engine.counters["events"]
        ends[p] = tele[-1].offset + 1
    return Reference(ids, dlq, events, ends)


# -- workers as subprocesses ------------------------------------------------------------
@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise


@pytest.fixture
def workers(tmp_path: Path, small_model_dir: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(
        bootstrap: str, topics: Topics, group: str, state: Path, name: str, *extra: str
    ) -> Worker:
        log = tmp_path / f"{name}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = [
            PRECOVERY,
            "stream",
            "--bootstrap",
            bootstrap,
            "--group",
            group,
            "--state-dir",
            str(state),
            "--no-create-topics",
            "--client-id",
            name,
            "--session-timeout-ms",
            str(SESSION_MS),
            "--checkpoint-interval-s",
            "0.5",
            "--max-batch",
            "300",
            "--model",
            str(small_model_dir),
            *extra,
        ]
        env.update(
            {
                "PRECOVERY_KAFKA__TELEMETRY_TOPIC": topics.telemetry,
                "PRECOVERY_KAFKA__POSITIONS_TOPIC": topics.positions,
                "PRECOVERY_KAFKA__MARKET_TOPIC": topics.market,
                "PRECOVERY_KAFKA__RECOMMENDATIONS_TOPIC": topics.recommendations,
                "PRECOVERY_KAFKA__HEALTH_TOPIC": topics.health,
                "PRECOVERY_KAFKA__DLQ_TOPIC": topics.dlq,
            }
        )
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
            )
        w = Worker(proc, log)
        started.append(w)
        return w

    yield start
    for w in started:  # only the processes this test started, by PID
        if w.proc.poll() is None:
            w.kill()


def wait_for(
    cond: Callable[[], bool], timeout_s: float, what: str, workers: tuple[Worker, ...] = ()
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    logs = "\n".join(w.text()[-3000:] for w in workers)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}\n{logs}")


def checkpointed(state: Path, group: str, topics: Topics) -> dict[int, Any]:
    store = CheckpointStore(state / "checkpoints", group, topics.telemetry)
    return {p: store.load(p) for p in store.partitions()}


def done(state: Path, group: str, topics: Topics, ends: dict[int, int]) -> bool:
    cks = checkpointed(state, group, topics)
    return all(p in cks and cks[p].telemetry_offset >= e for p, e in ends.items() if e > 0)


def produce(
    bootstrap: str,
    topics: Topics,
    hours: float,
    rate: float = 0.0,
    start_s: float = 0.0,
    bad_every: int = 97,
) -> SimSent:
    return simulate_to_kafka(
        bootstrap,
        SIM,
        hours,
        topics,
        incidents_topic=None,
        rate=rate,
        bad_every=bad_every,
        start_s=start_s,
        chunk_s=60.0,
    )


def check_against_reference(
    bootstrap: str, topics: Topics, state: Path, group: str, model: RiskModel
) -> dict[str, int]:
    ref = reference(bootstrap, topics, model)
    recs = read_all(bootstrap, topics.recommendations)
    payloads: dict[str, set[bytes]] = defaultdict(set)
    for r in recs:
        if orjson.loads(r.value).get("kind") == "situation_report":
            continue  # predictor/sitrep.py: reports ride the same topic
        payloads[orjson.loads(r.value)["recommendation_id"]].add(r.value)
    # The same decisions as a straight run: no new ids, none missing, one payload per id.
    assert set(payloads) == set(ref.ids)
    assert all(len(v) == 1 for v in payloads.values())
    assert {next(iter(v)) for v in payloads.values()} == set(ref.ids.values())
    actions = Counter(orjson.loads(v)["action"] for v in ref.ids.values())
    assert actions["failover_now"] > 0, actions
    # Every bad offset dead-lettered with its reason; nothing else.
    dlq = {
        (
            int(dict(r.headers)["dlq.source.partition"]),
            int(dict(r.headers)["dlq.source.offset"]),
            dict(r.headers)["dlq.reason"].decode(),
        )
        for r in read_all(bootstrap, topics.dlq)
        if dict(r.headers)["dlq.source.topic"].decode() == topics.telemetry
    }
    assert dlq == ref.dlq
    # The state reflects every offset once: processed + dead-lettered = offsets, no gap.
    cks = checkpointed(state, group, topics)
    for p, end in ref.ends.items():
        ck = cks[p]
        assert ck.telemetry_offset == end
        assert ck.stats["telemetry_in"] == end
        assert ck.engine["counters"]["events"] == ref.events[p]
        assert ck.stats["telemetry_dlq"] == sum(1 for d in ref.dlq if d[0] == p)
    counts = {
        "inputs": sum(ref.ends.values()),
        "dead_lettered": len(dlq),
        "recommendation_messages": len(recs),
        "distinct_ids": len(payloads),
        "replayed_duplicates": len(recs) - len(payloads),
        "failover_now": actions["failover_now"],
    }
    print(f"\n{counts}")
    return counts


# -- the tests ----------------------------------------------------------------------------
def test_simulate_to_stream_end_to_end(
    kafka_bootstrap: str, tmp_path: Path, small_model_dir: Path
) -> None:
    prefix = f"test-e2e-{uuid.uuid4().hex[:8]}-"
    env = {**os.environ}
    try:
        sim = subprocess.run(
            [
                PRECOVERY,
                "simulate-kafka",
                kafka_bootstrap,
                "--hours",
                "1.5",
                "--failures-per-day",
                "48",
                "--topic-prefix",
                prefix,
                "--bad-every",
                "500",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        assert sim.returncode == 0, sim.stderr
        run = subprocess.run(
            [
                PRECOVERY,
                "stream",
                "--bootstrap",
                kafka_bootstrap,
                "--topic-prefix",
                prefix,
                "--group",
                f"g-{prefix}",
                "--state-dir",
                str(tmp_path),
                "--idle-exit-s",
                "2",
                "--session-timeout-ms",
                str(SESSION_MS),
                "--model",
                str(small_model_dir),
            ],
            capture_output=True,
            text=True,
            timeout=150,
            env=env,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        recs = [
            orjson.loads(r.value) for r in read_all(kafka_bootstrap, prefix + "recommendations.v1")
        ]
        health = read_all(kafka_bootstrap, prefix + "health.v1")
        dlq = read_all(kafka_bootstrap, prefix + "telemetry.dlq.v1")
        n_events = sum(end_offsets(kafka_bootstrap, prefix + "telemetry.v1").values())
    finally:
        from tests.integration.conftest import admin_client

        with admin_client(kafka_bootstrap) as admin:
            mine = [t for t in admin.list_topics() if t.startswith(prefix)]
            admin.delete_topics(mine, timeout_ms=30_000, raise_errors=False)
    recs = [r for r in recs if r.get("kind") != "situation_report"]
    failovers = [r for r in recs if r["action"] == "failover_now"]
    assert failovers, recs
    # every published recommendation is in the audit trail, with its figures (docs/audit.md)
    from pipelines.records.audit import AuditStore, sqlite_url

    audited = AuditStore(sqlite_url(tmp_path / "audit.sqlite")).query(
        kind="recommendation", limit=None
    )
    assert {a["subject"] for a in audited} == {r["recommendation_id"] for r in recs}
    by_id = {a["subject"]: a["payload"] for a in audited}
    assert all(by_id[r["recommendation_id"]] == r for r in recs)
    assert all(r["reasons"] and r["epoch"] >= 1 and r["model_version"] for r in failovers)
    assert {h.key for h in health} and all(h.key for h in health)
    assert len(dlq) == n_events // 500  # --bad-every 500


@pytest.mark.chaos
def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
    kafka_bootstrap: str,
    topics: Topics,
    workers: Callable[..., Worker],
    tmp_path: Path,
    model: RiskModel,
) -> None:
    group, state = f"g-{uuid.uuid4().hex[:8]}", tmp_path / "state"
    producer = threading.Thread(target=produce, args=(kafka_bootstrap, topics, 2.0, 4000.0))
    producer.start()
    a = workers(kafka_bootstrap, topics, group, state, "crash-a")
    # Kill once state and outputs exist, mid-stream.
    wait_for(lambda: len(checkpointed(state, group, topics)) >= 2, 60, "first checkpoints", (a,))
    time.sleep(1.0)
    a.kill()
    killed_at = {p: ck.telemetry_offset for p, ck in checkpointed(state, group, topics).items()}
    producer.join(timeout=120)
    ends = end_offsets(kafka_bootstrap, topics.telemetry)
    assert any(killed_at.get(p, 0) < e for p, e in ends.items()), "killed after the end"
    b = workers(kafka_bootstrap, topics, group, state, "crash-b")
    wait_for(lambda: done(state, group, topics, ends), 120, "catch-up after restart", (b,))
    assert b.terminate() == 0
    assert "@" in b.text()  # b resumed partitions from checkpoints (p<n>@<offset>)
    check_against_reference(kafka_bootstrap, topics, state, group, model)


def test_two_workers_split_partitions_and_take_over_from_checkpoints(
    kafka_bootstrap: str,
    topics: Topics,
    workers: Callable[..., Worker],
    tmp_path: Path,
    model: RiskModel,
) -> None:
    group, state = f"g-{uuid.uuid4().hex[:8]}", tmp_path / "state"
    producer = threading.Thread(target=produce, args=(kafka_bootstrap, topics, 2.0, 2000.0))
    producer.start()
    a = workers(kafka_bootstrap, topics, group, state, "pair-a")
    wait_for(lambda: "assigned partitions [0, 1, 2]" in a.text(), 60, "a owns all", (a,))
    b = workers(kafka_bootstrap, topics, group, state, "pair-b")

    def split() -> bool:
        lines = [ln for ln in b.text().splitlines() if "assigned partitions [" in ln]
        return bool(lines) and "assigned partitions []" not in lines[-1]

    wait_for(split, 60, "b to get partitions", (a, b))
    time.sleep(1.5)  # let b checkpoint some of its own progress
    owned_all = a.text().count("assigned partitions [0, 1, 2]")
    b.kill()
    # a takes b's partitions back after the session timeout, from b's checkpoints.
    wait_for(
        lambda: a.text().count("assigned partitions [0, 1, 2]") > owned_all,
        60,
        "a to take over",
        (a,),
    )
    producer.join(timeout=120)
    ends = end_offsets(kafka_bootstrap, topics.telemetry)
    wait_for(lambda: done(state, group, topics, ends), 120, "a to finish", (a, b))
    assert a.terminate() == 0
    b_parts = [ln for ln in b.text().splitlines() if "assigned partitions [" in ln][-1]
    taken = [int(x) for x in b_parts.split("[", 1)[1].split("]", 1)[0].split(",")]
    a_last = [ln for ln in a.text().splitlines() if "assigned partitions [" in ln][-1]
    assert "assigned partitions [0, 1, 2]" in a_last
    for p in taken:  # a restored each of b's partitions from a checkpoint, not from scratch
        assert f"p{p}@" in a_last, a_last
    assert a.text().count("assigned partitions") >= 3  # all, then a share, then all again
    check_against_reference(kafka_bootstrap, topics, state, group, model)


class PoisonedEngine(Engine):
    """An engine that crashes on one system's events, like a bug triggered by data."""

    def process(
        self, batch: TelemetryBatch, collect_features: bool = False, decide: bool = True
    ) -> StepResult:
        if any(k[0] == "poison-pill" for k in batch.keys):
            raise RuntimeError("boom")
        return super().process(batch, collect_features, decide)


@pytest.mark.chaos
def test_malformed_oversized_and_poison_go_to_the_dlq_while_the_stream_goes_on(
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    model: RiskModel,
) -> None:
    sent = produce(kafka_bootstrap, topics, 0.5, bad_every=50)
    from pipelines.kafka.client_python import KafkaSink, make_producer

    sink = KafkaSink(make_producer(kafka_bootstrap))
    from predictor.ports import OutRecord

    pill = orjson.dumps(
        {
            "ts": SIM.start.timestamp() * 1000 + 1_800_000,
            "system": "poison-pill",
            "component": "c",
            "host": "h",
            "metrics": {"cpu_pct": 1.0},
        }
    )
    try:
        sink.publish([OutRecord(topics.telemetry, pill, b"poison-pill")])
        sent2 = simulate_to_kafka(
            kafka_bootstrap, SIM, 0.25, topics, None, start_s=1800.0, sink=sink
        )
    finally:
        sink.close()
    config = EngineConfig()

    def make(snap: dict[str, Any] | None) -> Engine:
        if snap is None:
            return PoisonedEngine(config, model=model)
        return PoisonedEngine.from_snapshot(snap, config, model)

    worker = KafkaStreamWorker(
        StreamConfig(
            kafka_bootstrap,
            f"g-{uuid.uuid4().hex[:8]}",
            topics,
            tmp_path / "ck",
            session_timeout_ms=SESSION_MS,
            max_batch=1000,
        ),
        make,
    )
    worker.run(idle_exit_s=2.0)
    dlq = read_all(kafka_bootstrap, topics.dlq)
    reasons = Counter(dict(r.headers)["dlq.reason"].decode() for r in dlq)
    assert reasons["poison"] == 1
    assert {"malformed_json", "wrong_type", "missing_field", "too_large"} <= set(reasons)
    assert sum(reasons.values()) == sent.bad + 1
    poison = next(r for r in dlq if dict(r.headers)["dlq.reason"] == b"poison")
    assert poison.value == pill and b"boom" in dict(poison.headers)["dlq.detail"]
    oversized = [r for r in dlq if dict(r.headers)["dlq.reason"] == b"too_large"]
    assert all(len(r.value) > 64 * 1024 for r in oversized)
    # The stream went on past the poison: everything after it was processed.
    ends = end_offsets(kafka_bootstrap, topics.telemetry)
    assert sum(ends.values()) == sent.telemetry + sent2.telemetry + 1
    store = CheckpointStore(tmp_path / "ck", worker.config.group_id, topics.telemetry)
    for p, end in ends.items():
        ck = store.load(p)
        assert (ck.telemetry_offset if ck else 0) == end


@pytest.mark.chaos
def test_broker_restart_mid_stream_worker_reconnects_and_catches_up(
    kafka_bootstrap: str,
    topics: Topics,
    workers: Callable[..., Worker],
    tmp_path: Path,
    model: RiskModel,
    kafka_broker_control: Any,
) -> None:
    group, state = f"g-{uuid.uuid4().hex[:8]}", tmp_path / "state"
    produce(kafka_bootstrap, topics, 1.0)
    w = workers(kafka_bootstrap, topics, group, state, "restart")
    first = end_offsets(kafka_bootstrap, topics.telemetry)
    wait_for(lambda: done(state, group, topics, first), 90, "first half", (w,))
    kafka_broker_control.stop_keep_data()
    time.sleep(2.0)
    kafka_broker_control.start()
    produce(kafka_bootstrap, topics, 1.0, start_s=3600.0)
    ends = end_offsets(kafka_bootstrap, topics.telemetry)
    wait_for(lambda: done(state, group, topics, ends), 150, "catch-up after restart", (w,))
    assert w.terminate() == 0
    check_against_reference(kafka_bootstrap, topics, state, group, model)


def test_a_stuck_consumer_is_replaced_and_the_stream_catches_up(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, model: RiskModel
) -> None:
    """A client that stops returning records (as one can after a broker restart) is dropped:
    the worker reconnects after ``stall_reconnect_s`` and decides as a straight run would."""
    group, state = f"g-{uuid.uuid4().hex[:8]}", tmp_path / "state"
    produce(kafka_bootstrap, topics, 1.0)
    worker = KafkaStreamWorker(
        StreamConfig(
            kafka_bootstrap,
            group,
            topics,
            state / "checkpoints",
            session_timeout_ms=SESSION_MS,
            checkpoint_interval_s=0.5,
            max_batch=300,
            stall_reconnect_s=3.0,
        ),
        engine_factory(EngineConfig(), model),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        first = end_offsets(kafka_bootstrap, topics.telemetry)
        wait_for(lambda: done(state, group, topics, first), 90, "first half")
        stuck = worker.consumer
        stuck.poll = lambda *a, **k: []  # wedged: connected, but never another record
        produce(kafka_bootstrap, topics, 1.0, start_s=3600.0)
        ends = end_offsets(kafka_bootstrap, topics.telemetry)
        wait_for(lambda: done(state, group, topics, ends), 90, "catch-up after the stall")
        assert worker.counters["reconnects"] >= 1
        assert worker.consumer is not stuck
    finally:
        worker.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()
    check_against_reference(kafka_bootstrap, topics, state, group, model)
