"""A recommendation (recommendations.v1, DESIGN.md §2) from a decision at a tick.

The id hashes (system, component, action, tick time, epoch, model version): the same
input gives the same id, so replays are idempotent. Building one bumps the system's
fencing epoch and explains it: the hard rule that fired, or LightGBM's own top
contributions for the component's riskiest host (computed only here, where they are
needed).
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from predictor.events import SESSIONS, ms_to_iso
from predictor.market import MarketArrays
from predictor.policy import ACTIONS
from predictor.views import usd

if TYPE_CHECKING:
    from predictor.engine import Engine

logger = logging.getLogger(__name__)


def build_recommendation(
    self: Engine,
    c: int,
    action: int,
    t_ms: int,
    d: Any,
    comp_risk: np.ndarray,
    market: MarketArrays,
) -> dict[str, Any]:
    system, component = self._comp_keys[c]
    s = int(self.comp_system[c])
    self.sys_epoch[s] += 1
    epoch = int(self.sys_epoch[s])
    hosts = self._comp_slots[c]
    reasons: list[dict[str, Any]] = []
    dead_hosts = [h for h in hosts if self.dead[h]]
    if dead_hosts:
        h = dead_hosts[0]
        age = (t_ms - int(self.features.last_ts[h])) / 1000.0
        reasons.append(
            {"feature": "heartbeat_missed_s", "value": round(age, 1), "contribution": None}
        )
    elif self.model is not None:
        worst = max(hosts, key=lambda h: -1.0 if np.isnan(self.risk[h]) else self.risk[h])
        explained = self.model.explain(self.latest[worst : worst + 1], self.config.top_reasons)
        reasons = [r.as_dict() for r in explained[0]]
    risk = comp_risk[c]
    model_version = self.model_version
    name = ACTIONS[action]
    ident = f"{system}|{component}|{name}|{t_ms}|{epoch}|{model_version}"
    vidx = int(self.sys_venue[s])
    window = d.window_in_s[c]
    rec = {
        "recommendation_id": hashlib.sha256(ident.encode()).hexdigest()[:32],
        "epoch": epoch,
        "issued_at": ms_to_iso(t_ms),
        "system": system,
        "component": component,
        "action": name,
        "not_before": (
            ms_to_iso(t_ms + int(window * 1000)) if name == "failover_at_window" else None
        ),
        "risk": None if np.isnan(risk) else round(float(risk), 4),
        "horizon_s": self.horizon_s,
        "health": round(float(self.comp_health[c]), 1),
        "expected_loss_stay_usd": usd(d.expected_loss_stay_usd[c]),
        "expected_cost_switch_usd": usd(d.expected_cost_switch_usd[c]),
        "cost_switch_now_usd": usd(d.cost_switch_now_usd[c]),
        "cost_switch_at_window_usd": usd(d.cost_switch_window_usd[c]),
        "outage_loss_usd": usd(d.outage_loss_usd[c]),
        "exposure_usd": {
            "net": usd(self.sys_net[s]),
            "gross": usd(self.sys_gross[s]),
            "open_orders": int(self.sys_orders[s]),
        },
        "market": {
            "venue": self._venue_names[vidx] if vidx >= 0 else None,
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
    self.latest_rec[c] = rec
    self.counters["recommendations"] += 1
    logger.debug("recommendation %s %s/%s %s", rec["recommendation_id"], system, component, name)
    return rec
