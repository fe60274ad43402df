"""API throughput and latency next to a bare FastAPI endpoint, from one run.

    .venv/bin/python benchmarks/bench_api.py [--copies 10] [--duration 3] [--repeats 3]

A child process runs what the demo runs: a live state over an engine (a simulated fleet of
``--copies`` × the templates, warmed with an hour of history, the baseline model), a
stream worker that keeps feeding it (so the engine lock is contended as in production),
and the app under uvicorn (one worker, uvloop + httptools when installed). The same app
carries two bare endpoints returning pre-serialised bytes of the same size as
``GET /v1/systems/{system}`` and ``GET /v1/systems``; a second server runs the same live
state with API keys on (``Authorization: Bearer``), to show what keys cost. ``wrk``
(``apt-get install wrk``) drives each endpoint at concurrency 1, 10 and 50 for
``--duration`` seconds, ``--repeats`` times, interleaved (every other pass in reverse
order); the table gives medians of req/s and of p50/p99 latency, and each row's share of
the same-size bare endpoint's req/s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def serve(copies: int, feed_period_s: float) -> None:
    """Child: build the live state, start worker and server, print the port, wait."""
    sys.path.insert(0, str(ROOT))
    import orjson
    from fastapi import Response

    from pipelines.embedded.live import LiveState
    from pipelines.embedded.memory import MemorySink, MemorySource
    from pipelines.embedded.stream import StreamWorker, Topics
    from pipelines.training.models import load_model
    from predictor.engine import Engine, EngineConfig
    from predictor.sim import SimConfig, Simulator, telemetry_events
    from serve.app import create_app
    from serve.auth import KeyStore
    from serve.gates import Security
    from tests.chaos.harness import FedWorker, ServerThread

    sim = Simulator(SimConfig(seed=1, copies=copies))
    critical = {(s.name, c.name): c.critical for s in sim.fleet.systems for c in s.components}
    model = load_model(ROOT / "models" / "baseline")
    engine = Engine(
        EngineConfig(), model=model, critical=critical, system_venue=sim.fleet.system_venue
    )
    live = LiveState(engine)
    source, sink, topics = MemorySource(retain=False), MemorySink(max_per_topic=100), Topics()
    for chunk in sim.iter_chunks(1.0, chunk_s=600.0):
        for m in chunk.market:
            source.append(topics.market, orjson.dumps(m), m["venue"].encode())
        for p in chunk.positions:
            source.append(topics.positions, orjson.dumps(p), p["system"].encode())
        source.extend(
            topics.telemetry, [orjson.dumps(e) for e in telemetry_events(chunk.telemetry)]
        )
    StreamWorker(engine, source, sink, lock=live.lock, on_batch=live.on_batch).run(
        poll_timeout_s=0.0, idle_exit=True
    )
    app = create_app(live)
    system = engine.systems[0]
    detail = live.view_json(system) or b""
    listing = live.view_json(None) or b""
    bare_detail = orjson.dumps({"pad": "x" * max(0, len(detail) - 10)})
    bare_list = orjson.dumps({"pad": "x" * max(0, len(listing) - 10)})

    @app.get("/bare/detail")
    async def _bare_detail() -> Response:
        return Response(bare_detail, media_type="application/json")

    @app.get("/bare/list")
    async def _bare_list() -> Response:
        return Response(bare_list, media_type="application/json")

    # The same app with keys on: key check, role, per-key rate limit (high enough never to
    # refuse), allowed hosts, all on the request path.
    store = KeyStore(Path(tempfile.mkdtemp()) / "api-keys.json")
    key = store.create("bench", "read")[1]
    keyed = create_app(
        live,
        security=Security(
            keys=store, allowed_hosts=["127.0.0.1", "localhost"], rate_per_s=1e9, burst=10**9
        ),
    )
    with (
        FedWorker(live, period_s=feed_period_s) as fed,
        ServerThread(app) as server,
        ServerThread(keyed) as keyed_server,
    ):
        print(
            f"PORT {server.port} KEYED {keyed_server.port} KEY {key} SYSTEM {system} "
            f"HOSTS {engine.n_entities} DETAIL {len(detail)} LIST {len(listing)}",
            flush=True,
        )
        sys.stdin.read()  # until the parent closes the pipe
        print(f"BATCHES {fed.batches} EVENTS {fed.events}", flush=True)


def wrk(url: str, conns: int, duration: float, key: str | None = None) -> dict[str, float]:
    auth = ["-H", f"Authorization: Bearer {key}"] if key else []
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{duration:g}s", "--latency", *auth, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": _ms(re.search(r"\s50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"\s99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "non2xx": float(errors.group(1)) if errors else 0.0,
    }


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=10, help="fleet copies (×17 hosts)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    ap.add_argument("--repeats", type=int, default=4, help="even: half in reverse order")
    ap.add_argument("--feed-period", type=float, default=0.05, help="worker poll period, s")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.copies, args.feed_period)
        return
    if shutil.which("wrk") is None:
        sys.exit("bench_api needs wrk: apt-get install -y wrk")
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--copies", str(args.copies)]
        + ["--feed-period", str(args.feed_period)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )
    assert child.stdout is not None and child.stdin is not None
    head = child.stdout.readline().split()
    info = dict(zip(head[::2], head[1::2], strict=True))
    base = f"http://127.0.0.1:{info['PORT']}"
    keyed = f"http://127.0.0.1:{info['KEYED']}"
    system = info["SYSTEM"]
    # (name, url, needs the key, the bare row it is compared with)
    endpoints = [
        ("GET /v1/systems/{system}", f"{base}/v1/systems/{system}", False, "bare detail"),
        ("  same, keys on", f"{keyed}/v1/systems/{system}", True, "bare detail"),
        ("bare detail", f"{base}/bare/detail", False, ""),
        ("GET /v1/systems", f"{base}/v1/systems", False, "bare list"),
        ("  same, keys on", f"{keyed}/v1/systems", True, "bare list"),
        ("bare list", f"{base}/bare/list", False, ""),
    ]
    results: dict[tuple[int, int], list[dict[str, float]]] = {}
    t0 = time.monotonic()
    for rep in range(args.repeats):
        for conns in (1, 10, 50):
            # every other repeat in reverse: on a shared machine a fixed order biases rows
            order = list(enumerate(endpoints))
            for i, (_name, url, needs_key, _vs) in order[:: -1 if rep % 2 else 1]:
                got = wrk(url, conns, args.duration, info["KEY"] if needs_key else None)
                results.setdefault((i, conns), []).append(got)
    child.stdin.close()
    tail = child.stdout.read().split()
    child.wait(timeout=30)
    fed = dict(zip(tail[::2], tail[1::2], strict=True))
    wall = time.monotonic() - t0

    def med(i: int, conns: int, key: str) -> float:
        return statistics.median(r[key] for r in results[(i, conns)])

    print(
        f"\n{info['HOSTS']} hosts; detail {info['DETAIL']} B, list {info['LIST']} B; the worker "
        f"ran {fed.get('BATCHES')} batches ({fed.get('EVENTS')} events) during {wall:.0f} s "
        f"of load; medians of {args.repeats} × {args.duration:g} s wrk runs; keys on = API "
        f"key check, role, per-key rate limit and allowed hosts on every request\n"
    )
    print(f"{'endpoint':<26}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs bare':>9}")
    names = [e[0] for e in endpoints]
    bad = 0.0
    for conns in (1, 10, 50):
        for i, (name, _url, _key, vs) in enumerate(endpoints):
            rps = med(i, conns, "rps")
            ratio = f"{rps / med(names.index(vs), conns, 'rps'):.2f}×" if vs else ""
            print(
                f"{name:<26}{conns:>5}{rps:>10.0f}{med(i, conns, 'p50'):>9.2f}"
                f"{med(i, conns, 'p99'):>9.2f}{ratio:>9}"
            )
            bad += sum(r["non2xx"] for r in results[(i, conns)])
    print(f"\nnon-2xx responses: {bad:.0f}")


if __name__ == "__main__":
    main()
