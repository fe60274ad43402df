"""Orchestrator push: durable outbox, order per system, idempotency, fencing, signature."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from pipelines.outbound.orchestrator import DeliveryConfig, Outbox, Pusher, signature
from serve.orchestrator import create_orchestrator

# Starlette 1.x warns at import that its TestClient wants ``httpx2`` (see tests/api).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


def rec(system: str, epoch: int, action: str = "prepare_standby") -> dict[str, Any]:
    return {
        "recommendation_id": f"{system}-{epoch}",
        "epoch": epoch,
        "issued_at": "2026-01-05T14:00:00.000Z",
        "system": system,
        "component": "database",
        "action": action,
        "not_before": None,
        "risk": 0.7,
    }


class Orchestrator:
    """The reference orchestrator behind an httpx transport (no socket), switchable off."""

    def __init__(self, log: Path, secret: str | None = None) -> None:
        self.client = TestClient(create_orchestrator(log, secret))
        self.up = True
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("connection refused", request=request)
        self.seen.append(request.headers["idempotency-key"])
        r = self.client.post(
            "/v1/recommendations", content=request.content, headers=request.headers
        )
        return httpx.Response(r.status_code, content=r.content)


def pusher(outbox: Outbox, orch: Orchestrator, clock: list[float], **kw: Any) -> Pusher:
    cfg = DeliveryConfig("http://orch/v1/recommendations", backoff_max_s=4.0, **kw)
    return Pusher(outbox, cfg, httpx.MockTransport(orch), clock=lambda: clock[0])


def test_order_per_system_idempotent_adds_and_exactly_once(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite")
    recs = [rec("eq-oms", 1), rec("fx", 1), rec("eq-oms", 2), rec("fx", 2), rec("eq-oms", 3)]
    assert box.add(recs) == 5
    assert box.add(recs[:2]) == 0  # a replay adds nothing
    # only the head of each system's queue is due
    assert [i.rec_id for i in box.due(0.0)] == ["eq-oms-1", "fx-1"]
    orch, clock = Orchestrator(tmp_path / "log.jsonl"), [0.0]
    p = pusher(box, orch, clock)
    for _ in range(5):
        p.run_once()
    assert box.counts() == {"delivered": 5}
    accepted = [r["recommendation_id"] for r in orch.client.get("/v1/recommendations").json()]
    assert accepted == ["eq-oms-1", "fx-1", "eq-oms-2", "fx-2", "eq-oms-3"]


def test_down_then_back_retries_with_backoff_then_delivers_once(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.add([rec("s", e) for e in (1, 2, 3)])
    orch, clock = Orchestrator(tmp_path / "log.jsonl"), [0.0]
    orch.up = False
    p = pusher(box, orch, clock, breaker_failures=3, breaker_cooldown_s=10.0)
    for _ in range(10):  # down: retried with backoff, then the circuit opens
        p.run_once()
        clock[0] += 1.0
    assert p.counts["breaker_opened"] >= 1 and box.pending() == 3
    tries_while_open = p.counts["attempts"]
    p.run_once()
    assert p.counts["attempts"] == tries_while_open  # open: no request at all
    orch.up = True
    clock[0] += 60.0
    for _ in range(10):
        p.run_once()
        clock[0] += 5.0
    assert box.counts() == {"delivered": 3}
    log = [json.loads(x)["recommendation_id"] for x in (tmp_path / "log.jsonl").read_text().split()]
    assert log == ["s-1", "s-2", "s-3"]  # in order, once each
    assert p.counts["retries"] > 0 and p.counts["duplicates"] == 0


def test_the_orchestrator_fences_stale_epochs_and_dedupes_ids(tmp_path: Path) -> None:
    client = TestClient(create_orchestrator(tmp_path / "log.jsonl"))

    def post(r: dict[str, Any]) -> httpx.Response:
        headers = {"Idempotency-Key": r["recommendation_id"], "X-Precovery-Epoch": str(r["epoch"])}
        return client.post("/v1/recommendations", content=orjson.dumps(r), headers=headers)

    first = post(rec("s", 5, "failover_now"))
    assert first.status_code == 200 and first.json()["status"] == "accepted"
    assert "fail s/database over" in first.json()["would"]
    assert post(rec("s", 5, "failover_now")).json()["status"] == "duplicate"
    stale = post({**rec("s", 4), "recommendation_id": "other"})
    assert stale.status_code == 409 and stale.json()["highest_epoch"] == 5
    bad = client.post("/v1/recommendations", content=b"[1]", headers={"Idempotency-Key": "x"})
    assert bad.status_code == 400
    wrong_key = client.post(
        "/v1/recommendations",
        content=orjson.dumps(rec("t", 1)),
        headers={"Idempotency-Key": "nope", "X-Precovery-Epoch": "1"},
    )
    assert wrong_key.status_code == 400
    # state survives a restart of the orchestrator (rebuilt from its log)
    again = TestClient(create_orchestrator(tmp_path / "log.jsonl"))
    dup = again.post(
        "/v1/recommendations",
        content=orjson.dumps(rec("s", 5, "failover_now")),
        headers={"Idempotency-Key": "s-5", "X-Precovery-Epoch": "5"},
    )
    assert dup.json()["status"] == "duplicate"


def test_a_stale_recommendation_is_dropped_not_retried(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    orch, clock = Orchestrator(tmp_path / "log.jsonl"), [0.0]
    box.add([rec("s", 7)])
    p = pusher(box, orch, clock)
    p.run_once()
    box.add([{**rec("s", 6), "recommendation_id": "late"}])  # a stale writer's
    p.run_once()
    p.run_once()
    assert box.counts() == {"delivered": 1, "rejected": 1}
    assert p.counts["rejected_stale"] == 1 and orch.seen.count("late") == 1


@pytest.mark.parametrize("secret_ok", [True, False])
def test_signed_bodies(tmp_path: Path, secret_ok: bool) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.add([rec("s", 1)])
    orch, clock = Orchestrator(tmp_path / "log.jsonl", secret="k3y"), [0.0]
    p = pusher(box, orch, clock, secret="k3y" if secret_ok else "wrong")
    p.run_once()
    assert box.counts() == ({"delivered": 1} if secret_ok else {"rejected": 1})
    assert signature("k3y", b"x").startswith("sha256=")


def test_a_restarted_producer_goes_on_above_the_epochs_it_sent(tmp_path: Path) -> None:
    """The demo restarts without its engine but with its outbox: its next epochs must
    not be fenced off as stale by an orchestrator that saw the old ones."""
    from predictor.engine import Engine, EngineConfig

    box = Outbox(tmp_path / "outbox.sqlite")
    box.add([rec("eq-oms", 1), rec("eq-oms", 6), rec("fx", 2)])
    assert box.max_epochs() == {"eq-oms": 6, "fx": 2}
    engine = Engine(EngineConfig())
    engine.resume_epochs(box.max_epochs())
    engine.resume_epochs({"fx": 1})  # a floor never lowers an epoch
    assert engine.system_view("eq-oms")["epoch"] == 6
    assert engine.system_view("fx")["epoch"] == 2
    box.close()
