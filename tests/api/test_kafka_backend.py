"""KafkaBackend's cursors and views without a broker: records handed in as a consumer
would (the real broker: tests/integration/test_serve_kafka.py)."""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from pipelines.embedded.live import CursorReset
from pipelines.kafka.backend import KafkaBackend
from predictor.errors import UnknownEntityError, ValidationError
from serve.app import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


@dataclass
class Rec:
    value: bytes
    offset: int
    timestamp: int


def rec(i: int, system: str = "eq-oms", component: str = "gw") -> dict[str, Any]:
    return {
        "recommendation_id": f"r{i}",
        "system": system,
        "component": component,
        "action": "watch",
        "health": 80.0,
        "risk": 0.2,
        "issued_at": f"t{i:03d}",
    }


def backend(max_recent: int = 100) -> KafkaBackend:
    b = KafkaBackend(lambda: None, "h", "rec", max_recent=max_recent)
    b._partitions = 3
    for p in range(3):
        b._recs[p] = deque(maxlen=max_recent)
    return b


def fill(b: KafkaBackend) -> None:
    # partition 1 lags in wall time: its records arrive last but sort by timestamp
    b._add_recs(0, [Rec(orjson.dumps(rec(i)), 10 + i, 1000 + 10 * i) for i in range(3)])
    b._add_recs(2, [Rec(orjson.dumps(rec(10 + i, "fx")), i, 1005 + 10 * i) for i in range(2)])
    b._add_recs(1, [Rec(orjson.dumps(rec(20, "md")), 7, 1001)])


def test_order_and_cursors() -> None:
    b = backend()
    fill(b)
    rows = b.recommendations(limit=100)
    assert [r["recommendation_id"] for r in rows] == ["r0", "r20", "r10", "r1", "r11", "r2"]
    assert rows[0]["cursor"] == "kafka-rec:11.7.0"  # after r0: p0 from 11, p1 from 7, p2 from 0
    assert rows[-1]["cursor"] == "kafka-rec:13.8.2"
    for k, row in enumerate(rows):
        after = b.recommendations(after=b.parse_cursor(row["cursor"]), limit=100)
        assert [r["recommendation_id"] for r in after] == [
            r["recommendation_id"] for r in rows[k + 1 :]
        ]
    assert b.recommendations(limit=2) == rows[-2:]
    assert [r["system"] for r in b.recommendations("fx", limit=100)] == ["fx", "fx"]
    assert not b.newer_than(b.parse_cursor(rows[-1]["cursor"]))
    assert b.newer_than(b.parse_cursor(rows[-2]["cursor"])) and b.newer_than(None)


def test_cursor_refusals() -> None:
    b = backend(max_recent=2)
    fill(b)  # partition 0 keeps offsets 11, 12 only
    with pytest.raises(CursorReset) as err:
        b.parse_cursor("kafka-rec:10.7.0")
    assert err.value.why == "cursor_expired"
    with pytest.raises(CursorReset) as err:
        b.parse_cursor("kafka-other:11.7.0")
    assert err.value.why == "stream_changed"
    with pytest.raises(CursorReset):
        b.parse_cursor("kafka-rec:11.7")  # partitions added or removed
    with pytest.raises(ValidationError):
        b.parse_cursor("kafka-rec:x.y.z")
    assert b.parse_cursor("0") is None and b.parse_cursor(None) is None


def test_views_and_api() -> None:
    b = backend()
    fill(b)
    view = {
        "system": "eq-oms",
        "health": 71.5,
        "worst_component": "db",
        "worst_component_health": 40.0,
        "max_risk": 0.3,
        "action": "watch",
        "components": 4,
        "epoch": 2,
        "as_of_ms": 1_767_571_200_000,
        "conditions": [],
    }
    b._add_health([Rec(orjson.dumps(view), 0, 1), Rec(b"{broken", 1, 2)])
    b._add_health([Rec(orjson.dumps({**view, "as_of_ms": view["as_of_ms"] + 60_000}), 2, 3)])
    assert b.counts["undecodable"] == 1
    assert orjson.loads(b.view_json() or b"") == [
        {k: v for k, v in view.items() if k not in ("as_of_ms", "conditions")}
    ]
    detail = orjson.loads(b.view_json("eq-oms") or b"")
    assert {c["component"] for c in detail["components"]} == {"gw", "db"}
    assert len(b.history("eq-oms")) == 2
    with pytest.raises(UnknownEntityError):
        b._detail("nope")
    with TestClient(create_app(b)) as c:
        assert c.get("/v1/systems/eq-oms").status_code == 200
        assert c.get("/v1/systems/nope").status_code == 404
        r = c.post("/v1/score", json={"events": []})
        assert r.status_code == 501 and "engine" in r.json()["detail"]
        assert c.get("/readyz").status_code == 503  # the reader never started
        page = c.get("/v1/recommendations", params={"limit": 2}).json()
        assert [r["recommendation_id"] for r in page] == ["r11", "r2"]
        assert c.get("/v1/recommendations", params={"after": "kafka-x:1"}).status_code == 409
