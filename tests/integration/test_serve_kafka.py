"""`precovery serve` on the real broker: a worker streams simulated data (with its ops
port), two `precovery serve` replicas answer from health.v1 and recommendations.v1, agree
on cursors, and refuse what they cannot do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from pipelines.embedded.ops import start_ops
from pipelines.embedded.stream import Topics
from pipelines.kafka.partition import engine_factory
from pipelines.kafka.sim import simulate_to_kafka
from pipelines.kafka.stream import KafkaStreamWorker, StreamConfig
from predictor.engine import EngineConfig
from predictor.risk import RiskModel
from predictor.sim import SimConfig
from tests.factories import failure_at
from tests.integration.test_stream_kafka import read_all

PRECOVERY = str(Path(sys.executable).parent / "precovery")
# hosts that go silent: the heartbeat rule recommends whatever the model says
SIM = SimConfig(
    seed=7,
    failures_per_day=48.0,
    scheduled=(
        failure_at(1800.0, lead_s=300.0),
        failure_at(2160.0, "fx-pricing", "database", lead_s=300.0),
    ),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(fn: Callable[[], Any], timeout_s: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


@pytest.fixture
def serve_replicas(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> Iterator[Callable[[int], list[str]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(n: int) -> list[str]:
        urls = []
        for i in range(n):
            port = free_port()
            env = {
                **os.environ,
                "PRECOVERY_KAFKA__HEALTH_TOPIC": topics.health,
                "PRECOVERY_KAFKA__RECOMMENDATIONS_TOPIC": topics.recommendations,
            }
            log = open(tmp_path / f"serve-{i}.log", "wb")  # noqa: SIM115 - closed with the proc
            procs.append(
                subprocess.Popen(
                    [
                        PRECOVERY,
                        "serve",
                        "--bootstrap",
                        kafka_bootstrap,
                        "--port",
                        str(port),
                        "--state-dir",
                        str(tmp_path / f"state-{i}"),
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
            urls.append(f"http://127.0.0.1:{port}")
        return urls

    yield start
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_serve_answers_from_the_topics(
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    small_model: RiskModel,
    serve_replicas: Callable[[int], list[str]],
) -> None:
    simulate_to_kafka(kafka_bootstrap, SIM, 1.0, topics, None)
    worker = KafkaStreamWorker(
        StreamConfig(
            kafka_bootstrap,
            f"g-{uuid.uuid4().hex[:8]}",
            topics,
            tmp_path / "ck",
            session_timeout_ms=6_000,
            max_batch=2000,
        ),
        engine_factory(EngineConfig(), small_model),
    )
    ops = start_ops(worker, "127.0.0.1", 0)
    scraped: dict[str, Any] = {}

    def scrape_while_running() -> None:
        base = f"http://127.0.0.1:{ops.port}"
        wait_for(lambda: worker.counters["published"] > 0, 60, "the worker to publish")
        scraped["ready"] = httpx.get(f"{base}/readyz").status_code
        scraped["healthz"] = httpx.get(f"{base}/healthz").json()
        scraped["metrics"] = httpx.get(f"{base}/metrics").text

    scraper = threading.Thread(target=scrape_while_running)
    scraper.start()
    try:
        worker.run(idle_exit_s=3.0)
    finally:
        scraper.join(70)
        ops.stop()
    # the ops port, while the worker ran
    assert scraped["ready"] == 200 and scraped["healthz"]["worker_alive"] is True
    metrics = scraped["metrics"]
    for name in (
        "precovery_system_health{",
        "precovery_system_risk{",
        "precovery_deliveries_total{",
        "precovery_stage_seconds_bucket{",
        "precovery_worker_records_total{",
        "precovery_input_records_total",
        "precovery_ready 1.0",
    ):
        assert name in metrics, name

    recs = [orjson.loads(r.value) for r in read_all(kafka_bootstrap, topics.recommendations)]
    recs = [r for r in recs if r.get("kind") != "situation_report"]  # not in the API's feed
    health = read_all(kafka_bootstrap, topics.health)
    assert recs and health
    systems = {orjson.loads(r.value)["system"] for r in health}

    a, b = serve_replicas(2)
    for url in (a, b):
        wait_for(lambda url=url: httpx.get(f"{url}/readyz").status_code == 200, 60, f"{url} ready")
    got = httpx.get(f"{a}/v1/systems").json()
    assert {s["system"] for s in got} == systems
    one = sorted(systems)[0]
    detail = httpx.get(f"{a}/v1/systems/{one}")
    assert detail.status_code == 200 and detail.json()["system"] == one
    assert httpx.get(f"{a}/v1/systems/{one}/history").json()
    assert httpx.get(f"{a}/v1/systems/nope").status_code == 404

    rows_a = httpx.get(f"{a}/v1/recommendations", params={"limit": 1000}).json()
    rows_b = httpx.get(f"{b}/v1/recommendations", params={"limit": 1000}).json()
    assert {r["recommendation_id"] for r in rows_a} == {r["recommendation_id"] for r in recs}
    assert [r["cursor"] for r in rows_a] == [r["cursor"] for r in rows_b]  # replicas agree
    # a cursor from one replica resumes on the other, nothing skipped or repeated
    k = len(rows_a) // 2
    rest = httpx.get(
        f"{b}/v1/recommendations", params={"after": rows_a[k]["cursor"], "limit": 1000}
    ).json()
    assert [r["recommendation_id"] for r in rest] == [
        r["recommendation_id"] for r in rows_a[k + 1 :]
    ]
    bad = httpx.get(f"{a}/v1/recommendations", params={"after": "kafka-other:1.2.3"})
    assert bad.status_code == 409 and bad.json()["error"] == "cursor_reset"
    # approvals are taken here too (the flip travels to the workers as a command):
    # one that awaits no approval is refused by name, an unknown id is 404
    not_awaiting = [
        r for r in rows_a if r.get("action") not in ("failover_now", "failover_at_window")
    ]
    if not_awaiting:
        some = not_awaiting[0]["recommendation_id"]
        ans = httpx.post(f"{a}/v1/recommendations/{some}/approve", json={"reason": "test"})
        assert ans.status_code == 409 and ans.json()["reason"] == "not_awaiting_approval", ans.text
    gone = httpx.post(f"{a}/v1/recommendations/nope/approve", json={"reason": "test"})
    assert gone.status_code == 404, gone.text
    score = httpx.post(f"{a}/v1/score", json={"events": []})
    assert score.status_code == 501 and score.json()["error"] == "not_implemented"
    assert "precovery_system_health{" in httpx.get(f"{a}/metrics").text


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            PRECOVERY,
            "serve",
            "--bootstrap",
            "127.0.0.1:1",
            "--host",
            "0.0.0.0",
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert "without API keys" in r.stdout + r.stderr


def test_stream_ops_port(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    """`precovery stream --ops-port` answers /healthz, /readyz and /metrics while it runs."""
    simulate_to_kafka(kafka_bootstrap, SIM, 0.25, topics, None)
    port = free_port()
    env = {
        **os.environ,
        "PRECOVERY_KAFKA__TELEMETRY_TOPIC": topics.telemetry,
        "PRECOVERY_KAFKA__POSITIONS_TOPIC": topics.positions,
        "PRECOVERY_KAFKA__MARKET_TOPIC": topics.market,
        "PRECOVERY_KAFKA__RECOMMENDATIONS_TOPIC": topics.recommendations,
        "PRECOVERY_KAFKA__HEALTH_TOPIC": topics.health,
        "PRECOVERY_KAFKA__DLQ_TOPIC": topics.dlq,
    }
    proc = subprocess.Popen(
        [
            PRECOVERY,
            "stream",
            "--bootstrap",
            kafka_bootstrap,
            "--group",
            f"g-{uuid.uuid4().hex[:8]}",
            "--state-dir",
            str(tmp_path),
            "--no-model",
            "--no-create-topics",
            "--session-timeout-ms",
            "6000",
            "--ops-port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: httpx.get(f"{base}/healthz").json()["status"] == "ok", 60)
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 60, "ready")

        def delivered() -> str | None:
            text = httpx.get(f"{base}/metrics").text
            return text if "precovery_deliveries_total{" in text else None

        text = wait_for(delivered, 60, "deliveries in the metrics")
        assert "precovery_ready 1.0" in text and "precovery_system_health{" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0
