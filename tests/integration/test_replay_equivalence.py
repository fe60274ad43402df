"""One driver for every mode: the same history decides the same way everywhere.

One simulated history (failures, positions, market) runs through the in-memory source
(the embedded stream's worker), the file source (``precovery replay``'s path, from the
files ``precovery simulate`` writes) and the real broker (``KafkaStreamWorker``, three
partitions: one engine per partition); each must publish the same recommendation ids with
byte-identical payloads.
"""

from __future__ import annotations

import io
import uuid
from collections import Counter
from pathlib import Path

import orjson

from pipelines.driver import Topics
from pipelines.embedded.memory import MemorySink, MemorySource
from pipelines.files.ports import write_dataset
from pipelines.kafka.partition import engine_factory
from pipelines.kafka.sim import simulate_to_kafka
from pipelines.kafka.stream import KafkaStreamWorker, StreamConfig
from pipelines.offline.replay import replay_history, run_records, sim_records
from predictor.engine import Engine, EngineConfig
from predictor.risk import RiskModel
from predictor.sim import SimConfig, Simulator
from tests.integration.test_stream_kafka import read_all

SIM = SimConfig(seed=13, failures_per_day=60.0)
HOURS = 1.5
CONFIG = EngineConfig()


def by_id(values: list[bytes]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for v in values:
        if orjson.loads(v).get("kind") == "situation_report":
            continue  # predictor/sitrep.py: reports, not recommendations
        rid = orjson.loads(v)["recommendation_id"]
        assert out.get(rid, v) == v, f"two payloads for {rid}"
        out[rid] = v
    return out


def test_memory_file_and_kafka_sources_decide_alike(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, small_model: RiskModel
) -> None:
    # in memory: everything in the source up front, the stream worker drains it
    source, sink = MemorySource(), MemorySink()
    for rec in sim_records(Simulator(SIM), HOURS):
        source.append(rec.topic, rec.value, rec.key)
    mem_recs = run_records(Engine(CONFIG, model=small_model), iter(source.poll(10**7, 0.0)), sink)
    memory = by_id([r.value for r in sink.topics[Topics().recommendations]])
    assert len(memory) == len(mem_recs)

    # files: what `precovery simulate` writes, read back by `precovery replay`'s source
    write_dataset(Simulator(SIM), HOURS, tmp_path / "history", "parquet")
    out = io.BytesIO()
    report = replay_history(tmp_path / "history", out, CONFIG, small_model)
    files = by_id(out.getvalue().splitlines())

    # Kafka: produced by the simulator's producer, three partitions, one engine each
    simulate_to_kafka(kafka_bootstrap, SIM, HOURS, topics, incidents_topic=None, chunk_s=60.0)
    worker = KafkaStreamWorker(
        StreamConfig(
            kafka_bootstrap,
            f"g-{uuid.uuid4().hex[:8]}",
            topics,
            tmp_path / "ck",
            session_timeout_ms=6_000,
        ),
        engine_factory(CONFIG, small_model),
    )
    worker.run(idle_exit_s=3.0)
    kafka = by_id([r.value for r in read_all(kafka_bootstrap, topics.recommendations)])

    actions = Counter(orjson.loads(v)["action"] for v in memory.values())
    print(f"\n{len(memory)} recommendations {dict(actions)}; {report['events']:,} events")
    assert actions["failover_now"] > 0 and len(actions) >= 3, actions
    assert set(files) == set(memory), set(files) ^ set(memory)
    assert set(kafka) == set(memory), set(kafka) ^ set(memory)
    assert files == memory and kafka == memory  # byte-identical payloads
