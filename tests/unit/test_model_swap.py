"""The Kafka worker swaps its risk model between two polls, for every partition."""

from __future__ import annotations

from pathlib import Path

from pipelines.embedded.memory import MemorySink
from pipelines.kafka.partition import PartitionTask, engine_factory
from pipelines.kafka.stream import KafkaStreamWorker, StreamConfig
from pipelines.training.models import BASELINE_DIR, load_model
from predictor.engine import EngineConfig


def test_the_worker_applies_a_new_model_before_its_next_poll(tmp_path: Path) -> None:
    model = load_model(BASELINE_DIR)
    worker = KafkaStreamWorker(
        # No broker is reached: run_once without a consumer only waits a poll's time.
        StreamConfig(
            bootstrap="127.0.0.1:1", group_id="g", checkpoint_dir=tmp_path, poll_timeout_s=0.01
        ),
        engine_factory(EngineConfig(), None),
        sink=MemorySink(),
    )
    try:
        for p in (0, 1):
            worker.tasks[p] = PartitionTask(p, worker.make_engine, worker.topics)
        worker.set_model(model)
        assert all(t.engine.model is None for t in worker.tasks.values())  # not mid-batch
        assert worker.run_once() == 0
        assert all(t.engine.model is model for t in worker.tasks.values())
        worker.set_model(None)
        worker.run_once()
        assert all(t.engine.model is None for t in worker.tasks.values())
    finally:
        worker.close()
