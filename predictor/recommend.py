"""A recommendation (recommendations.v1, docs/contracts.md) from a decision at a tick.

The id hashes (system, component, action, tick time, epoch, model version): the same
input gives the same id, so replays are idempotent. A recommendation explains itself:
the hard rule that fired, or LightGBM's own top contributions for the component's
riskiest host (computed only here, where they are needed), with the dollar terms, the
exposure and the market it was decided on.

A pure function of explicit state: :class:`EngineState` names every attribute it reads
(the engine has them), and :class:`RecommendationInput` what the tick decided.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from predictor.context import ComponentContext, Context
from predictor.events import SESSIONS, ms_to_iso
from predictor.features import FeatureState
from predictor.policy import ACTIONS, Decision
from predictor.registry import Registry
from predictor.risk import RiskModel
from predictor.sites import Sites
from predictor.topology import Topology, authority_check
from predictor.views import usd

logger = logging.getLogger(__name__)


class EngineState(Protocol):
    """What building a recommendation reads of the engine."""

    registry: Registry
    context: Context
    features: FeatureState
    model: RiskModel | None
    risk: np.ndarray
    dead: np.ndarray
    latest: np.ndarray
    comp_health: np.ndarray
    topology: Topology
    sites: Sites

    @property
    def horizon_s(self) -> float: ...

    @property
    def model_version(self) -> str | None: ...

    @property
    def top_reasons(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RecommendationInput:
    """One component's decision at one tick."""

    component: int
    action: int
    t_ms: int
    epoch: int
    decision: Decision
    comp_risk: np.ndarray
    context: ComponentContext
    #: Which context was stale at this tick: ``positions``, ``market``.
    stale_context: tuple[str, ...] = ()


def build_recommendation(state: EngineState, inp: RecommendationInput) -> dict[str, Any]:
    """The recommendations.v1 record of ``inp``, explained."""
    reg = state.registry
    c, t_ms, d = inp.component, inp.t_ms, inp.decision
    system, component = reg.comp_keys[c]
    s = int(reg.comp_system[c])
    hosts = reg.comp_slots[c]
    reasons: list[dict[str, Any]] = []
    dead_hosts = [h for h in hosts if state.dead[h]]
    if dead_hosts:
        h = dead_hosts[0]
        age = (t_ms - int(state.features.last_ts[h])) / 1000.0
        reasons.append(
            {"feature": "heartbeat_missed_s", "value": round(age, 1), "contribution": None}
        )
    elif state.model is not None:
        worst = max(hosts, key=lambda h: -1.0 if np.isnan(state.risk[h]) else state.risk[h])
        explained = state.model.explain(state.latest[worst : worst + 1], state.top_reasons)
        reasons = [r.as_dict() for r in explained[0]]
    risk = inp.comp_risk[c]
    model_version = state.model_version
    name = ACTIONS[inp.action]
    ident = f"{system}|{component}|{name}|{t_ms}|{inp.epoch}|{model_version}"
    market = inp.context.market
    vidx = int(inp.context.venue[c])
    window = d.window_in_s[c]
    exposure = state.context.system_exposure(s)
    declared = state.topology.system(system).authority
    authority, holds, breached = authority_check(declared, exposure, inp.stale_context)
    rec = {
        "recommendation_id": hashlib.sha256(ident.encode()).hexdigest()[:32],
        "epoch": inp.epoch,
        "issued_at": ms_to_iso(t_ms),
        "system": system,
        "component": component,
        "action": name,
        "not_before": (
            ms_to_iso(t_ms + int(window * 1000)) if name == "failover_at_window" else None
        ),
        "risk": None if np.isnan(risk) else round(float(risk), 4),
        "horizon_s": state.horizon_s,
        "health": round(float(state.comp_health[c]), 1),
        "expected_loss_stay_usd": usd(d.expected_loss_stay_usd[c]),
        "expected_cost_switch_usd": usd(d.expected_cost_switch_usd[c]),
        "cost_switch_now_usd": usd(d.cost_switch_now_usd[c]),
        "cost_switch_at_window_usd": usd(d.cost_switch_window_usd[c]),
        "outage_loss_usd": usd(d.outage_loss_usd[c]),
        "exposure_usd": exposure,
        "criticality": round(float(d.criticality[c]), 3),
        "active_site": state.sites.name(s),
        "failover_site": state.sites.name(s, standby=True),
        "authority": authority,
        "authority_declared": declared.mode,
        "auto_limits_hold": holds,
        "auto_limits_breached": breached,
        "stale_context": list(inp.stale_context),
        "decision_reasons": decision_reasons(d, c, name, bool(state.dead[hosts].any())),
        "market": {
            "venue": reg.venue_names[vidx] if vidx >= 0 else None,
            "session": SESSIONS[int(market.session[c])],
            "volatility_bps_per_min": round(float(market.volatility_bps_per_min[c]), 3),
            "spread_bps": round(float(market.spread_bps[c]), 3),
            "depth_usd": usd(market.depth_usd[c]),
            "event_risk": bool(market.event_risk[c]),
            "window_in_s": None if np.isnan(window) else round(float(window), 1),
        },
        "reasons": reasons,
        "model_version": model_version,
    }
    logger.debug("recommendation %s %s/%s %s", rec["recommendation_id"], system, component, name)
    return rec


def decision_reasons(d: Decision, c: int, action: str, dead: bool) -> list[str]:
    """Why this action, in words, with the dollar figures that decided it (USD)."""
    stay, now = float(d.expected_loss_stay_usd[c]), float(d.cost_switch_now_usd[c])
    win = float(d.cost_switch_window_usd[c])
    out = [
        f"expected loss of staying {stay:,.0f} USD (outage loss "
        f"{float(d.outage_loss_usd[c]):,.0f} USD x criticality {float(d.criticality[c]):g} "
        "x risk)",
        f"switch now costs {now:,.0f} USD",
    ]
    if np.isfinite(win):
        out.append(
            f"switch at the window in {float(d.window_in_s[c]):,.0f} s costs {win:,.0f} USD "
            "(including the risk of failing before it)"
        )
    if dead:
        out.append("heartbeat missed: failing now, fail over at once whatever the cost")
    elif bool(d.stale[c]):
        out.append("stale context: no failover on untrusted dollars; standby warmed")
    elif action in ("failover_now", "failover_at_window"):
        best = "now" if action == "failover_now" else "at the window"
        out.append(f"staying costs more than switching; switching {best} is cheapest")
    return out
