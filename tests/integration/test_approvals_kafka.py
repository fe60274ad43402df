"""Approvals on a Kafka deployment, on the real broker: a decision taken where
``precovery serve`` runs (no engine there) reaches the stream worker that owns the system
as a commands.v1 record; the site flips once, travels in the checkpoint, is not flipped
again when the commands are read anew, and the decision is durable in the audit trail."""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer

from pipelines.embedded.stream import Topics
from pipelines.kafka.backend import KafkaBackend
from pipelines.kafka.checkpoint import CheckpointStore
from pipelines.kafka.client_python import KafkaSink, make_producer
from pipelines.kafka.commands import CommandPublisher
from pipelines.kafka.partition import engine_factory
from pipelines.kafka.sim import simulate_to_kafka
from pipelines.kafka.stream import KafkaStreamWorker, StreamConfig
from pipelines.records.approvals import Approvals, DecisionConflict
from pipelines.records.audit import AuditLog, AuditStore, sqlite_url
from predictor.engine import Engine, EngineConfig
from predictor.ports import OutRecord
from predictor.sim import SimConfig
from tests.integration.test_stream_kafka import read_all

SIM = SimConfig(seed=11, failures_per_day=0.0)


def _worker(bootstrap: str, topics: Topics, group: str, ck: Path) -> KafkaStreamWorker:
    return KafkaStreamWorker(
        StreamConfig(bootstrap, group, topics, ck, session_timeout_ms=6_000, max_batch=2000),
        engine_factory(EngineConfig(), None),
    )


def _site_in_checkpoints(ck: Path, group: str, topics: Topics, system: str) -> tuple[str, int]:
    """(active site, failover epoch) of ``system`` in the checkpoint of its partition."""
    store = CheckpointStore(ck, group, topics.telemetry)
    for p in range(3):
        got = store.load(p)
        if got is None:
            continue
        eng = Engine.from_snapshot(got.engine, EngineConfig())
        if system in eng.registry.system:
            return eng.active_site(system), eng.failover_epoch(system)
    raise AssertionError(f"{system} in no checkpoint")


def _wait(fn: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_an_approval_at_the_api_flips_the_site_in_the_owning_worker_once(
    kafka_bootstrap: str, topics: Topics, tmp_topic: Any, tmp_path: Path
) -> None:
    topics = dataclasses.replace(topics, commands=tmp_topic(partitions=1, prefix="cmd"))
    simulate_to_kafka(kafka_bootstrap, SIM, 0.1, topics, None)
    group, ck = f"g-{uuid.uuid4().hex[:8]}", tmp_path / "ck"
    first = _worker(kafka_bootstrap, topics, group, ck)
    first.run(idle_exit_s=2.0)
    system = "eq-oms"
    primary, _ = _site_in_checkpoints(ck, group, topics, system)

    # A recommendation that awaits a person's approval, as a worker publishes it.
    rec = {
        "recommendation_id": f"rec-{uuid.uuid4().hex[:8]}",
        "system": system,
        "component": "order-gateway",
        "action": "failover_now",
        "authority": {"mode": "approve"},
        "epoch": 7,
        "active_site": primary,
        "failover_site": "standby-x",
    }
    sink = KafkaSink(make_producer(kafka_bootstrap))
    sink.publish([OutRecord(topics.recommendations, orjson.dumps(rec), system.encode())])
    # and a command that is not one: dead-lettered with its reason, the stream goes on
    sink.publish([OutRecord(topics.commands or "", b'{"kind": "fail_over"}', b"x")])

    def consumer() -> KafkaConsumer:
        return KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)

    backend = KafkaBackend(consumer, topics.health, topics.recommendations).start()
    audit_db = sqlite_url(tmp_path / "audit.sqlite")
    audit = AuditLog(AuditStore(audit_db))
    publisher = CommandPublisher(sink, topics.commands or "", topics.recommendations)
    approvals = Approvals(backend, audit, publisher.forward, fail_over=publisher.fail_over)
    try:
        _wait(
            lambda: any(
                r["recommendation_id"] == rec["recommendation_id"]
                for r in backend.recommendations(limit=1000)
            )
        )
        got = approvals.decide(rec["recommendation_id"], "approved", "gateway degrading", "ann")
        assert got["decision"] == "approved" and got["active_site"] == "standby-x"
        again = approvals.decide(rec["recommendation_id"], "approved", "twice", "bob")
        assert again == got and publisher.sent == 1  # idempotent: one command
        with pytest.raises(DecisionConflict) as conflict:
            approvals.decide(rec["recommendation_id"], "rejected", "no", "bob")
        assert conflict.value.reason == "already_decided"
        audit.flush()
        # A restarted API (or another replica on the same audit database) knows it.
        other = CommandPublisher(sink, topics.commands or "", topics.recommendations)
        second_audit = AuditLog(AuditStore(audit_db))
        restarted = Approvals(backend, second_audit, other.forward, fail_over=other.fail_over)
        try:
            got_again = restarted.decide(rec["recommendation_id"], "approved", "x", "cy")
        finally:
            second_audit.close()
        assert got_again["decided_by"] == "ann" and other.sent == 0
    finally:
        backend.stop()
        audit.close()
        publisher.close()  # the producer's sockets: closed, not left to the collector

    cmds = read_all(kafka_bootstrap, topics.commands or "")
    good = [orjson.loads(r.value) for r in cmds if b"epoch" in r.value]
    assert len(good) == 1 and good[0]["system"] == system and good[0]["epoch"] == 7
    decisions = [orjson.loads(r.value) for r in read_all(kafka_bootstrap, topics.recommendations)]
    assert [d["decision"] for d in decisions if d.get("kind") == "decision"] == ["approved"]

    # The worker that owns the system applies it, once; the site is in its checkpoint.
    second = _worker(kafka_bootstrap, topics, group, ck)
    second.run(idle_exit_s=2.0)
    assert second.counters["failovers_applied"] == 1
    site, epoch = _site_in_checkpoints(ck, group, topics, system)
    assert site != primary and epoch == 7
    dlq = [
        r
        for r in read_all(kafka_bootstrap, topics.dlq)
        if dict(r.headers).get("dlq.source.topic") == (topics.commands or "").encode()
    ]
    assert len(dlq) == 1

    # Read again from the start after a restart: nothing flips back or twice.
    third = _worker(kafka_bootstrap, topics, group, ck)
    third.run(idle_exit_s=2.0)
    assert third.counters["failovers_applied"] == 0
    assert _site_in_checkpoints(ck, group, topics, system) == (site, 7)
