"""Read-only views of an engine's state, for the API, the terminal and health.v1.

Pure functions of explicit state: :class:`ViewState` names every attribute they read
(the engine has them), so the engine stays about the loop and these about presenting it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from predictor.errors import UnknownEntityError
from predictor.events import ms_to_iso
from predictor.policy import ACTIONS

if TYPE_CHECKING:
    from predictor.context import Context
    from predictor.escalation import Escalation
    from predictor.features import FeatureState
    from predictor.registry import Registry


class ViewState(Protocol):
    """What the views read of the engine."""

    registry: Registry
    context: Context
    escalation: Escalation
    features: FeatureState
    risk: np.ndarray
    anomaly: np.ndarray
    dead: np.ndarray
    host_health: np.ndarray
    comp_health: np.ndarray
    sys_health: np.ndarray
    sys_epoch: np.ndarray
    latest_rec: dict[int, dict[str, Any]]
    watermark_ms: int | None

    @property
    def horizon_s(self) -> float: ...

    @property
    def model_version(self) -> str | None: ...

    def active_site(self, system: str) -> str: ...


def systems_view(state: ViewState) -> list[dict[str, Any]]:
    """One summary per system: health, worst component, most urgent action.

    Vectorised over components (the stream publishes this at every tick).
    """
    reg = state.registry
    nc, n = reg.n_components, reg.n_entities
    if nc == 0:
        return []
    sys_of = reg.comp_system[:nc]
    health = state.comp_health[:nc]
    risk = np.full(nc, -np.inf)
    known = ~np.isnan(state.risk[:n])
    np.maximum.at(risk, reg.slot_comp[:n][known], state.risk[:n][known])
    order = np.lexsort((health, sys_of))  # by system, then worst health first
    bounds = np.searchsorted(sys_of[order], np.arange(reg.n_systems + 1))
    action = state.escalation.action
    out = []
    for s, name in enumerate(reg.system_names):
        comps = order[bounds[s] : bounds[s + 1]]
        if len(comps) == 0:
            continue
        worst = int(comps[0])
        max_risk = float(risk[comps].max())
        out.append(
            {
                "system": name,
                "health": round(float(state.sys_health[s]), 1),
                "worst_component": reg.comp_keys[worst][1],
                "worst_component_health": round(float(health[worst]), 1),
                "max_risk": None if np.isinf(max_risk) else round(max_risk, 4),
                "action": ACTIONS[int(action[comps].max())],
                "components": len(comps),
                "epoch": int(state.sys_epoch[s]),
            }
        )
    return out


def comp_risk(state: ViewState, c: int) -> float:
    """The riskiest host's risk of component ``c`` (NaN before any scoring)."""
    vals = [state.risk[h] for h in state.registry.comp_slots[c] if not np.isnan(state.risk[h])]
    return max(vals) if vals else float("nan")


def system_view(state: ViewState, system: str) -> dict[str, Any]:
    """Components, hosts, exposure and market of one system."""
    reg = state.registry
    s = reg.system.get(system)
    if s is None:
        raise UnknownEntityError(f"unknown system {system!r}")
    wm = state.watermark_ms or 0
    comps = []
    for c, (_sys, component) in enumerate(reg.comp_keys):
        if reg.comp_system[c] != s:
            continue
        hosts = [
            {
                "host": reg.keys[h][2],
                "health": round(float(state.host_health[h]), 1),
                "risk": round_or_none(state.risk[h]),
                "anomaly_score": round(float(state.anomaly[h]), 4),
                "heartbeat_age_s": round((wm - int(state.features.last_ts[h])) / 1000.0, 1),
                "heartbeat_missed": bool(state.dead[h]),
                **drift_fields(state, h),
            }
            for h in reg.comp_slots[c]
        ]
        comps.append(
            {
                "component": component,
                "critical": bool(reg.comp_critical[c]),
                "health": round(float(state.comp_health[c]), 1),
                "risk": round_or_none(comp_risk(state, c)),
                "action": ACTIONS[int(state.escalation.action[c])],
                "hosts": hosts,
                "latest_recommendation": state.latest_rec.get(c),
            }
        )
    ctx = state.context
    v = int(ctx.venue_of_systems(np.array([s]))[0])
    return {
        "system": system,
        "health": round(float(state.sys_health[s]), 1),
        "as_of": ms_to_iso(wm) if wm else None,
        "epoch": int(state.sys_epoch[s]),
        "active_site": state.active_site(system),
        "exposure_usd": ctx.system_exposure(s),
        "market": ctx.venue_market(v) if v >= 0 else None,
        "components": comps,
        "model_version": state.model_version,
        "horizon_s": state.horizon_s,
    }


def drift_fields(state: Any, h: int) -> dict[str, Any]:
    """Input drift of host slot ``h``: ADWIN detections and when the latest was."""
    watch = getattr(state, "drift", None)
    n, last_ms = watch.drifts(h) if watch is not None else (0, 0)
    return {"input_drifts": n, "input_drift_at": ms_to_iso(last_ms) if last_ms else None}


def input_drifts(state: Any) -> dict[str, int]:
    """``system/component/host`` → input drifts detected, for hosts with at least one."""
    watch = getattr(state, "drift", None)
    if watch is None:
        return {}
    hosts = np.flatnonzero(watch.count_[: len(state.registry.keys)])
    return {"/".join(state.registry.keys[h]): int(watch.count_[h]) for h in hosts.tolist()}


def usd(v: float | np.floating[Any]) -> float | None:
    """Dollars rounded to cents; None where not finite."""
    f = float(v)
    return None if not np.isfinite(f) else round(f, 2)


def round_or_none(v: float | np.floating[Any], nd: int = 4) -> float | None:
    f = float(v)
    return None if np.isnan(f) else round(f, nd)
