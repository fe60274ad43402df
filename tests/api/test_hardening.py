"""Health that can fail, errors as JSON with request ids, poison bodies, cursors, caches."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from pipelines.embedded.feed import FeedMonitor
from pipelines.embedded.live import LiveState
from predictor.engine import Engine
from predictor.risk import RiskModel
from predictor.whatif import scratch_engine
from serve.app import create_app
from serve.schemas import SystemDetail
from tests.api.support import build_live
from tests.factories import INTERVAL_MS, SimStream, telemetry_event

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


@pytest.fixture
def fresh(api_stream: SimStream, small_model: RiskModel, clock: list[float]) -> LiveState:
    """A live state of its own, whose feed runs on a fake clock."""
    state = build_live(api_stream, small_model)
    state.feed = FeedMonitor(lost_after_s=30.0, max_lag=1000, clock=lambda: clock[0])
    return state


@pytest.fixture
def client(fresh: LiveState) -> Iterator[TestClient]:
    with TestClient(create_app(fresh, max_body_bytes=64 * 1024, sse_keepalive_s=0.1)) as c:
        yield c


# -- readiness ---------------------------------------------------------------------------
def test_live_state_always_has_a_feed(fresh: LiveState) -> None:
    own = FeedMonitor()
    assert LiveState(fresh.engine, feed=own).feed is own
    assert isinstance(LiveState(fresh.engine).feed, FeedMonitor)


def test_readyz_names_every_failing_reason(
    client: TestClient, fresh: LiveState, clock: list[float]
) -> None:
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["status"] == "not_ready"
    assert any("not started" in why for why in r.json()["reasons"])
    assert client.get("/healthz").status_code == 200

    fresh.feed.worker_started()
    fresh.feed.note(100, lag=5)
    r = client.get("/readyz")
    assert r.status_code == 200, r.json()
    assert r.json() == {
        "status": "ready",
        "reasons": [],
        "conditions": [],
        "input_idle_s": 0.0,
        "consumer_lag": 5,
    }

    clock[0] += 31.0  # no input for 31 s, a lag over the bound, no model, a dead worker
    fresh.feed.note(0, lag=5000)
    fresh.set_model(None)
    fresh.feed.worker_stopped(RuntimeError("boom"))
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    reasons = " | ".join(body["reasons"])
    for part in ("worker dead: RuntimeError: boom", "telemetry_lost", "lag 5000", "model"):
        assert part in reasons, reasons
    assert len(body["reasons"]) == 4
    assert set(body["conditions"]) == {"telemetry_lost", "worker_dead", "lagging"}
    assert client.get("/healthz").status_code == 200

    status = client.get("/v1/status").json()
    assert status["ready"] is False and status["not_ready"] == body["reasons"]
    assert set(status["conditions"]) == set(body["conditions"])
    assert status["input_idle_s"] == pytest.approx(31.0)
    metrics = client.get("/metrics").text
    for cond in ("telemetry_lost", "worker_dead", "lagging"):
        assert f'precovery_condition{{condition="{cond}"}} 1.0' in metrics
    assert "precovery_input_idle_seconds 31.0" in metrics
    assert "precovery_ready 0.0" in metrics
    assert "precovery_consumer_lag_records 5000.0" in metrics


def test_healthz_does_not_wait_for_a_wedged_worker(client: TestClient, fresh: LiveState) -> None:
    assert client.get("/v1/systems").status_code == 200  # rendered once
    with fresh.lock:  # a worker stuck inside a batch
        t0 = time.perf_counter()
        r = client.get("/healthz")
        assert r.status_code == 200 and time.perf_counter() - t0 < 2.0
        # readiness and the cached views do not wait either
        assert client.get("/readyz").status_code == 503
        assert client.get("/v1/systems").status_code == 200


# -- errors ------------------------------------------------------------------------------
class _Exploding:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"backend broke in {name}")


def test_unexpected_error_is_json_with_request_id(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(_Exploding())  # type: ignore[arg-type]
    with TestClient(app) as c, caplog.at_level(logging.ERROR, logger="serve.app"):
        r = c.get("/v1/status", headers={"X-Request-ID": "req-42.a"})
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert r.json()["request_id"] == "req-42.a" == r.headers["x-request-id"]
    assert r.json()["reason"] == "internal_error"
    rec = next(rec for rec in caplog.records if "req-42.a" in rec.getMessage())
    assert rec.levelno == logging.ERROR and rec.exc_info is not None


def test_every_response_has_a_request_id(client: TestClient) -> None:
    ids = set()
    for path in ("/healthz", "/readyz", "/v1/systems", "/v1/systems/none-such", "/metrics"):
        r = client.get(path)
        ids.add(r.headers["x-request-id"])
    assert len(ids) == 5
    assert client.get("/healthz", headers={"X-Request-ID": "a b\x01"}).headers[
        "x-request-id"
    ] not in ("a b\x01", "")
    r = client.get("/v1/systems/none-such", headers={"X-Request-ID": "mine-1"})
    assert r.status_code == 404 and r.json()["request_id"] == "mine-1"


# -- score bodies ------------------------------------------------------------------------
POISON = [
    (b'{"events":[null]}', "not_an_object"),
    (b"[1]", "not_an_object"),
    (b"[[1]]", "not_an_object"),
    (b'{"events": 5}', "wrong_type"),
    (b"[" * 1100 + b"]" * 1100, None),
    (b'{"events":' + b"[" * 5000 + b"]" * 5000 + b"}", None),
    (b'{"events":' + b"[" * 5000, None),
    (b"\xff\xfe[]", None),
    (b'{"events": [' + b'{"a":' * 2000 + b"1" + b"}" * 2000 + b"]}", None),
]


@pytest.mark.parametrize(("body", "reason"), POISON, ids=range(len(POISON)))
def test_score_poison_bodies_are_422(client: TestClient, body: bytes, reason: str | None) -> None:
    r = client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    got = r.json()
    assert got["error"] == "validation" and got["reason"]
    assert got["request_id"] == r.headers["x-request-id"]
    if reason:
        assert got["reason"] == reason


def test_score_body_schema_is_in_openapi(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/score"]["post"]["requestBody"]
    refs = orjson.dumps(body).decode()
    assert "#/components/schemas/ScoreRequest" in refs
    assert "#/components/schemas/TelemetryEvent" in refs
    schemas = spec["components"]["schemas"]
    assert set(schemas["TelemetryEvent"]["required"]) == {
        "ts",
        "system",
        "component",
        "host",
        "metrics",
    }
    assert schemas["ScoreRequest"]["properties"]["events"]["items"]["$ref"].endswith(
        "TelemetryEvent"
    )
    assert "409" in spec["paths"]["/v1/recommendations"]["get"]["responses"]
    assert "/readyz" in spec["paths"]


def test_what_if_copies_only_its_entities(fresh: LiveState) -> None:
    """``scratch_engine`` scores exactly as a whole copy of the engine would."""
    eng = fresh.engine
    wm = eng.watermark_ms
    assert wm is not None
    keys = eng.registry.keys[:3]
    events = [
        telemetry_event(wm + (i + 1) * INTERVAL_MS, *k, {"cpu_pct": 30.0 + i, "mem_pct": 50.0})
        for i, k in enumerate(keys * 2)
    ]
    events.append(telemetry_event(wm, "new-sys", "c", "h"))
    got = fresh.score(events, 100)
    from dataclasses import replace

    from predictor.events import decode_telemetry

    config = replace(eng.config, risk_cadence_s=0.0)
    whole = Engine.from_snapshot(eng.snapshot(), config, eng.model)
    res = whole.process(decode_telemetry(events, config.metric_names), decide=False)
    assert [row["anomaly_score"] for row in got["results"]] == [
        round(a, 6) for a in res.anomaly.tolist()
    ]
    assert [row["risk"] for row in got["results"]] == [round(r, 6) for r in res.risk.tolist()]
    small = scratch_engine(eng, keys + [("x", "y", "z")])
    assert small.n_entities == 3 and small.watermark_ms == wm


def test_model_version_is_computed_once(
    small_model: RiskModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = small_model.version
    calls = []
    booster = small_model.booster_
    original = booster.model_to_string
    monkeypatch.setattr(booster, "model_to_string", lambda *a, **k: calls.append(1) or original())
    for _ in range(100):
        assert small_model.version == first
    assert calls == []


# -- cursors -----------------------------------------------------------------------------
def test_cursor_of_another_stream_is_409(client: TestClient, fresh: LiveState) -> None:
    recs = client.get("/v1/recommendations", params={"limit": 1000}).json()
    assert len(recs) >= 2
    # a restart: same log, new process; the old cursor must not be taken at face value
    old = recs[0]["cursor"]
    fresh.stream_id = "restarted01"
    r = client.get("/v1/recommendations", params={"after": old})
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "cursor_reset" and body["reason"] == "stream_changed"
    assert body["stream_id"] == "restarted01" == r.headers["x-stream-id"]
    # a cursor beyond the stream's end, a bare number, junk: never a silent page
    assert client.get("/v1/recommendations", params={"after": "restarted01:99999"}).status_code
    assert (
        client.get("/v1/recommendations", params={"after": "restarted01:99999"}).status_code == 409
    )
    for bad in ("54", "-1", "x:y", ":5"):
        r = client.get("/v1/recommendations", params={"after": bad})
        assert r.status_code == 422 and r.json()["reason"] == "bad_cursor", bad
    assert client.get("/v1/recommendations", params={"after": "0"}).status_code == 200


def test_expired_cursor_is_409(fresh: LiveState, small_model: RiskModel) -> None:
    small = LiveState(fresh.engine, max_recent=2)
    recs = fresh.recommendations(limit=1000)

    plain = [{k: v for k, v in r.items() if k not in ("seq", "cursor", "stream_id")} for r in recs]

    class _Result:
        recommendations = plain * 2

    small.on_batch(None, _Result())  # type: ignore[arg-type]
    n = 2 * len(recs)
    assert n >= 4
    with TestClient(create_app(small)) as c:
        r = c.get("/v1/recommendations", params={"after": f"{small.stream_id}:1"})
        assert r.status_code == 409 and r.json()["reason"] == "cursor_expired"
        ok = c.get("/v1/recommendations", params={"after": f"{small.stream_id}:{n - 2}"})
        assert ok.status_code == 200 and [x["seq"] for x in ok.json()] == [n - 1, n]


def _sse(client: TestClient, **kw: Any) -> list[dict[str, str]]:
    with client.stream("GET", "/v1/recommendations/stream", **kw) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    blocks = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(": ")
            fields[key or "comment"] = value if key else line
        if fields:
            blocks.append(fields)
    return blocks


def test_sse_resumes_with_last_event_id(client: TestClient, fresh: LiveState) -> None:
    recs = fresh.recommendations(limit=1000)
    blocks = _sse(
        client,
        params={"max_s": 0.35, "after": recs[0]["cursor"]},
        headers={"Last-Event-ID": recs[-2]["cursor"]},
    )
    events = [b for b in blocks if b.get("event") == "recommendation"]
    assert [b["id"] for b in events] == [recs[-1]["cursor"]]
    assert any(b.get("comment") == ": keep-alive" for b in blocks)


def test_sse_tells_a_client_of_another_stream_to_start_over(
    client: TestClient, fresh: LiveState
) -> None:
    recs = fresh.recommendations(limit=1000)
    blocks = _sse(client, params={"max_s": 0.2}, headers={"Last-Event-ID": "gone0000:7"})
    kinds = [b.get("event") for b in blocks if "event" in b]
    assert kinds[0] == "reset"
    reset = orjson.loads(next(b["data"] for b in blocks if b.get("event") == "reset"))
    assert reset["reason"] == "stream_changed" and reset["stream_id"] == fresh.stream_id
    assert kinds[1:] == ["recommendation"] * len(recs)


def test_sse_wakes_on_new_recommendations(client: TestClient, fresh: LiveState) -> None:
    recs = fresh.recommendations(limit=1000)
    extra = {k: v for k, v in recs[-1].items() if k not in ("seq", "cursor", "stream_id")}

    class _Result:
        recommendations = [extra]

    def later() -> None:
        time.sleep(0.3)
        fresh.on_batch(None, _Result())  # type: ignore[arg-type]

    threading.Thread(target=later).start()
    t0 = time.perf_counter()
    blocks = _sse(client, params={"max_s": 1.5, "after": recs[-1]["cursor"]})
    events = [b for b in blocks if b.get("event") == "recommendation"]
    assert [b["id"] for b in events] == [f"{fresh.stream_id}:{len(recs) + 1}"]
    assert time.perf_counter() - t0 >= 1.4  # it stayed open to max_s


# -- cached views ------------------------------------------------------------------------
def test_views_are_cached_per_state_and_served_while_a_batch_runs(
    client: TestClient, fresh: LiveState
) -> None:
    system = fresh.engine.systems[0]
    first = client.get(f"/v1/systems/{system}")
    assert first.status_code == 200
    SystemDetail.model_validate(first.json())
    assert fresh.view_json(system) is fresh.view_json(system)  # one render per state
    with fresh.lock:  # a batch in progress: the render before it is served at once
        t0 = time.perf_counter()
        during = client.get(f"/v1/systems/{system}")
        assert time.perf_counter() - t0 < 2.0
    assert during.content == first.content
    before = fresh.view_json(system)
    fresh.batches += 1  # the state moved on: render again
    assert fresh.view_json(system) is not before
