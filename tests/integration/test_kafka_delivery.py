"""``precovery deliver`` on the real broker: recommendations.v1 is the outbox.

The orchestrator (the reference one, under uvicorn on 127.0.0.1) is down when the
deliverer starts, comes up later; every record reaches it exactly once, in order per
system; a second deliverer of the same group started afterwards finds nothing to re-send.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from kafka import KafkaProducer

from pipelines.kafka.delivery import KafkaDeliverer
from pipelines.outbound.orchestrator import DeliveryConfig
from serve.orchestrator import create_orchestrator
from tests.unit.test_delivery import rec

SYSTEMS = ("eq-oms", "fx-pricing", "md-feed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def orchestrator_later(tmp_path: Path) -> Iterator[Callable[[int], None]]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(port: int) -> None:
        app = create_orchestrator(tmp_path / "accepted.jsonl")
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        servers.append((server, thread))

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def accepted(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "accepted.jsonl"
    return [orjson.loads(x) for x in log.read_bytes().splitlines()] if log.exists() else []


def test_down_then_back_exactly_once_in_order_per_system(
    kafka_bootstrap: str,
    tmp_topic: Callable[..., str],
    tmp_path: Path,
    orchestrator_later: Callable[[int], None],
) -> None:
    topic = tmp_topic(partitions=3, prefix="rec")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    sent = []
    for epoch in range(1, 11):
        for system in SYSTEMS:
            r = rec(system, epoch, "prepare_standby" if epoch % 2 else "watch")
            producer.send(
                topic,
                orjson.dumps(r),
                key=system.encode(),
                headers=[("idempotency-key", r["recommendation_id"].encode())],
            )
            sent.append(r["recommendation_id"])
    producer.flush()
    producer.close()
    port = free_port()
    cfg = DeliveryConfig(
        f"http://127.0.0.1:{port}/v1/recommendations", backoff_base_s=0.2, backoff_max_s=1.0
    )
    group = f"deliver-{port}"
    d = KafkaDeliverer(kafka_bootstrap, topic, cfg, group_id=group, session_timeout_ms=6_000)
    worker = threading.Thread(target=d.run, daemon=True)
    worker.start()
    time.sleep(4.0)  # the orchestrator is down: nothing gets through
    assert accepted(tmp_path) == [] and d.counts["failures"] > 0
    orchestrator_later(port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(accepted(tmp_path)) < len(sent):
        time.sleep(0.2)
    d.stop()
    worker.join(timeout=30)
    got = accepted(tmp_path)
    ids = [a["recommendation_id"] for a in got]
    assert sorted(ids) == sorted(sent) and len(ids) == len(set(ids))
    for system in SYSTEMS:
        assert [a["epoch"] for a in got if a["system"] == system] == list(range(1, 11))
    assert d.counts["delivered"] == len(sent) and d.counts["duplicates"] == 0
    # a restart of the group finds every offset committed: nothing is sent again
    again = KafkaDeliverer(kafka_bootstrap, topic, cfg, group_id=group, session_timeout_ms=6_000)
    again.run(idle_exit_s=3.0)
    assert again.counts["attempts"] == 0
    print(f"\n{len(sent)} recommendations: {dict(d.counts)}")
