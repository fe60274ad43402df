"""Chaos on the real broker: a dark system, a lost feed, poison on every input topic.

Each test states what it injects and counts what comes out. Workers run in threads on
the broker that the test command started; telemetry is produced live (event time =
wall time) with sub-second heartbeats, so silence is measured in wall seconds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pipelines.embedded.stream import Topics
from pipelines.kafka.partition import engine_factory
from pipelines.kafka.stream import KafkaStreamWorker, StreamConfig
from predictor.engine import EngineConfig
from predictor.events import parse_ts
from tests.factories import POISON

pytestmark = pytest.mark.chaos

INTERVAL_S = 0.2
MISSES = 3
LIMIT_S = INTERVAL_S * MISSES
HOSTS = {
    0: [("live-sys", "gateway", "l1"), ("live-sys", "risk", "l2")],
    1: [("dark-sys", "gateway", "d1"), ("dark-sys", "matching", "d2")],
}
CONFIG = EngineConfig(heartbeat_interval_s=INTERVAL_S, heartbeat_misses=MISSES, tick_s=INTERVAL_S)


@pytest.fixture
def topics(tmp_topic: Callable[..., str]) -> Topics:
    return Topics(
        telemetry=tmp_topic(partitions=2, prefix="tele"),
        positions=tmp_topic(partitions=2, prefix="pos"),
        market=tmp_topic(partitions=1, prefix="mkt"),
        recommendations=tmp_topic(partitions=2, prefix="rec"),
        health=tmp_topic(partitions=2, configs={"cleanup.policy": "compact"}, prefix="health"),
        dlq=tmp_topic(partitions=2, prefix="dlq"),
    )


def read_all(bootstrap: str, topic: str) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(tps)
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                got.extend(recs)
            if all(consumer.position(tp) >= end for tp, end in ends.items()):
                break
        return got
    finally:
        consumer.close()


class LiveFleet:
    """Produces telemetry in real time, one partition per system, until told otherwise."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        self.topics = topics
        self.reporting = {0: True, 1: True}
        self.last_sent_ms: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            now_ms = int(time.time() * 1000)
            for part, hosts in HOSTS.items():
                if not self.reporting[part]:
                    continue
                for system, component, host in hosts:
                    n += 1
                    ev = {
                        "ts": now_ms,
                        "system": system,
                        "component": component,
                        "host": host,
                        "metrics": {"cpu_pct": 30.0 + n % 7, "mem_pct": 40.0},
                    }
                    self.producer.send(
                        self.topics.telemetry,
                        orjson.dumps(ev),
                        key=system.encode(),
                        partition=part,
                    )
                self.last_sent_ms[part] = now_ms
            self.producer.flush()
            self._stop.wait(INTERVAL_S)

    def __enter__(self) -> LiveFleet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.producer.close()


@contextmanager
def running_workers(
    bootstrap: str, topics: Topics, state: Path, n: int, group: str | None = None, **cfg: Any
) -> Iterator[list[KafkaStreamWorker]]:
    group = group or f"g-{uuid.uuid4().hex[:8]}"
    workers = [
        KafkaStreamWorker(
            StreamConfig(
                bootstrap,
                group,
                topics,
                state,
                session_timeout_ms=6_000,
                poll_timeout_s=0.05,
                fleet_check_s=0.1,
                client_id=f"w{i}",
                **cfg,
            ),
            engine_factory(CONFIG, None),
        )
        for i in range(n)
    ]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        yield workers
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(timeout=30)


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def assigned(workers: list[KafkaStreamWorker]) -> bool:
    return sorted(p for w in workers for p in w.tasks) == [0, 1]


@pytest.mark.parametrize("n_workers", [1, 2], ids=["one-worker", "a-worker-per-partition"])
def test_a_dark_system_gets_failover_now_on_kafka_whatever_the_partitioning(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, n_workers: int
) -> None:
    with (
        LiveFleet(kafka_bootstrap, topics) as fleet,
        running_workers(kafka_bootstrap, topics, tmp_path / "ck", n_workers) as workers,
    ):
        wait_until(lambda: assigned(workers), 60, "partitions assigned")
        time.sleep(3.0)  # both systems report and are processed live
        fleet.reporting[1] = False  # dark-sys's whole partition goes dark
        time.sleep(0.05)
        last_dark_ms = fleet.last_sent_ms[1]
        dark_at = time.monotonic()
        time.sleep(LIMIT_S + 3.0)
    recs = [orjson.loads(r.value) for r in read_all(kafka_bootstrap, topics.recommendations)]
    now = [r for r in recs if r["action"] == "failover_now"]
    assert {r["system"] for r in now} == {"dark-sys"}, recs
    assert {r["component"] for r in now} == {"gateway", "matching"}
    for r in now:
        assert r["reasons"][0]["feature"] == "heartbeat_missed_s"
        lateness_s = (parse_ts(r["issued_at"]) - last_dark_ms) / 1000.0
        # within misses × interval, plus one tick, plus one fleet check and a poll
        assert LIMIT_S < lateness_s <= LIMIT_S + INTERVAL_S + 0.5, lateness_s
    print(
        f"\ndark system: failover_now for {len(now)} components, "
        f"{min((parse_ts(r['issued_at']) - last_dark_ms) for r in now) / 1000:.2f} s of event "
        f"time after its last message (limit {LIMIT_S:.1f} s); test ran "
        f"{time.monotonic() - dark_at:.1f} s after it went dark"
    )


def test_all_input_lost_is_telemetry_lost_not_an_outage(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    with running_workers(
        kafka_bootstrap, topics, tmp_path / "ck", 1, feed_lost_after_s=1.5
    ) as workers:
        with LiveFleet(kafka_bootstrap, topics):
            wait_until(lambda: assigned(workers), 60, "partitions assigned")
            time.sleep(2.5)
        assert not workers[0].feed.lost
        wait_until(lambda: workers[0].feed.lost, 10, "telemetry_lost")
        time.sleep(2.0)  # well past the heartbeat limit: nobody may be blamed
        assert "telemetry_lost" in workers[0].feed.conditions()
        assert any("telemetry_lost" in r for r in workers[0].feed.not_ready())
    recs = [orjson.loads(r.value) for r in read_all(kafka_bootstrap, topics.recommendations)]
    assert [r for r in recs if r["action"] == "failover_now"] == []
    health = [orjson.loads(r.value) for r in read_all(kafka_bootstrap, topics.health)]
    flagged = {h["system"] for h in health if "telemetry_lost" in h.get("conditions", [])}
    assert flagged == {"live-sys", "dark-sys"}


def test_poison_on_every_input_topic_goes_to_the_dlq_and_the_worker_goes_on(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    injected: Counter[str] = Counter()
    t0 = int(time.time() * 1000)

    def good(i: int) -> bytes:
        return orjson.dumps(
            {
                "ts": t0 + i * 100,
                "system": "live-sys",
                "component": "gateway",
                "host": "l1",
                "metrics": {"cpu_pct": 30.0},
            }
        )

    for _name, raw in sorted(POISON.items()):
        for topic, part in ((topics.telemetry, 0), (topics.positions, 0), (topics.market, 0)):
            producer.send(topic, raw, key=b"live-sys", partition=part)
            injected[topic] += 1
    for i in range(50):
        producer.send(topics.telemetry, good(i), key=b"live-sys", partition=0)
    producer.flush()
    ck, group = tmp_path / "ck", f"g-{uuid.uuid4().hex[:8]}"

    def past_the_poison(w: KafkaStreamWorker) -> bool:
        task = w.tasks.get(0)
        return (
            task is not None
            and task.telemetry_offset == len(POISON) + 50
            and task.positions_offset == len(POISON)
        )

    for attempt in range(2):  # a restart must not crash on what the first run saw
        with running_workers(kafka_bootstrap, topics, ck, 1, group=group) as workers:
            w = workers[0]
            wait_until(lambda w=w: past_the_poison(w), 60, "offsets past the poison")
            assert w.feed.worker_alive
            assert w.tasks[0].engine.counters["events"] == 50
        if attempt == 0:
            first = read_all(kafka_bootstrap, topics.dlq)
    producer.close()
    dlq = read_all(kafka_bootstrap, topics.dlq)
    by_topic = Counter(dict(r.headers)["dlq.source.topic"].decode() for r in first)
    assert by_topic == injected, by_topic
    for r in first:
        h = dict(r.headers)
        assert h["dlq.reason"].decode() in {"malformed_json", "not_an_object"}
        assert r.value in POISON.values()
    # the restart resumed past telemetry and positions; market is re-read whole by design
    again = Counter(dict(r.headers)["dlq.source.topic"].decode() for r in dlq[len(first) :])
    assert again[topics.telemetry] == 0 and again[topics.positions] == 0
    print(f"\npoison: injected {dict(injected)}; dead-lettered {dict(by_topic)}; 50 good kept")
