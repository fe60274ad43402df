"""The running Kafka stream picks up a new ``@champion`` from a real MLflow registry
(SQLite), between polls: no record dropped or read twice, every recommendation after the
swap names the new version, none after it the old one, and the swap is audited."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

from pipelines.embedded.stream import Topics
from pipelines.kafka.checkpoint import CheckpointStore
from pipelines.kafka.partition import engine_factory
from pipelines.kafka.sim import simulate_to_kafka
from pipelines.kafka.stream import KafkaStreamWorker, StreamConfig
from pipelines.records.audit import AuditLog, AuditStore, sqlite_url
from pipelines.settings import MlflowSettings
from pipelines.training.champion import follow_champion, load_champion
from pipelines.training.tracking import Tracker
from pipelines.training.train import TrainConfig, build_features, sim_frames, train_full
from predictor.engine import EngineConfig
from predictor.labels import Incident
from predictor.sim import SimConfig, Simulator
from tests.factories import failure_at
from tests.integration.test_stream_kafka import read_all

STREAM = SimConfig(
    seed=7,
    failures_per_day=48.0,
    scheduled=(failure_at(1200.0, lead_s=300.0), failure_at(2400.0, "fx-pricing", lead_s=300.0)),
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    """An MLflow SQLite store with two registered versions of ``failure-risk``, v1 the
    champion (small fits of the stream's own features on a simulated history)."""
    root = tmp_path_factory.mktemp("mlflow")
    tracker = Tracker(MlflowSettings(tracking_uri=f"sqlite:///{root}/mlruns.db", experiment="swap"))
    hours = 12.0
    sim = Simulator(SimConfig(seed=3, failures_per_day=96.0, hosts_per_component=1))
    incidents = [Incident.from_record(r) for r in sim.incidents(hours)]
    data = build_features(sim_frames(sim, hours), stride=3)
    for trees in (20, 40):
        cfg = TrainConfig(
            horizon_s=900.0, n_estimators=trees, num_leaves=7, num_threads=1, test_fraction=0.35
        )
        logged = tracker.log_training(train_full(data, incidents, cfg), cfg, True, data.x)
        assert logged["version"] is not None
    tracker.set_champion("1", {"reason": "test"})
    return tracker


def test_the_kafka_stream_swaps_to_a_new_champion_between_polls(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, registry: Tracker
) -> None:
    sent = simulate_to_kafka(kafka_bootstrap, STREAM, 1.0, topics, None)
    model, version = load_champion(registry)
    assert version == "1"
    worker = KafkaStreamWorker(
        StreamConfig(
            kafka_bootstrap,
            f"g-{uuid.uuid4().hex[:8]}",
            topics,
            tmp_path / "ck",
            session_timeout_ms=6_000,
            max_batch=500,  # many polls: the swap lands between two of them
        ),
        engine_factory(EngineConfig(), model),
    )
    audit = AuditLog(AuditStore(sqlite_url(tmp_path / "audit.sqlite")))
    watcher = follow_champion(registry, worker.set_model, model, version, audit, "test", 0.2)
    runner = threading.Thread(target=worker.run, kwargs={"idle_exit_s": 3.0})
    runner.start()
    try:
        deadline = time.monotonic() + 120
        while worker.counters["polled"] < sent.telemetry // 3:
            assert time.monotonic() < deadline, "the worker did not get going"
            time.sleep(0.05)
        registry.set_champion("2", {"reason": "test"})  # promoted while it streams
        runner.join(300)
        assert not runner.is_alive()
    finally:
        worker.stop()
        watcher.stop()
        audit.close()
    assert watcher.swaps == 1 and watcher.current == "2"
    # every telemetry record processed once: the swap neither dropped nor re-read any
    store = CheckpointStore(tmp_path / "ck", worker.config.group_id, topics.telemetry)
    done = [store.load(p) for p in range(3)]
    assert sum(c.stats.get("telemetry_in", 0) for c in done if c) == sent.telemetry
    assert worker.counters["rewinds"] == 0
    recs = [orjson.loads(r.value) for r in read_all(kafka_bootstrap, topics.recommendations)]
    versions = [r["model_version"] for r in recs if not r.get("kind") and r.get("model_version")]
    assert versions, "no recommendation named a model"
    labels = [v.split(":")[0] for v in versions]
    assert set(labels) <= {"failure-risk/1", "failure-risk/2"}
    assert "failure-risk/2" in labels  # the new champion decided after the swap
    # per partition, in offset order: v1 ... v1 then v2 ... v2, never back
    by_part: dict[int, list[str]] = {}
    for r in read_all(kafka_bootstrap, topics.recommendations):
        rec = orjson.loads(r.value)
        if not rec.get("kind") and rec.get("model_version"):
            by_part.setdefault(r.partition, []).append(rec["model_version"].split(":")[0])
    for seq in by_part.values():
        first_new = seq.index("failure-risk/2") if "failure-risk/2" in seq else len(seq)
        assert all(v == "failure-risk/2" for v in seq[first_new:]), seq
    trail = AuditStore(sqlite_url(tmp_path / "audit.sqlite"))
    try:
        changes = [r for r in trail.query() if r["kind"] == "model_change"]
    finally:
        trail.close()
    assert len(changes) == 1
    assert changes[0]["payload"]["to"].startswith("failure-risk/2:")
    assert changes[0]["payload"]["from"].startswith("failure-risk/1:")
