"""SRE alerts from recommendations: one alert per system and cause, with a severity P1–P4.

The alert state is a pure function of the *latest* recommendation of every component (a
recommendation is emitted on every change of action, de-escalations included, so the
latest one is the component's current state) and of the worker's conditions:

- cause ``heartbeat``: a component whose latest recommendation was decided by the
  heartbeat rule (its first reason is ``heartbeat_missed_s``);
- cause ``failure_risk``: any other component at ``watch`` or worse;
- cause ``telemetry_lost``: the feed is lost (``FeedMonitor``), one alert for the fleet.

Severity of a (system, cause) alert is the most severe of its components, mapped from the
action (which already weighs risk against the dollar cost of switching), the dollars at
stake and the time left to act:

======== =====================================================================
P1       ``failover_now`` (the heartbeat rule or a confirmed forecast); or risk
         ≥ 0.8 with an expected loss of staying ≥ ``page_loss_usd`` ($250k)
P2       ``failover_at_window`` (act at the next safer window); ``prepare_standby``
         with an expected loss of staying ≥ ``urgent_loss_usd`` ($100k); the feed lost
P3       ``prepare_standby`` (warm the standby: cheap, no market impact)
P4       ``watch``
======== =====================================================================

An example routing (pager for P1/P2, chat for P3/P4) is in docs/alerting.md.

>>> rec = {"system": "eq-oms", "component": "db", "action": "failover_now", "risk": 0.97,
...        "expected_loss_stay_usd": 1e4, "expected_cost_switch_usd": 300.0,
...        "reasons": [{"feature": "disk_used_pct__value", "value": 91.0,
...                     "contribution": 2.1}], "issued_at": "2026-01-05T14:00:00.000Z"}
>>> [(a.labels["system"], a.labels["cause"], a.severity) for a in desired_alerts([rec])]
[('eq-oms', 'failure_risk', 'P1')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Actions at or above which a component contributes to an alert.
ALERTING_ACTIONS = ("watch", "prepare_standby", "failover_at_window", "failover_now")
SEVERITIES = ("P1", "P2", "P3", "P4")


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """Dollar thresholds of the severity mapping, USD."""

    page_loss_usd: float = 250_000.0
    urgent_loss_usd: float = 100_000.0


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: its identity (``key``), labels, annotations and severity."""

    key: tuple[str, str]  # (system, cause)
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)


def severity(rec: Mapping[str, Any], policy: AlertPolicy = AlertPolicy()) -> str | None:
    """P1–P4 for one component's latest recommendation, None when it is all clear.

    >>> severity({"action": "prepare_standby", "expected_loss_stay_usd": 2e5})
    'P2'
    >>> severity({"action": "none"}) is None
    True
    """
    action = rec.get("action")
    if action not in ALERTING_ACTIONS:
        return None
    stay = rec.get("expected_loss_stay_usd") or 0.0
    risk = rec.get("risk") or 0.0
    if action == "failover_now" or (risk >= 0.8 and stay >= policy.page_loss_usd):
        return "P1"
    if action == "failover_at_window" or (
        action == "prepare_standby" and stay >= policy.urgent_loss_usd
    ):
        return "P2"
    return "P3" if action == "prepare_standby" else "P4"


def cause_of(rec: Mapping[str, Any]) -> str:
    reasons = rec.get("reasons") or []
    first = reasons[0].get("feature") if reasons else None
    return "heartbeat" if first == "heartbeat_missed_s" else "failure_risk"


def desired_alerts(
    latest: Iterable[Mapping[str, Any]],
    conditions: Sequence[str] = (),
    policy: AlertPolicy = AlertPolicy(),
    link: str = "",
) -> list[Alert]:
    """The alerts that should be firing now, sorted by key.

    ``latest`` holds the latest recommendation of each component; ``link`` is a URL
    prefix for the system's page (``{link}{system}``).
    """
    groups: dict[tuple[str, str], list[tuple[str, Mapping[str, Any]]]] = {}
    for rec in latest:
        sev = severity(rec, policy)
        if sev is not None:
            groups.setdefault((rec["system"], cause_of(rec)), []).append((sev, rec))
    out = []
    for (system, cause), members in sorted(groups.items()):
        members.sort(key=lambda m: (m[0], -(m[1].get("risk") or 0.0)))
        sev, top = members[0]
        out.append(
            Alert(
                key=(system, cause),
                severity=sev,
                labels={
                    "alertname": _ALERTNAMES[cause],
                    "system": system,
                    "cause": cause,
                    "severity": sev,
                    "service": "precovery",
                },
                annotations=_annotations(system, cause, members, top, link),
            )
        )
    if "telemetry_lost" in conditions:
        out.append(
            Alert(
                key=("*", "telemetry_lost"),
                severity="P2",
                labels={
                    "alertname": _ALERTNAMES["telemetry_lost"],
                    "system": "*",
                    "cause": "telemetry_lost",
                    "severity": "P2",
                    "service": "precovery",
                },
                annotations={
                    "summary": "Precovery receives no telemetry: it is blind, not the fleet down",
                    "description": "No input record for longer than the feed-loss limit. "
                    "Failover recommendations stop until input returns; check the producers "
                    "and the Kafka cluster.",
                },
            )
        )
    return out


_ALERTNAMES = {
    "failure_risk": "PrecoveryFailureRisk",
    "heartbeat": "PrecoveryHeartbeatMissed",
    "telemetry_lost": "PrecoveryTelemetryLost",
}


def _money(v: Any) -> str:
    return "n/a" if v is None else f"${float(v):,.0f}"


def _annotations(
    system: str,
    cause: str,
    members: list[tuple[str, Mapping[str, Any]]],
    top: Mapping[str, Any],
    link: str,
) -> dict[str, str]:
    risk = top.get("risk")
    risk_txt = "n/a" if risk is None else f"{100 * float(risk):.0f}%"
    comps = ", ".join(f"{r['component']} ({r['action']})" for _, r in members)
    reasons = "; ".join(
        f"{r.get('feature')}={r.get('value')}" for r in (top.get("reasons") or [])[:3]
    )
    exposure = top.get("exposure_usd") or {}
    notes = {
        "summary": f"{system}: {top['action']} on {top['component']} ({cause}, risk {risk_txt})",
        "description": f"Components: {comps}. Why: {reasons or 'n/a'}. "
        f"Expected loss of staying {_money(top.get('expected_loss_stay_usd'))} vs cost of "
        f"switching {_money(top.get('expected_cost_switch_usd'))}; gross exposure "
        f"{_money(exposure.get('gross'))}.",
        "expected_loss_stay_usd": _money(top.get("expected_loss_stay_usd")),
        "expected_cost_switch_usd": _money(top.get("expected_cost_switch_usd")),
        "recommendation_id": str(top.get("recommendation_id", "")),
        "issued_at": str(top.get("issued_at", "")),
    }
    if top.get("not_before"):
        notes["not_before"] = str(top["not_before"])
    if link:
        notes["console"] = f"{link}{system}"
    return notes
