"""Read-only views of an engine's state, for the API and the terminal.

Functions of an :class:`~predictor.engine.Engine` (its methods of the same names call
them): the engine stays about the loop, these about presenting it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from predictor.errors import UnknownEntityError
from predictor.events import SESSIONS, ms_to_iso
from predictor.policy import ACTIONS

if TYPE_CHECKING:
    from predictor.engine import Engine


def systems_view(self: Engine) -> list[dict[str, Any]]:
    """One summary per system: health, worst component, most urgent action.

    Vectorised over components (the stream publishes this at every tick).
    """
    nc, n = len(self._comp_keys), self.n_entities
    if nc == 0:
        return []
    sys_of = self.comp_system[:nc]
    health = self.comp_health[:nc]
    risk = np.full(nc, -np.inf)
    known = ~np.isnan(self.risk[:n])
    np.maximum.at(risk, self.slot_comp[:n][known], self.risk[:n][known])
    order = np.lexsort((health, sys_of))  # by system, then worst health first
    bounds = np.searchsorted(sys_of[order], np.arange(len(self._system_names) + 1))
    out = []
    for s, name in enumerate(self._system_names):
        comps = order[bounds[s] : bounds[s + 1]]
        if len(comps) == 0:
            continue
        worst = int(comps[0])
        max_risk = float(risk[comps].max())
        out.append(
            {
                "system": name,
                "health": round(float(self.sys_health[s]), 1),
                "worst_component": self._comp_keys[worst][1],
                "worst_component_health": round(float(health[worst]), 1),
                "max_risk": None if np.isinf(max_risk) else round(max_risk, 4),
                "action": ACTIONS[int(self.comp_action[comps].max())],
                "components": len(comps),
                "epoch": int(self.sys_epoch[s]),
            }
        )
    return out


def comp_risk(self: Engine, c: int) -> float:
    vals = [self.risk[h] for h in self._comp_slots[c] if not np.isnan(self.risk[h])]
    return max(vals) if vals else float("nan")


def system_view(self: Engine, system: str) -> dict[str, Any]:
    """Components, hosts, exposure and market of one system."""
    s = self._system.get(system)
    if s is None:
        raise UnknownEntityError(f"unknown system {system!r}")
    wm = self.watermark_ms or 0
    comps = []
    for c, (_sys, component) in enumerate(self._comp_keys):
        if self.comp_system[c] != s:
            continue
        hosts = [
            {
                "host": self._keys[h][2],
                "health": round(float(self.host_health[h]), 1),
                "risk": round_or_none(self.risk[h]),
                "anomaly_score": round(float(self.anomaly[h]), 4),
                "heartbeat_age_s": round((wm - int(self.features.last_ts[h])) / 1000.0, 1),
                "heartbeat_missed": bool(self.dead[h]),
            }
            for h in self._comp_slots[c]
        ]
        comps.append(
            {
                "component": component,
                "critical": bool(self.comp_critical[c]),
                "health": round(float(self.comp_health[c]), 1),
                "risk": round_or_none(comp_risk(self, c)),
                "action": ACTIONS[int(self.comp_action[c])],
                "hosts": hosts,
                "latest_recommendation": self.latest_rec.get(c),
            }
        )
    v = int(self.sys_venue[s])
    market = None
    if v >= 0:
        market = {
            "venue": self._venue_names[v],
            "session": SESSIONS[int(self.v_session[v])],
            "volatility_bps_per_min": round(float(self.v_vol[v]), 3),
            "spread_bps": round(float(self.v_spread[v]), 3),
            "depth_usd": usd(self.v_depth[v]),
            "event_risk": bool(self.v_event[v]),
        }
    return {
        "system": system,
        "health": round(float(self.sys_health[s]), 1),
        "as_of": ms_to_iso(wm) if wm else None,
        "epoch": int(self.sys_epoch[s]),
        "exposure_usd": {
            "net": usd(self.sys_net[s]),
            "gross": usd(self.sys_gross[s]),
            "open_orders": int(self.sys_orders[s]),
        },
        "market": market,
        "components": comps,
        "model_version": self.model_version,
        "horizon_s": self.horizon_s,
    }


def usd(v: float | np.floating[Any]) -> float | None:
    """Dollars rounded to cents; None where not finite."""
    f = float(v)
    return None if not np.isfinite(f) else round(f, 2)


def round_or_none(v: float | np.floating[Any], nd: int = 4) -> float | None:
    f = float(v)
    return None if np.isnan(f) else round(f, nd)
