"""Chaos on the HTTP API of a real server fed by a live stream worker.

- 200 event-stream clients at once, then all cut off mid-stream: the server stays ready,
  its loop's tasks, its connections and its threads come back to the baseline, memory
  does not grow past a bound.
- 2,000 requests at concurrency 50 over every endpoint, valid and invalid: no 5xx, no
  dropped connection, every answer of the expected status and schema, still ready.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import psutil
import pytest
from pydantic import TypeAdapter

from pipelines.embedded.feed import FeedMonitor
from pipelines.embedded.live import LiveState
from predictor.risk import RiskModel
from serve.app import create_app
from serve.schemas import (
    ErrorBody,
    Readiness,
    Recommendation,
    ScoreResponse,
    SystemDetail,
    SystemSummary,
)
from tests.api.support import build_live
from tests.chaos.harness import FedWorker, ServerThread
from tests.factories import SimStream, telemetry_event

pytestmark = pytest.mark.chaos

N_SSE = 200
N_REQUESTS = 2000
CONCURRENCY = 50
RSS_BOUND = 64 * 2**20


@pytest.fixture(scope="module")
def chaos_live(api_stream: SimStream, small_model: RiskModel) -> LiveState:
    live = build_live(api_stream, small_model)
    live.feed = FeedMonitor(lost_after_s=10.0, max_lag=100_000)
    return live


@pytest.fixture(scope="module")
def fed(chaos_live: LiveState) -> Iterator[FedWorker]:
    with FedWorker(chaos_live, period_s=0.2) as worker:
        yield worker


@pytest.fixture(scope="module")
def server(chaos_live: LiveState, fed: FedWorker) -> Iterator[ServerThread]:
    app = create_app(chaos_live, max_body_bytes=64 * 1024, sse_keepalive_s=0.5)
    with ServerThread(app, timeout_keep_alive=30) as srv:
        yield srv


def _until(check: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


def _ready(server: ServerThread) -> httpx.Response:
    return httpx.get(f"{server.url}/readyz", timeout=10)


def test_ready_while_fed(server: ServerThread, fed: FedWorker) -> None:
    assert _until(lambda: fed.batches > 3)
    r = _ready(server)
    assert r.status_code == 200, r.json()


def test_200_sse_clients_then_abrupt_disconnect(server: ServerThread, fed: FedWorker) -> None:
    assert _ready(server).status_code == 200
    gc.collect()
    base_tasks, base_conns = server.tasks(), server.connections()
    base_threads = threading.active_count()
    rss0 = psutil.Process().memory_info().rss

    got: Counter[str] = Counter()

    async def one(client: httpx.AsyncClient, i: int, all_in: asyncio.Event) -> None:
        async with client.stream("GET", "/v1/recommendations/stream", params={"max_s": 600}) as r:
            assert r.status_code == 200
            got["open"] += 1
            seen = False
            async for chunk in r.aiter_bytes():
                if not seen and (b"keep-alive" in chunk or b"event: " in chunk):
                    seen = True
                    got["heard"] += 1
                if seen and all_in.is_set():
                    await asyncio.sleep(3600)  # hold the stream until cancelled

    async def run() -> dict[str, int]:
        all_in = asyncio.Event()
        limits = httpx.Limits(max_connections=N_SSE + 10, max_keepalive_connections=0)
        client = httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30)
        tasks = [asyncio.create_task(one(client, i, all_in)) for i in range(N_SSE)]
        deadline = time.monotonic() + 60
        while got["heard"] < N_SSE and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            for t in tasks:
                if t.done() and t.exception():
                    raise t.exception()  # type: ignore[misc]
        all_in.set()
        during = {
            "heard": got["heard"],
            "conns": await asyncio.to_thread(server.connections),
            "tasks": await asyncio.to_thread(server.tasks),
            "threads": threading.active_count(),
            "ready": (await client.get("/readyz")).status_code,
            "systems": (await client.get("/v1/systems")).status_code,
        }
        for t in tasks:  # cut every stream off mid-flight
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
        return during

    during = asyncio.run(run())
    assert during["heard"] == N_SSE, during
    assert during["conns"] >= N_SSE, during
    # no thread per stream: the SSE generators wait on the loop, not in a thread pool
    assert during["threads"] <= base_threads + 5, (during, base_threads)
    assert during["ready"] == 200 and during["systems"] == 200, during

    assert _until(lambda: server.connections() <= base_conns, 5.0), server.connections()
    assert _until(lambda: server.tasks() <= base_tasks, 5.0), (server.tasks(), base_tasks)
    assert _until(lambda: threading.active_count() <= base_threads + 2, 5.0)
    gc.collect()
    grown = psutil.Process().memory_info().rss - rss0
    assert grown < RSS_BOUND, f"RSS grew {grown / 2**20:.1f} MiB"
    assert _ready(server).status_code == 200
    print(
        f"\nSSE chaos: {N_SSE} opened and heard, {during['conns']} connections during, "
        f"tasks {base_tasks}->{during['tasks']}->{server.tasks()}, "
        f"threads {base_threads}->{during['threads']}->{threading.active_count()}, "
        f"RSS +{grown / 2**20:.1f} MiB"
    )


POISON = [
    b'{"events":[null]}',
    b"[1]",
    b"[[1]]",
    b'{"events": 5}',
    b"[" * 1100 + b"]" * 1100,
    b'{"events":' + b"[" * 5000,
    b"{broken",
    b'{"events":[{"ts":1,"system":"s","component":"c","host":"h","metrics":{"cpu_pct":NaN}}]}',
]


def _request_mix(live: LiveState, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    systems = live.engine.systems
    keys = list(live.engine.registry.keys)
    plan: list[tuple[str, dict[str, Any]]] = []
    kinds = itertools.cycle(
        [
            "systems",
            "system",
            "unknown_system",
            "recommendations",
            "status",
            "metrics",
            "healthz",
            "readyz",
            "score_valid",
            "score_invalid",
        ]
    )
    for _ in range(N_REQUESTS):
        kind = next(kinds)
        arg: dict[str, Any] = {}
        if kind == "system":
            arg["system"] = rng.choice(systems)
        elif kind == "score_valid":
            # A host the feeder does not feed: its what-if cannot fall behind the live
            # stream (a fed host's can, under load: the stream moves 50 s per second, and
            # an event older than the host's latest is rightly out_of_order).
            system, component, host = rng.choice(keys)
            arg["key"] = (system, component, f"{host}-whatif")
        elif kind == "score_invalid":
            arg["body"] = rng.choice(POISON)
        plan.append((kind, arg))
    rng.shuffle(plan)
    return plan


EXPECT = {
    "systems": 200,
    "system": 200,
    "unknown_system": 404,
    "recommendations": 200,
    "status": 200,
    "metrics": 200,
    "healthz": 200,
    "readyz": 200,
    "score_valid": 200,
    "score_invalid": 422,
}


def test_2000_requests_at_concurrency_50(
    server: ServerThread, fed: FedWorker, chaos_live: LiveState
) -> None:
    plan = _request_mix(chaos_live, random.Random(7))
    summaries = TypeAdapter(list[SystemSummary])
    recs = TypeAdapter(list[Recommendation])
    statuses: Counter[tuple[str, int]] = Counter()
    errors: list[str] = []
    dropped: list[str] = []

    async def send(client: httpx.AsyncClient, kind: str, arg: dict[str, Any]) -> None:
        if kind == "systems":
            r = await client.get("/v1/systems")
        elif kind == "system":
            r = await client.get(f"/v1/systems/{arg['system']}")
        elif kind == "unknown_system":
            r = await client.get("/v1/systems/no-such-system")
        elif kind == "recommendations":
            r = await client.get("/v1/recommendations", params={"limit": 50})
        elif kind in ("status", "metrics", "healthz", "readyz"):
            path = {"status": "/v1/status", "metrics": "/metrics"}.get(kind, f"/{kind}")
            r = await client.get(path)
        elif kind == "score_valid":
            wm = chaos_live.engine.watermark_ms or 0
            # Ahead of the stream (it moves 50 s of event time per wall second) but within
            # the future limit (300 s); odd milliseconds never hit the feeder's 10 s grid.
            ev = telemetry_event(wm + 150_007, *arg["key"], {"cpu_pct": 41.0, "mem_pct": 40.0})
            r = await client.post("/v1/score", json={"events": [ev]})
        else:
            r = await client.post(
                "/v1/score", content=arg["body"], headers={"content-type": "application/json"}
            )
        statuses[(kind, r.status_code)] += 1
        if r.status_code != EXPECT[kind]:
            errors.append(f"{kind}: {r.status_code} {r.text[:200]}")
            return
        assert r.headers.get("x-request-id")
        if kind == "systems":
            summaries.validate_python(r.json())
        elif kind == "system":
            SystemDetail.model_validate(r.json())
        elif kind == "recommendations":
            recs.validate_python(r.json())
        elif kind == "readyz":
            Readiness.model_validate(r.json())
        elif kind == "score_valid":
            ScoreResponse.model_validate(r.json())
        elif kind in ("unknown_system", "score_invalid"):
            body = ErrorBody.model_validate(r.json())
            assert body.request_id == r.headers["x-request-id"]
        elif kind == "metrics":
            assert "precovery_ready 1.0" in r.text
        elif kind == "status":
            assert orjson.loads(r.content)["ready"] is True
        elif kind == "healthz":
            assert r.json()["status"] == "ok"

    async def run() -> float:
        sem = asyncio.Semaphore(CONCURRENCY)
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:

            async def guarded(kind: str, arg: dict[str, Any]) -> None:
                async with sem:
                    try:
                        await send(client, kind, arg)
                    except httpx.TransportError as exc:
                        dropped.append(f"{kind}: {type(exc).__name__}: {exc}")

            t0 = time.perf_counter()
            await asyncio.gather(*(guarded(k, a) for k, a in plan))
            return time.perf_counter() - t0

    batches0 = fed.batches
    wall = asyncio.run(run())
    five_xx = sum(n for (_kind, code), n in statuses.items() if code >= 500)
    assert five_xx == 0, statuses
    assert dropped == [], dropped[:5]
    assert errors == [], errors[:5]
    assert sum(statuses.values()) == N_REQUESTS
    assert fed.batches > batches0, "the stream kept running during the load"
    assert _ready(server).status_code == 200
    print(
        f"\n{N_REQUESTS} requests at concurrency {CONCURRENCY} in {wall:.1f} s "
        f"({N_REQUESTS / wall:.0f} req/s) while the worker ran {fed.batches - batches0} "
        f"batches: {dict(sorted(statuses.items()))}"
    )
