"""The HTTP API on a live state fed by a short simulated stream (TestClient, no server)."""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from pipelines.embedded.live import LiveState
from predictor.events import ms_to_iso
from predictor.risk import RiskModel
from serve.app import create_app
from tests.api.support import build_live
from tests.factories import INTERVAL_MS, SimStream, telemetry_event

# Starlette 1.x warns at import that its TestClient wants ``httpx2``; the project ships
# ``httpx`` (which works), and warnings are errors: silence exactly that one, here.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

MAX_BODY = 64 * 1024
MAX_EVENTS = 50


@pytest.fixture(scope="module")
def live(api_stream: SimStream, small_model: RiskModel) -> LiveState:
    return build_live(api_stream, small_model)


@pytest.fixture(scope="module")
def client(live: LiveState) -> Iterator[TestClient]:
    app = create_app(live, max_body_bytes=MAX_BODY, max_events_per_request=MAX_EVENTS)
    with TestClient(app) as c:
        yield c


def next_events(live: LiveState, n: int = 5) -> list[dict[str, Any]]:
    """Events just after the watermark for a known host, plus one unknown host."""
    wm = live.engine.watermark_ms
    assert wm is not None
    system, component, host = live.engine.registry.keys[0]
    out = [
        telemetry_event(
            wm + (i + 1) * INTERVAL_MS,
            system,
            component,
            host,
            {"cpu_pct": 30.0 + i, "mem_pct": 50.0},
        )
        for i in range(n)
    ]
    out.append(telemetry_event(wm, "new-sys", "new-comp", "new-host"))
    return out


def state_of(live: LiveState) -> dict[str, Any]:
    eng = live.engine
    return {
        "status": live.status(),
        "systems": live.systems(),
        "recs": live.recommendations(limit=1000),
        "features": {k: v.tobytes() for k, v in eng.features.snapshot()["arrays"].items()},
        "detector": pickle.dumps(eng.detector.snapshot()),
        "risk": eng.risk.tobytes(),
        "keys": list(eng.registry.keys),
    }


# -- ops ---------------------------------------------------------------------------------
def test_healthz(client: TestClient, live: LiveState, small_model: RiskModel) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["model_version"] == small_model.version
    assert body["entities"] == live.engine.n_entities > 0
    assert body["watermark"] == ms_to_iso(live.engine.watermark_ms or 0)


def test_status_counts_the_rejected_message(client: TestClient) -> None:
    body = client.get("/v1/status").json()
    assert body["reject_reasons"] == {"malformed_json": 1}
    assert body["counters"]["rejected"] == 1
    assert body["counters"]["events"] > 0 and body["batches"] > 0


def test_metrics_are_prometheus_text(client: TestClient, live: LiveState) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    events = live.engine.counters["events"]
    assert f'precovery_events_total{{outcome="accepted"}} {float(events)}' in text
    for s in live.engine.systems:
        assert f'precovery_system_health{{system="{s}"}}' in text
    assert "precovery_recommendations_total" in text
    assert "precovery_watermark_seconds" in text


def test_openapi_lists_the_endpoints(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for p in (
        "/healthz",
        "/v1/systems",
        "/v1/systems/{system}",
        "/v1/recommendations",
        "/v1/recommendations/stream",
        "/v1/score",
        "/metrics",
    ):
        assert p in paths, p
    assert "post" in paths["/v1/score"] and "413" in paths["/v1/score"]["post"]["responses"]


# -- systems -----------------------------------------------------------------------------
def test_systems(client: TestClient, live: LiveState) -> None:
    r = client.get("/v1/systems")
    assert r.status_code == 200
    rows = r.json()
    assert {row["system"] for row in rows} == set(live.engine.systems)
    for row in rows:
        assert 0.0 <= row["health"] <= 100.0
        assert row["action"] in (
            "none",
            "watch",
            "prepare_standby",
            "failover_at_window",
            "failover_now",
        )
    assert rows == live.systems()


def test_system_detail(client: TestClient, live: LiveState) -> None:
    r = client.get("/v1/systems/eq-oms")
    assert r.status_code == 200
    body = r.json()
    assert body["system"] == "eq-oms" and body["horizon_s"] > 0
    comps = {c["component"]: c for c in body["components"]}
    assert "order-gateway" in comps
    for c in comps.values():
        for h in c["hosts"]:
            assert 0.0 <= h["health"] <= 100.0 and 0.0 <= h["anomaly_score"] <= 1.0
    assert body["market"]["venue"] == "XNYS"
    latest = comps["order-gateway"]["latest_recommendation"]
    assert latest is not None and latest["system"] == "eq-oms"


def test_unknown_system_is_404(client: TestClient) -> None:
    r = client.get("/v1/systems/no-such-system")
    assert r.status_code == 404
    assert r.json()["error"] == "UnknownEntityError"
    assert "no-such-system" in r.json()["reason"]


# -- recommendations ---------------------------------------------------------------------
def test_recommendations_filters(client: TestClient, live: LiveState) -> None:
    everything = client.get("/v1/recommendations", params={"limit": 1000}).json()
    n = len(everything)
    assert n == live.engine.counters["recommendations"] >= 1
    assert [r["seq"] for r in everything] == list(range(1, n + 1))
    for r in everything:
        assert r["recommendation_id"] and r["epoch"] >= 1
        assert r["stream_id"] == live.stream_id
        assert r["cursor"] == f"{live.stream_id}:{r['seq']}"
    assert client.get("/v1/recommendations", params={"limit": 1}).json() == everything[-1:]
    if n >= 2:
        after = client.get("/v1/recommendations", params={"after": everything[-2]["cursor"]})
        assert after.json() == everything[-1:]
        assert after.headers["x-stream-id"] == live.stream_id
    page = client.get("/v1/recommendations", params={"after": 0, "limit": 2}).json()
    assert page == everything[-2:]
    if n >= 2:
        assert (
            client.get(
                "/v1/recommendations", params={"after": everything[0]["cursor"], "limit": 1}
            ).json()
            == everything[1:2]
        )
    sys0 = everything[0]["system"]
    mine = client.get("/v1/recommendations", params={"system": sys0, "limit": 1000}).json()
    assert mine == [r for r in everything if r["system"] == sys0]
    assert client.get("/v1/recommendations", params={"system": "none-such"}).json() == []
    assert client.get("/v1/recommendations", params={"limit": 0}).status_code == 422
    assert client.get("/v1/recommendations", params={"after": -1}).status_code == 422


def test_stream_sends_recommendation_events(client: TestClient, live: LiveState) -> None:
    expected = live.recommendations(limit=1000)
    with client.stream("GET", "/v1/recommendations/stream", params={"max_s": 0.5}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = [block for block in text.split("\n\n") if block.startswith("event:")]
    assert len(events) == len(expected)
    for block, rec in zip(events, expected, strict=True):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        assert lines["event"] == "recommendation"
        assert lines["id"] == rec["cursor"] == f"{live.stream_id}:{rec['seq']}"
        assert json.loads(lines["data"])["recommendation_id"] == rec["recommendation_id"]


def test_stream_resumes_after(client: TestClient, live: LiveState) -> None:
    expected = live.recommendations(limit=1000)
    assert len(expected) >= 2
    with client.stream(
        "GET", "/v1/recommendations/stream", params={"max_s": 0.3, "after": expected[-2]["cursor"]}
    ) as r:
        text = "".join(r.iter_text())
    assert text.count("event: recommendation") == 1
    assert f"id: {expected[-1]['cursor']}" in text
    assert "event: reset" not in text


# -- score -------------------------------------------------------------------------------
def test_score_valid_batch(client: TestClient, live: LiveState, small_model: RiskModel) -> None:
    events = next_events(live)
    before = state_of(live)
    r = client.post("/v1/score", json={"events": events})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scored"] == len(events) and body["rejected"] == 0
    assert body["model_version"] == small_model.version
    assert len(body["results"]) == len(events)
    for row, ev in zip(body["results"], events, strict=True):
        assert (row["system"], row["component"], row["host"]) == (
            ev["system"],
            ev["component"],
            ev["host"],
        )
        assert 0.0 <= row["anomaly_score"] <= 1.0
        assert row["risk"] is not None and 0.0 <= row["risk"] <= 1.0
        assert 0.0 <= row["health"] <= 100.0
    assert [row["known_entity"] for row in body["results"]] == [True] * 5 + [False]
    assert state_of(live) == before, "a score call must not change the live state"
    # a bare array is accepted too, and the same request gives the same answer
    again = client.post("/v1/score", content=orjson.dumps(events))
    assert again.status_code == 200 and again.json() == body


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"events": [', "malformed_json"),
        (b"", "malformed_json"),
        (b'{"events": {"ts": 1}}', "wrong_type"),
        (b'"events"', "wrong_type"),
    ],
)
def test_score_rejects_bad_bodies(client: TestClient, body: bytes, reason: str) -> None:
    r = client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["error"] == "validation" and r.json()["reason"] == reason


def test_score_nan_is_non_finite(client: TestClient, live: LiveState) -> None:
    ev = orjson.dumps({"events": next_events(live, 1)})
    body = ev.replace(b'"cpu_pct":30.0', b'"cpu_pct":NaN', 1)
    assert body != ev
    r = client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["reason"] == "non_finite"


def test_score_wrong_type_lists_every_reject(client: TestClient, live: LiveState) -> None:
    events = next_events(live, 3)
    events[1]["metrics"] = {"cpu_pct": "high"}
    events[2]["metrics"] = {"cpu_pct": True}
    before = state_of(live)
    r = client.post("/v1/score", json={"events": events})
    assert r.status_code == 422
    body = r.json()
    assert body["reason"] == "wrong_type"
    assert [(x["index"], x["reason"]) for x in body["rejects"]] == [
        (1, "wrong_type"),
        (2, "wrong_type"),
    ]
    assert state_of(live) == before


def test_score_missing_field(client: TestClient, live: LiveState) -> None:
    ev = next_events(live, 1)[0]
    del ev["host"]
    r = client.post("/v1/score", json=[ev])
    assert r.status_code == 422 and r.json()["reason"] == "missing_field"


def test_score_oversized_body_is_413(client: TestClient, live: LiveState) -> None:
    ev = next_events(live, 1)[0]
    ev["metrics"]["pad"] = 1.0
    big = orjson.dumps({"events": [ev], "pad": "x" * (MAX_BODY + 1)})
    r = client.post("/v1/score", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["reason"] == "too_large"


def test_score_too_many_events_is_413(client: TestClient, live: LiveState) -> None:
    events = [
        telemetry_event(live.engine.watermark_ms or 0, "s", "c", f"h{i}")
        for i in range(MAX_EVENTS + 1)
    ]
    r = client.post("/v1/score", json={"events": events})
    assert r.status_code == 413
    assert r.json()["reason"] == "too_many_events"


def test_score_rejected_by_the_engine(client: TestClient, live: LiveState) -> None:
    """Order checks run in the what-if too: a duplicate of a live event is a 422."""
    system, component, host = live.engine.registry.keys[0]
    last = int(live.engine.features.last_ts[0])
    r = client.post("/v1/score", json=[telemetry_event(last, system, component, host)])
    assert r.status_code == 422 and r.json()["reason"] == "duplicate"
