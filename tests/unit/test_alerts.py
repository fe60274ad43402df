"""SRE alerts: one per system and cause, P1–P4, re-posted while firing, resolved after."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from pipelines.outbound.alertmanager import AlertmanagerClient, AlertNotifier, rfc3339
from predictor.alerts import AlertPolicy, desired_alerts, severity


def rec(component: str, action: str, system: str = "eq-oms", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "recommendation_id": f"{system}-{component}-{action}",
        "system": system,
        "component": component,
        "action": action,
        "risk": 0.7,
        "expected_loss_stay_usd": 20_000.0,
        "expected_cost_switch_usd": 500.0,
        "exposure_usd": {"net": 1e6, "gross": 4e6, "open_orders": 10},
        "reasons": [{"feature": "cpu_pct__z", "value": 9.1, "contribution": 1.2}],
        "issued_at": "2026-01-05T14:00:00.000Z",
    }
    return {**base, **kw}


@pytest.mark.parametrize(
    ("action", "kw", "expected"),
    [
        ("none", {}, None),
        ("watch", {}, "P4"),
        ("prepare_standby", {}, "P3"),
        ("prepare_standby", {"expected_loss_stay_usd": 150_000.0}, "P2"),
        ("failover_at_window", {}, "P2"),
        ("failover_now", {}, "P1"),
        ("watch", {"risk": 0.85, "expected_loss_stay_usd": 300_000.0}, "P1"),
    ],
)
def test_severity_mapping(action: str, kw: dict[str, Any], expected: str | None) -> None:
    assert severity(rec("c", action, **kw), AlertPolicy()) == expected


def test_one_alert_per_system_and_cause_with_the_worst_severity() -> None:
    heartbeat = [{"feature": "heartbeat_missed_s", "value": 40.0, "contribution": None}]
    latest = [
        rec("gateway", "prepare_standby"),
        rec("database", "failover_now", risk=0.97),
        rec("matching", "failover_now", reasons=heartbeat),
        rec("pricing", "none", system="fx-pricing"),
        rec("feed", "watch", system="md-feed"),
    ]
    alerts = desired_alerts(latest, link="http://h/console/")
    assert [(a.key, a.severity) for a in alerts] == [
        (("eq-oms", "failure_risk"), "P1"),
        (("eq-oms", "heartbeat"), "P1"),
        (("md-feed", "failure_risk"), "P4"),
    ]
    top = alerts[0]
    assert top.labels["alertname"] == "PrecoveryFailureRisk"
    assert "database (failover_now)" in top.annotations["description"]
    assert "gateway (prepare_standby)" in top.annotations["description"]
    assert top.annotations["expected_loss_stay_usd"] == "$20,000"
    assert top.annotations["console"] == "http://h/console/eq-oms"
    assert alerts[1].labels["alertname"] == "PrecoveryHeartbeatMissed"


def test_telemetry_lost_is_one_fleet_alert() -> None:
    alerts = desired_alerts([], conditions=["telemetry_lost"])
    assert [(a.key, a.severity) for a in alerts] == [(("*", "telemetry_lost"), "P2")]


class Recorder:
    """An httpx transport that records the bodies it was sent (a unit-test edge)."""

    def __init__(self, fail: int = 0) -> None:
        self.posts: list[list[dict[str, Any]]] = []
        self.fail = fail

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.fail:
            self.fail -= 1
            return httpx.Response(503, text="down")
        self.posts.append(json.loads(request.content))
        return httpx.Response(200, json={})


def notifier(rec_: Recorder, clock: list[float]) -> AlertNotifier:
    client = AlertmanagerClient("http://am", retries=0, transport=httpx.MockTransport(rec_))
    return AlertNotifier(client, repeat_s=60.0, clock=lambda: clock[0])


def test_fire_dedupe_repeat_escalate_resolve() -> None:
    sent, clock = Recorder(), [1_000.0]
    n = notifier(sent, clock)
    n.observe([rec("gateway", "prepare_standby")])
    assert n.sync() == 1
    (fired,) = sent.posts[-1]
    assert fired["labels"]["severity"] == "P3" and fired["endsAt"] > fired["startsAt"]
    clock[0] += 10
    assert n.sync() == 0  # nothing changed, not due for a repeat: no duplicate post
    clock[0] += 60
    assert n.sync() == 1  # the repeat keeps Alertmanager from expiring it
    assert sent.posts[-1][0]["startsAt"] == fired["startsAt"]
    n.observe([rec("gateway", "failover_now")])  # escalation: P3 resolved, P1 fired
    assert n.sync() == 2
    by_sev = {a["labels"]["severity"]: a for a in sent.posts[-1]}
    assert by_sev["P3"]["endsAt"] <= by_sev["P1"]["startsAt"]
    n.observe([rec("gateway", "none")])  # all clear: resolved
    assert n.sync() == 1
    (resolved,) = sent.posts[-1]
    assert resolved["labels"]["severity"] == "P1"
    assert resolved["endsAt"] == rfc3339(clock[0])  # ends now: resolved
    assert n.firing() == [] and n.counts["resolved"] == 2


def test_alertmanager_down_then_back_loses_nothing() -> None:
    sent, clock = Recorder(fail=1), [0.0]
    n = notifier(sent, clock)
    n.observe([rec("db", "failover_now")])
    assert n.sync() == 0 and n.counts["failed"] == 1
    clock[0] += 1
    assert n.sync() == 1  # retried with the whole desired state
    assert sent.posts[-1][0]["labels"]["system"] == "eq-oms"
