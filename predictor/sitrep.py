"""Situation reports: while a system is at ``prepare_standby`` or worse, a short report
every ``report_every_s`` of event time (default 300 s) on the recommendations stream.

A report (``"kind": "situation_report"``, docs/contracts.md) says what is failing (the
components at ``watch`` or worse, with risk and health), the risk trend since the last
report, the exposure, the market and what changed since the last report. The first one
comes ``report_every_s`` after the system reached ``prepare_standby`` (the
recommendation itself announced it); they stop when the system drops below it. A report
carries the system's current fencing ``epoch`` without bumping it (it decides nothing)
and a deterministic ``report_id``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from predictor.context import ComponentContext, Context
from predictor.escalation import Escalation
from predictor.events import ms_to_iso
from predictor.policy import ACTIONS, PREPARE, WATCH
from predictor.registry import Registry, grow
from predictor.sites import Sites
from predictor.topology import Topology

#: A risk move of at least this much between two reports is a trend, else ``steady``.
TREND_STEP = 0.05
#: A relative exposure move of at least this much is reported as a change.
EXPOSURE_STEP = 0.10


#: Version of the ``reports`` part of the engine's snapshot (the report clocks).
SNAPSHOT_VERSION = 1


class Reports:
    """Per system: when its last report was (event ms, -1: none) and what it said; and
    the reports due but not yet taken (:meth:`take`).

    >>> book = Reports()
    >>> book.ensure(2)
    >>> book.last_ms[:2].tolist(), book.take()
    ([-1, -1], [])
    """

    def __init__(self) -> None:
        self.last_ms = np.full(8, -1, dtype=np.int64)
        self.last: dict[int, dict[str, Any]] = {}
        self.pending: list[dict[str, Any]] = []

    def ensure(self, n: int) -> None:
        """Room for ``n`` systems (new ones without a report)."""
        self.last_ms = grow(self.last_ms, n, -1)

    def clear(self) -> None:
        """No system at ``prepare_standby`` or above: no report clock runs (what
        :func:`situation_reports` does to each system below it)."""
        self.last_ms[:] = -1
        self.last.clear()

    def take(self) -> list[dict[str, Any]]:
        """The reports due since the last call; they are the caller's now."""
        out, self.pending = self.pending, []
        return out

    def snapshot(self, n: int) -> dict[str, Any]:
        """The report clocks of the first ``n`` systems (reports not taken stay out)."""
        return {"version": SNAPSHOT_VERSION, "last_ms": self.last_ms[:n], "last": self.last}

    def restore(self, snap: Mapping[str, Any] | None) -> None:
        """The clocks of ``snap``; an absent part or another version leaves none (the
        next report of a system at ``prepare_standby`` comes a full period later)."""
        if snap is not None and snap.get("version") == SNAPSHOT_VERSION:
            self.last_ms = grow(np.asarray(snap["last_ms"], dtype=np.int64), 8, -1)
            self.last = {int(k): v for k, v in snap["last"].items()}


class ReportState(Protocol):
    """What situation reports read of the engine (and ``sitreps``, which they update)."""

    registry: Registry
    context: Context
    escalation: Escalation
    topology: Topology
    comp_health: np.ndarray
    sys_epoch: np.ndarray
    sites: Sites
    sitreps: Reports


def situation_reports(
    state: ReportState,
    t_ms: int,
    comp_risk: np.ndarray,
    ctx: ComponentContext,
    stale: tuple[np.ndarray, np.ndarray],
    every_ms: int,
) -> list[dict[str, Any]]:
    """The reports due at tick ``t_ms`` (updates the report clocks in ``state``)."""
    reg, book = state.registry, state.sitreps
    nc, ns = reg.n_components, reg.n_systems
    actions = state.escalation.action[:nc]
    comp_system = reg.comp_system[:nc]
    sys_action = np.zeros(ns, dtype=np.int8)
    np.maximum.at(sys_action, comp_system, actions)
    out = []
    for s in range(ns):
        if sys_action[s] < PREPARE:
            book.last_ms[s] = -1
            book.last.pop(s, None)
            continue
        last = int(book.last_ms[s])
        if last < 0:  # just reached prepare_standby: the recommendation said so
            book.last_ms[s] = t_ms
            continue
        if t_ms - last < every_ms:
            continue
        rep = _report(state, s, t_ms, int(sys_action[s]), comp_risk, ctx, stale, every_ms)
        book.last_ms[s] = t_ms
        book.last[s] = rep
        out.append(rep)
    return out


def _report(
    state: ReportState,
    s: int,
    t_ms: int,
    action: int,
    comp_risk: np.ndarray,
    ctx: ComponentContext,
    stale: tuple[np.ndarray, np.ndarray],
    every_ms: int,
) -> dict[str, Any]:
    reg = state.registry
    system = reg.system_names[s]
    comps = [c for c in range(reg.n_components) if int(reg.comp_system[c]) == s]
    failing = [
        {
            "component": reg.comp_keys[c][1],
            "action": ACTIONS[int(state.escalation.action[c])],
            "risk": None if np.isnan(comp_risk[c]) else round(float(comp_risk[c]), 4),
            "health": round(float(state.comp_health[c]), 1),
        }
        for c in comps
        if int(state.escalation.action[c]) >= WATCH
    ]
    risks = [f["risk"] for f in failing if f["risk"] is not None]
    max_risk = max(risks) if risks else None
    prev = state.sitreps.last.get(s)
    prev_risk = prev["max_risk"] if prev else None
    if max_risk is None or prev_risk is None:
        trend = "unknown" if max_risk is None else "new"
    elif max_risk >= prev_risk + TREND_STEP:
        trend = "rising"
    elif max_risk <= prev_risk - TREND_STEP:
        trend = "falling"
    else:
        trend = "steady"
    v = int(ctx.venue[comps[0]]) if comps else -1
    market = state.context.venue_market(v) if v >= 0 else None
    exposure = state.context.system_exposure(s)
    stale_pos, stale_mkt = stale
    stale_ctx = [
        name
        for name, flags in (("positions", stale_pos), ("market", stale_mkt))
        if any(bool(flags[c]) for c in comps)
    ]
    rep: dict[str, Any] = {
        "kind": "situation_report",
        "report_id": hashlib.sha256(
            f"{system}|report|{t_ms}|{int(state.sys_epoch[s])}".encode()
        ).hexdigest()[:32],
        "epoch": int(state.sys_epoch[s]),
        "issued_at": ms_to_iso(t_ms),
        "since": prev["issued_at"] if prev else ms_to_iso(t_ms - every_ms),
        "system": system,
        "action": ACTIONS[action],
        "active_site": state.sites.name(s),
        "failing": failing,
        "max_risk": max_risk,
        "previous_max_risk": prev_risk,
        "risk_trend": trend,
        "exposure_usd": exposure,
        "market": market,
        "stale_context": stale_ctx,
        "changes": [],
    }
    rep["changes"] = _changes(prev, rep)
    return rep


def _changes(prev: dict[str, Any] | None, rep: dict[str, Any]) -> list[str]:
    """What changed since ``prev``, in words (the first report: everything is new)."""
    if prev is None:
        return [f"first report at {rep['action']}"]
    out = []
    if prev["action"] != rep["action"]:
        out.append(f"action {prev['action']} -> {rep['action']}")
    before = {f["component"]: f["action"] for f in prev["failing"]}
    now = {f["component"]: f["action"] for f in rep["failing"]}
    for comp in sorted(set(now) - set(before)):
        out.append(f"{comp} now {now[comp]}")
    for comp in sorted(set(before) - set(now)):
        out.append(f"{comp} recovered")
    for comp in sorted(set(now) & set(before)):
        if now[comp] != before[comp]:
            out.append(f"{comp} {before[comp]} -> {now[comp]}")
    if prev["active_site"] != rep["active_site"]:
        out.append(f"active site {prev['active_site']} -> {rep['active_site']}")
    g0, g1 = (prev["exposure_usd"].get("gross") or 0.0), (rep["exposure_usd"].get("gross") or 0.0)
    if abs(g1 - g0) >= EXPOSURE_STEP * max(abs(g0), 1.0):
        out.append(f"gross exposure {g0:,.0f} -> {g1:,.0f} USD")
    m0, m1 = prev["market"] or {}, rep["market"] or {}
    if m0.get("session") != m1.get("session"):
        out.append(f"session {m0.get('session')} -> {m1.get('session')}")
    if m0.get("event_risk") != m1.get("event_risk"):
        out.append(f"event risk {'on' if m1.get('event_risk') else 'off'}")
    if prev["stale_context"] != rep["stale_context"]:
        out.append("context stale" if rep["stale_context"] else "context fresh again")
    return out or ["no change"]
