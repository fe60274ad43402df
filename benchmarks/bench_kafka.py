"""Throughput and latency of the stream through a real Kafka broker, one worker, per client.

    line=$(scripts/kafka start | tail -n1); export "$line"
    .venv/bin/python benchmarks/bench_kafka.py --hours 1 --copies 10 --repeats 3

1. Produces ``hours`` of a ``copies``-times fleet as fast as possible (produce rate).
2. For each client (kafka-python, confluent) and each of ``repeats`` rounds, in turn:
   a raw consume (a bare consumer of that client reads the telemetry topic, values
   touched, no decoding), for kafka-python also the same read through the project's
   adapter (record batches read as columns: ``raw_columnar``, the consume half of end to
   end on its own), then end to end (one in-process :class:`KafkaStreamWorker` on
   that client reads the same topics from the start: decode, engine, publish with acks,
   checkpoints, commits). The ratio end to end / raw is taken within each round (same
   client, same minute), then the median over the rounds.
3. Latency at a fixed offered load, per client: fresh topics, a ``precovery simulate-kafka
   --rate R`` subprocess produces while the worker runs; for each output, its CreateTime
   minus the CreateTime of the input that triggered it (header ``precovery.src_ts_ms``):
   p50/p99 for recommendations and for health records (many more of those).

Prints progress to stderr and one JSON object to stdout. Topics are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient

from pipelines.driver import SRC_TS_HEADER
from pipelines.embedded.stream import Topics
from pipelines.kafka.adapter import TP
from pipelines.kafka.client_python import KafkaPythonConsumer, assigned_consumer, ensure_topics
from pipelines.kafka.partition import engine_factory
from pipelines.kafka.sim import simulate_to_kafka
from pipelines.kafka.stream import KafkaStreamWorker, StreamConfig
from pipelines.training.models import BASELINE_DIR, load_model, train_on_simulation
from predictor.engine import EngineConfig
from predictor.errors import ModelError
from predictor.risk import RiskModel
from predictor.sim import SimConfig

logger = logging.getLogger("bench_kafka")


def _topics(prefix: str) -> Topics:
    return Topics(
        *(
            prefix + t
            for t in (
                "telemetry.v1",
                "positions.v1",
                "market.v1",
                "recommendations.v1",
                "health.v1",
                "telemetry.dlq.v1",
            )
        )
    )


def _create(bootstrap: str, t: Topics, partitions: int) -> None:
    ensure_topics(
        bootstrap,
        {
            "telemetry": t.telemetry,
            "positions": t.positions,
            "market": t.market,
            "recommendations": t.recommendations,
            "health": t.health,
            "dlq": t.dlq,
        },
        partitions=partitions,
    )


def _rate(n: int, nbytes: int, dt: float) -> dict[str, float]:
    """A consume's figures: ``n`` records of ``nbytes`` value bytes in ``dt`` seconds."""
    return {
        "records": n,
        "seconds": round(dt, 2),
        "events_per_s": round(n / dt),
        "mb_per_s": round(nbytes / dt / 1e6, 1),
    }


def raw_consume(bootstrap: str, topic: str, client: str = "kafka-python") -> dict[str, float]:
    """A bare consumer of ``client`` reads ``topic`` from the start: events/s, MB/s."""
    if client == "confluent":
        return _raw_confluent(bootstrap, topic)
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or ()]
        c.assign(tps)
        c.seek_to_beginning()
        total = sum(c.end_offsets(tps).values())
        n, nbytes = 0, 0
        t0 = time.perf_counter()
        while n < total:
            for recs in c.poll(timeout_ms=1000, max_records=5000).values():
                n += len(recs)
                nbytes += sum(len(r.value) for r in recs)
        dt = time.perf_counter() - t0
    finally:
        c.close()
    return _rate(n, nbytes, dt)


def raw_columnar(bootstrap: str, topic: str) -> dict[str, float]:
    """kafka-python read through the project's adapter, whose fetcher reads record batches
    as columns (pipelines/kafka/record_batches.py): the consume half of end to end alone."""
    c = KafkaPythonConsumer(assigned_consumer(bootstrap, topic))
    assert c.columnar, "the columnar reader did not install"
    try:
        tps = [TP(topic, p) for p in c.partitions_for(topic)]
        total = sum(c.end_offsets(tps).values())
        n, nbytes = 0, 0
        t0 = time.perf_counter()
        while n < total:
            for f in c.poll(1.0, 5000):
                n += len(f)
                nbytes += sum(len(v) for v in f.values if v is not None)
        dt = time.perf_counter() - t0
    finally:
        c.close()
    return _rate(n, nbytes, dt)


def _raw_confluent(bootstrap: str, topic: str) -> dict[str, float]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer
    from confluent_kafka import TopicPartition as CTP

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-raw-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    try:
        parts = sorted(c.list_topics(topic, timeout=30).topics[topic].partitions)
        total = sum(
            c.get_watermark_offsets(CTP(topic, p), timeout=30, cached=False)[1] for p in parts
        )
        c.assign([CTP(topic, p, OFFSET_BEGINNING) for p in parts])
        n, nbytes = 0, 0
        t0 = time.perf_counter()
        while n < total:
            for m in c.consume(num_messages=5000, timeout=1.0):
                if m.error() is None:
                    n += 1
                    nbytes += len(m.value())
        dt = time.perf_counter() - t0
    finally:
        c.close()
    return _rate(n, nbytes, dt)


def end_to_end(
    bootstrap: str,
    t: Topics,
    model: RiskModel | None,
    state: Path,
    idle_s: float = 2.0,
    client: str = "kafka-python",
) -> dict[str, Any]:
    worker = KafkaStreamWorker(
        StreamConfig(
            bootstrap,
            f"bench-{uuid.uuid4().hex[:6]}",
            t,
            state,
            checkpoint_interval_s=5.0,
            client=client,
        ),
        engine_factory(EngineConfig(), model),
    )
    # The rate is taken from the first records polled to the last: the group join (which
    # differs between clients: librdkafka's rebalance takes longer) is not throughput.
    seen: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        last = 0
        while not done.is_set():
            n = worker.counters["polled"]
            if n != last:
                seen.append((time.perf_counter(), n))
                last = n
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    worker.run(idle_exit_s=idle_s)
    wall = time.perf_counter() - t0 - idle_s
    done.set()
    sampler.join()
    n = worker.counters["polled"]
    (t_first, n_first), (t_last, n_last) = seen[0], seen[-1]
    dt = t_last - t_first
    return {
        "records": n,
        "seconds": round(dt, 2),
        "events_per_s": round((n_last - n_first) / dt),
        "wall_seconds_with_join": round(wall, 2),
        "published": worker.counters["published"],
        "checkpoints": worker.counters["checkpoints"],
        "note": "events/s from the first poll with records to the last (join excluded)",
    }


def _latencies(bootstrap: str, topic: str) -> list[float]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    out: list[float] = []
    try:
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or ()]
        c.assign(tps)
        c.seek_to_beginning()
        total = sum(c.end_offsets(tps).values())
        seen = 0
        deadline = time.monotonic() + 60
        while seen < total and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                seen += len(recs)
                for r in recs:
                    src = dict(r.headers or []).get(SRC_TS_HEADER)
                    if src is not None:
                        out.append(r.timestamp - int(src))
    finally:
        c.close()
    return out


def _pcts(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"n": 0}
    a = np.asarray(xs, dtype=float)
    return {
        "n": len(xs),
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


def latency(
    bootstrap: str,
    t: Topics,
    model: RiskModel | None,
    state: Path,
    rate: float,
    hours: float,
    copies: int,
    prefix: str,
    client: str = "kafka-python",
) -> dict[str, Any]:
    precovery = str(Path(sys.executable).parent / "precovery")
    worker = KafkaStreamWorker(
        StreamConfig(
            bootstrap,
            f"bench-lat-{uuid.uuid4().hex[:6]}",
            t,
            state,
            poll_timeout_s=0.05,
            checkpoint_interval_s=5.0,
            client=client,
        ),
        engine_factory(EngineConfig(), model),
    )
    prod = subprocess.Popen(
        [
            precovery,
            "simulate-kafka",
            bootstrap,
            "--hours",
            str(hours),
            "--copies",
            str(copies),
            "--rate",
            str(rate),
            "--topic-prefix",
            prefix,
            "--failures-per-day",
            "96",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(state.parent / "producer.log", "wb"),  # noqa: SIM115
        env=os.environ.copy(),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        prod.wait(timeout=3600)
        last, still = -1, 0.0
        while still < 3.0:  # drained: nothing polled for 3 s
            time.sleep(0.5)
            n = worker.counters["polled"]
            still = still + 0.5 if n == last else 0.0
            last = n
    finally:
        if prod.poll() is None:
            prod.kill()
        worker.stop()
        thread.join(timeout=60)
    if prod.returncode:
        logger.warning(
            "producer failed (%s): %s",
            prod.returncode,
            (state.parent / "producer.log").read_text()[-2000:],
        )
    return {
        "offered_events_per_s": rate,
        "worker": dict(worker.counters),
        "recommendations": _pcts(_latencies(bootstrap, t.recommendations)),
        "health": _pcts(_latencies(bootstrap, t.health)),
    }


def _median(xs: list[float]) -> float:
    return float(np.median(np.asarray(xs, dtype=float)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of raw + end to end")
    ap.add_argument("--clients", default="kafka-python,confluent")
    ap.add_argument("--rate", type=float, default=3000.0, help="offered load for latency")
    ap.add_argument("--latency-hours", type=float, default=0.5)
    ap.add_argument("--model", type=Path, default=BASELINE_DIR)
    ap.add_argument("--train-hours", type=float, default=12.0, help="if --model is unusable")
    args = ap.parse_args()
    if not args.bootstrap:
        sys.exit("set KAFKA_BOOTSTRAP_SERVERS or --bootstrap")
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logger.setLevel(logging.INFO)
    try:
        model: RiskModel | None = load_model(args.model)
        engine_factory(EngineConfig(), model)(None)
    except (ModelError, OSError) as exc:
        logger.warning("model %s unusable (%s): training a small one", args.model, exc)
        model, _ = train_on_simulation(hours=args.train_hours)
    run = uuid.uuid4().hex[:6]
    p1 = f"bench-{run}-"
    t1 = _topics(p1)
    result: dict[str, Any] = {"model": None if model is None else model.version}
    try:
        _create(args.bootstrap, t1, args.partitions)
        sim = SimConfig(seed=7, failures_per_day=96.0, copies=args.copies)
        logger.info("producing %.1f h of a %d-copy fleet ...", args.hours, args.copies)
        sent = simulate_to_kafka(args.bootstrap, sim, args.hours, t1, incidents_topic=None)
        result["produce"] = {
            "records": sent.telemetry,
            "seconds": round(sent.seconds, 2),
            "events_per_s": round(sent.telemetry / sent.seconds),
        }
        rounds: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.repeats):
                for c in clients:
                    raw = raw_consume(args.bootstrap, t1.telemetry, c)
                    e2e = end_to_end(args.bootstrap, t1, model, Path(tmp) / f"{c}-{r}", client=c)
                    ratio = e2e["events_per_s"] / raw["events_per_s"]
                    got = {"raw": raw, "end_to_end": e2e, "ratio": round(ratio, 3)}
                    extra = ""
                    if c == "kafka-python":  # the adapter's own read, for the reader
                        col = raw_columnar(args.bootstrap, t1.telemetry)
                        got["raw_columnar"] = col
                        got["ratio_to_columnar"] = round(
                            e2e["events_per_s"] / col["events_per_s"], 3
                        )
                        extra = f"; columnar read {col['events_per_s']} ev/s"
                    rounds[c].append(got)
                    logger.info(
                        "round %d %s: raw %d ev/s, end to end %d ev/s (%.2f)%s",
                        r + 1,
                        c,
                        raw["events_per_s"],
                        e2e["events_per_s"],
                        ratio,
                        extra,
                    )
            result["throughput"] = {
                c: {
                    "raw_events_per_s_median": _median(
                        [x["raw"]["events_per_s"] for x in rounds[c]]
                    ),
                    "end_to_end_events_per_s_median": _median(
                        [x["end_to_end"]["events_per_s"] for x in rounds[c]]
                    ),
                    "ratio_median": _median([x["ratio"] for x in rounds[c]]),
                    **(
                        {
                            "raw_columnar_events_per_s_median": _median(
                                [x["raw_columnar"]["events_per_s"] for x in rounds[c]]
                            ),
                            "ratio_to_columnar_median": _median(
                                [x["ratio_to_columnar"] for x in rounds[c]]
                            ),
                        }
                        if c == "kafka-python"
                        else {}
                    ),
                    "rounds": rounds[c],
                }
                for c in clients
            }
            result["latency"] = {}
            for c in clients:
                p2 = f"bench-lat-{run}-{c}-"
                t2 = _topics(p2)
                _create(args.bootstrap, t2, args.partitions)
                logger.info("latency at %.0f events/s offered, %s ...", args.rate, c)
                result["latency"][c] = latency(
                    args.bootstrap,
                    t2,
                    model,
                    Path(tmp) / f"lat-{c}",
                    args.rate,
                    args.latency_hours,
                    args.copies,
                    p2,
                    client=c,
                )
    finally:
        admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
        try:
            mine = [x for x in admin.list_topics() if x.startswith((p1, f"bench-lat-{run}-"))]
            admin.delete_topics(mine, timeout_ms=30_000, raise_errors=False)
        finally:
            admin.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
