"""Throughput and latency of the stream through a real Kafka broker, one worker.

    line=$(scripts/kafka start | tail -n1); export "$line"
    .venv/bin/python benchmarks/bench_kafka.py --hours 2 --copies 10 --rate 3000

1. Produces ``hours`` of a ``copies``-times fleet as fast as possible (produce rate).
2. Raw consume rate: a bare kafka-python consumer reads the telemetry topic, no decoding.
3. End to end: one in-process :class:`KafkaStreamWorker` reads the same topics from the
   start (decode, engine, publish with acks, checkpoints, commits): events/s.
4. Latency at a fixed offered load: fresh topics, a ``precovery simulate-kafka --rate R``
   subprocess produces while the worker runs; for each output, its CreateTime minus the
   CreateTime of the input that triggered it (header ``precovery.src_ts_ms``): p50/p99
   for recommendations and for health records (many more of those).

Prints one JSON object. Topics are deleted afterwards.
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
from pipelines.kafka_io import ensure_topics
from pipelines.kafka_sim import simulate_to_kafka
from pipelines.kafka_stream import KafkaStreamWorker, StreamConfig
from pipelines.models import BASELINE_DIR, train_on_simulation
from pipelines.partition import engine_factory
from pipelines.stream import Topics
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


def raw_consume(bootstrap: str, topic: str) -> dict[str, float]:
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
    return {
        "records": n,
        "seconds": round(dt, 2),
        "events_per_s": round(n / dt),
        "mb_per_s": round(nbytes / dt / 1e6, 1),
    }


def end_to_end(
    bootstrap: str, t: Topics, model: RiskModel | None, state: Path, idle_s: float = 2.0
) -> dict[str, Any]:
    worker = KafkaStreamWorker(
        StreamConfig(
            bootstrap, f"bench-{uuid.uuid4().hex[:6]}", t, state, checkpoint_interval_s=5.0
        ),
        engine_factory(EngineConfig(), model),
    )
    t0 = time.perf_counter()
    worker.run(idle_exit_s=idle_s)
    dt = time.perf_counter() - t0 - idle_s
    n = worker.counters["polled"]
    return {
        "records": n,
        "seconds": round(dt, 2),
        "events_per_s": round(n / dt),
        "published": worker.counters["published"],
        "checkpoints": worker.counters["checkpoints"],
        "note": "seconds include the group join and the final checkpoint",
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--rate", type=float, default=3000.0, help="offered load for latency")
    ap.add_argument("--latency-hours", type=float, default=0.5)
    ap.add_argument("--model", type=Path, default=BASELINE_DIR)
    ap.add_argument("--train-hours", type=float, default=12.0, help="if --model is unusable")
    args = ap.parse_args()
    if not args.bootstrap:
        sys.exit("set KAFKA_BOOTSTRAP_SERVERS or --bootstrap")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("pipelines").setLevel(logging.INFO)
    try:
        model: RiskModel | None = RiskModel.load(args.model)
        engine_factory(EngineConfig(), model)(None)
    except (ModelError, OSError) as exc:
        logger.warning("model %s unusable (%s): training a small one", args.model, exc)
        model, _ = train_on_simulation(hours=args.train_hours)
    run = uuid.uuid4().hex[:6]
    p1, p2 = f"bench-{run}-", f"bench-lat-{run}-"
    t1, t2 = _topics(p1), _topics(p2)
    result: dict[str, Any] = {"model": None if model is None else model.version}
    try:
        _create(args.bootstrap, t1, args.partitions)
        _create(args.bootstrap, t2, args.partitions)
        sim = SimConfig(seed=7, failures_per_day=96.0, copies=args.copies)
        sent = simulate_to_kafka(args.bootstrap, sim, args.hours, t1, incidents_topic=None)
        result["produce"] = {
            "records": sent.telemetry,
            "seconds": round(sent.seconds, 2),
            "events_per_s": round(sent.telemetry / sent.seconds),
        }
        with tempfile.TemporaryDirectory() as tmp:
            result["raw_consume"] = raw_consume(args.bootstrap, t1.telemetry)
            result["end_to_end"] = end_to_end(args.bootstrap, t1, model, Path(tmp) / "a")
            result["latency"] = latency(
                args.bootstrap,
                t2,
                model,
                Path(tmp) / "b",
                args.rate,
                args.latency_hours,
                args.copies,
                p2,
            )
    finally:
        admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
        try:
            mine = [x for x in admin.list_topics() if x.startswith((p1, p2))]
            admin.delete_topics(mine, timeout_ms=30_000, raise_errors=False)
        finally:
            admin.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
