"""Approvals and the audit trail end to end through the API: approve → the active site
flips → the next recommendation names it → the audit shows it all; reject; roles; the
decision forwarded through the outbox to the reference orchestrator."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.embedded.demo import _audit_attempt
from pipelines.embedded.live import LiveState
from pipelines.outbound.orchestrator import DeliveryConfig, Outbox, Pusher
from pipelines.records.approvals import Approvals
from pipelines.records.audit import AuditLog, AuditStore, sqlite_url
from predictor.engine import Engine, EngineConfig
from predictor.topology import Topology
from serve.app import create_app
from serve.auth import KeyStore
from serve.gates import Security
from serve.orchestrator import create_orchestrator
from tests.factories import INTERVAL_MS, T0_MS, decode, position, steady_stream

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

A = ("sys-a", "comp-a", "h1")
B = ("sys-a", "comp-b", "h2")
C = ("sys-a", "comp-c", "h3")
AUTO = ("sys-auto", "comp-x", "h9")
AUTO_PEER = ("sys-auto", "comp-y", "h8")

TOPO = Topology.from_mapping(
    {
        "systems": {
            "sys-a": {"primary_site": "ny4", "standby_site": "ch2", "authority": "approve"},
            "sys-auto": {"authority": {"mode": "auto"}},
        }
    }
)


@dataclass
class World:
    live: LiveState
    audit: AuditLog
    outbox: Outbox
    api: TestClient
    keys: dict[str, str]
    step: int = 0

    def feed(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Through the engine under the live lock, as the worker does; recommendations
        logged and audited as the demo's on_batch does."""
        recs: list[dict[str, Any]] = []
        engine = self.live.engine
        for i in range(0, len(events), 50):
            batch = decode(events[i : i + 50], engine.config.metric_names)
            with self.live.lock:
                result = engine.process(batch)
            self.live.on_batch(None, result)
            self.audit.recommendations(result.recommendations)
            self.outbox.add(result.recommendations)
            recs += result.recommendations
        return recs

    def run(self, keys: list[tuple[str, str, str]], steps: int) -> list[dict[str, Any]]:
        events = steady_stream(keys, steps, start_ms=T0_MS + self.step * INTERVAL_MS)
        self.step += steps
        return self.feed(events)

    def as_(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def decide(
        self, rec_id: str, verb: str, role: str = "operate", reason: str = "ok"
    ) -> httpx.Response:
        return self.api.post(
            f"/v1/recommendations/{rec_id}/{verb}", json={"reason": reason}, headers=self.as_(role)
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    engine = Engine(EngineConfig(), topology=TOPO)
    engine.add_positions(
        [position("sys-a", "XNYS", T0_MS, 5e6, 20e6, 7), position("sys-auto", "XNYS", T0_MS)]
    )
    live = LiveState(engine)
    store = AuditStore(sqlite_url(tmp_path / "audit.sqlite"))
    audit = AuditLog(store)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    keystore = KeyStore(tmp_path / "keys.json", recheck_s=0.0)
    keys = {role: keystore.create(f"{role}-key", role)[1] for role in ("read", "operate")}
    approvals = Approvals(live, audit, forward=outbox.add)
    app = create_app(
        live,
        security=Security(keys=keystore, allowed_hosts=["testserver"]),
        audit=store,
        approvals=approvals,
    )
    with TestClient(app) as api:
        yield World(live, audit, outbox, api, keys)
    audit.close()
    outbox.close()


def silent_a(w: World) -> dict[str, Any]:
    """A and B report, then only B: A misses its heartbeats → failover_now for comp-a."""
    w.run([A, B], 20)
    recs = w.run([B], 10)
    fo = [r for r in recs if r["component"] == "comp-a" and r["action"] == "failover_now"]
    assert fo, f"expected a failover for comp-a, got {recs}"
    return fo[0]


def test_approve_flips_the_site_and_everything_is_audited(world: World) -> None:
    w = world
    rec = silent_a(w)
    assert (rec["authority"], rec["active_site"]) == ("approve", "ny4")
    rid = rec["recommendation_id"]

    # roles: no key 401, read 403, operate 200
    assert w.api.post(f"/v1/recommendations/{rid}/approve", json={"reason": "x"}).status_code == 401
    denied = w.decide(rid, "approve", role="read")
    assert denied.status_code == 403 and "operate" in denied.json()["detail"]
    assert w.decide(rid, "approve", reason="").status_code == 422  # a reason is required
    assert w.live.engine.active_site("sys-a") == "ny4"  # nothing happened yet

    ok = w.decide(rid, "approve", reason="DB primary dying, market calm")
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["decision"] == "approved"
    assert (body["previous_site"], body["active_site"]) == ("ny4", "ch2")
    assert body["decided_by"].startswith("operate-key (")
    assert body["decision_id"] == f"{rid}.approved" and body["forwarded"] is True
    assert w.live.engine.active_site("sys-a") == "ch2"
    view = w.api.get("/v1/systems/sys-a", headers=w.as_("read"))
    assert view.status_code == 200 and view.json()["active_site"] == "ch2", view.text

    # idempotent: the same answer, and the site is not flipped back
    again = w.decide(rid, "approve", reason="clicked twice")
    assert again.status_code == 200 and again.json() == body
    assert w.live.engine.active_site("sys-a") == "ch2"
    other = w.decide(rid, "reject")
    assert other.status_code == 409
    assert other.json()["reason"] == "already_decided"
    assert other.json()["decision"] == body

    # the next recommendation refers to the new primary
    recs = w.run([C], 10)  # C joins the system; B goes dark while C reports
    nxt = [r for r in recs if r["component"] == "comp-b" and r["action"] == "failover_now"]
    assert nxt, recs
    assert (nxt[0]["active_site"], nxt[0]["failover_site"]) == ("ch2", "ny4")

    # the audit trail: the recommendations with their figures, the approval, once
    w.audit.flush()
    trail = w.api.get("/v1/audit", params={"system": "sys-a"}, headers=w.as_("read")).json()
    kinds = [r["kind"] for r in trail["records"]]
    assert kinds.count("approval") == 1  # the idempotent repeat is not a second decision
    approval = next(r for r in trail["records"] if r["kind"] == "approval")
    assert approval["subject"] == rid and approval["payload"] == body
    assert approval["actor"] == body["decided_by"]
    recs_audited = [r for r in trail["records"] if r["kind"] == "recommendation"]
    first = next(r for r in recs_audited if r["subject"] == rid)
    assert first["payload"]["exposure_usd"] == rec["exposure_usd"]
    assert first["payload"]["market"] == rec["market"]
    later = next(r for r in recs_audited if r["subject"] == nxt[0]["recommendation_id"])
    assert later["payload"]["active_site"] == "ch2"
    assert kinds.index("approval") < [r["subject"] for r in trail["records"]].index(
        nxt[0]["recommendation_id"]
    )  # in the order it happened


def test_the_decision_reaches_the_orchestrator_and_deliveries_are_audited(
    world: World, tmp_path: Path
) -> None:
    w = world
    rid = silent_a(w)["recommendation_id"]
    assert w.decide(rid, "approve").status_code == 200
    orch = TestClient(create_orchestrator(tmp_path / "orch.jsonl"))

    def forward(request: httpx.Request) -> httpx.Response:
        r = orch.post("/v1/recommendations", content=request.content, headers=request.headers)
        return httpx.Response(r.status_code, content=r.content)

    pusher = Pusher(
        w.outbox,
        DeliveryConfig("http://orchestrator/v1/recommendations"),
        transport=httpx.MockTransport(forward),
        on_attempt=_audit_attempt(w.audit),
    )
    while w.outbox.pending():
        assert pusher.run_once() > 0
    pusher.close()
    accepted = orch.get("/v1/recommendations").json()
    decision = [a for a in accepted if a.get("kind") == "decision"]
    assert [d["decision_id"] for d in decision] == [f"{rid}.approved"]
    assert accepted.index(decision[0]) > [a.get("recommendation_id") for a in accepted].index(rid)
    assert pusher.counts["delivered"] == len(accepted) and pusher.counts["rejected_stale"] == 0

    w.audit.flush()
    deliveries = w.api.get(
        "/v1/audit", params={"kind": "delivery", "limit": 1000}, headers=w.as_("read")
    ).json()["records"]
    by_subject = {d["subject"]: d["payload"] for d in deliveries}
    assert by_subject[f"{rid}.approved"]["outcome"] == "delivered"
    assert by_subject[rid] == {"outcome": "delivered", "attempt": 1, "epoch": 1, "detail": ""}
    assert len(deliveries) == len(accepted)


def test_reject_keeps_the_site(world: World) -> None:
    w = world
    rid = silent_a(w)["recommendation_id"]
    r = w.decide(rid, "reject", reason="auction in 2 min: wait")
    assert r.status_code == 200
    assert (r.json()["decision"], r.json()["active_site"]) == ("rejected", "ny4")
    assert w.live.engine.active_site("sys-a") == "ny4"
    assert w.decide(rid, "reject").json() == r.json()
    assert w.decide(rid, "approve").json()["reason"] == "already_decided"
    rows = w.api.get("/v1/audit", params={"kind": "approval"}, headers=w.as_("read")).json()
    assert [x["payload"]["decision"] for x in rows["records"]] == ["rejected"]


def test_unknown_auto_and_superseded_recommendations_are_refused(world: World) -> None:
    w = world
    assert w.decide("no-such-id", "approve").status_code == 404
    # a failover with auto authority is the orchestrator's to act on: nothing to approve
    w.run([AUTO, AUTO_PEER], 20)
    auto = [r for r in w.run([AUTO_PEER], 10) if r["action"] == "failover_now"][0]
    assert auto["authority"] == "auto"
    r = w.decide(auto["recommendation_id"], "approve")
    assert (r.status_code, r.json()["reason"]) == (409, "not_awaiting_approval")

    rid = silent_a(w)["recommendation_id"]
    w.run([A, B], 60)  # A is back: its component gets a newer recommendation
    newer = [
        r
        for r in w.live.recommendations("sys-a", limit=1000)
        if r["component"] == "comp-a" and r["recommendation_id"] != rid
    ]
    assert newer, "A's recovery should have been recommended"
    r = w.decide(rid, "approve")
    assert (r.status_code, r.json()["reason"]) == (409, "superseded")
    assert w.live.engine.active_site("sys-a") == "ny4"


def test_audit_pages_filters_and_errors(world: World) -> None:
    w = world
    silent_a(w)
    w.audit.flush()
    read = w.as_("read")
    everything = w.api.get("/v1/audit", params={"limit": 1000}, headers=read).json()
    assert everything["next_cursor"] is None and everything["records"]
    ids, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = w.api.get("/v1/audit", params=params, headers=read).json()
        ids += [r["id"] for r in page["records"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ids == [r["id"] for r in everything["records"]] == sorted(ids)
    at = everything["records"][0]["at"]
    assert w.api.get("/v1/audit", params={"until": at}, headers=read).json()["records"] == []
    since = w.api.get("/v1/audit", params={"since": at, "limit": 1000}, headers=read).json()
    assert len(since["records"]) == len(everything["records"])
    bad = w.api.get("/v1/audit", params={"since": "last tuesday"}, headers=read)
    assert bad.status_code == 422 and "since" in bad.json()["detail"]
    assert w.api.get("/v1/audit", params={"kind": "gossip"}, headers=read).status_code == 422
    assert w.api.get("/v1/audit", params={"cursor": "x1"}, headers=read).status_code == 422
    for past in ("9223372036854775807", "9223372036854775808", "9" * 20):  # 2**63 - 1 and up
        beyond = w.api.get("/v1/audit", params={"cursor": past}, headers=read)
        assert beyond.status_code == 200, (past, beyond.text)
        assert beyond.json() == {"records": [], "next_cursor": None}
    assert w.api.get("/v1/audit").status_code == 401

    spec = w.api.get("/openapi.json").json()
    assert "Role: `read`" in spec["paths"]["/v1/audit"]["get"]["description"]
    approve = spec["paths"]["/v1/recommendations/{recommendation_id}/approve"]["post"]
    assert "Role: `operate`" in approve["description"]
    assert {"403", "404", "409"} <= set(approve["responses"])


def test_without_an_audit_store_or_approvals_the_routes_say_so(world: World) -> None:
    api = TestClient(create_app(world.live))
    assert api.get("/v1/audit").status_code == 501
    r = api.post("/v1/recommendations/x/approve", json={"reason": "r"})
    assert r.status_code == 501
