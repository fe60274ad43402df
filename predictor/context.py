"""Context of the decisions: positions per system and market conditions per venue.

One rule for every mode (embedded, Kafka, replay, backtest): a positions.v1 or market.v1
record takes effect at the first decision tick at or after its event time. Records are
buffered on arrival (:meth:`Context.add_positions`, :meth:`Context.add_market`) and
applied in event-time order by :meth:`Context.apply_due` just before the engine decides
at a tick; per system (positions) and per venue (market) the newest record wins, so a
late or repeated record never moves the state back. A driver therefore never decides
*when* context applies: it only makes sure that what is due by a tick has been handed
over before the telemetry that crosses it (the Kafka driver's frontier does that).

>>> from predictor.registry import Registry
>>> ctx = Context(Registry())
>>> ctx.add_market([{"ts": 1767618000000, "venue": "XNYS", "volatility_bps_per_min": 4.0,
...                  "spread_bps": 1.0, "depth_usd": 1e7, "session": "continuous"}])
[]
>>> ctx.apply_due(1767617990000), ctx.apply_due(1767618000000)
(0, 1)
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from predictor.events import (
    SESSIONS,
    MarketState,
    Position,
    Reject,
    parse_market,
    parse_position,
    validated,
)
from predictor.market import (
    CLOSING_AUCTION,
    CONTINUOUS,
    OPENING_AUCTION,
    CostConfig,
    Exposure,
    MarketArrays,
)
from predictor.registry import Registry, grow

#: Version of :meth:`Context.snapshot`'s layout.
SNAPSHOT_VERSION = 1

#: Until a venue reports, assume it is open and ordinary: the conservative guess for an
#: outage, neither free nor penalised for a switch.
DEFAULT_VOL_BPS_PER_MIN = 2.0
DEFAULT_SPREAD_BPS = 2.0
DEFAULT_DEPTH_USD = 5e6

_SYSTEM_FIELDS: dict[str, tuple[type, float | int]] = {
    "venue": (np.int64, -1),
    "net": (np.float64, 0.0),
    "gross": (np.float64, 0.0),
    "orders": (np.float64, 0.0),
    "positions_ts": (np.int64, 0),
}
_VENUE_FIELDS: dict[str, tuple[type, float | int | bool]] = {
    "vol": (np.float64, DEFAULT_VOL_BPS_PER_MIN),
    "spread": (np.float64, DEFAULT_SPREAD_BPS),
    "depth": (np.float64, DEFAULT_DEPTH_USD),
    "session": (np.int64, CONTINUOUS),
    "event": (np.bool_, False),
    "ts": (np.int64, 0),
    "session_since": (np.int64, 0),
    "event_since": (np.int64, 0),
}


@dataclass(frozen=True, slots=True)
class ComponentContext:
    """What the policy needs per component at one tick."""

    exposure: Exposure
    market: MarketArrays
    #: Seconds to the next safer window (end of auction or event risk), NaN when none.
    window_s: np.ndarray
    #: Venue index per component (-1: unknown).
    venue: np.ndarray


class Context:
    """Positions and market state, with the records not yet due."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.sys: dict[str, np.ndarray] = {
            k: np.full(8, fill, dtype=dt) for k, (dt, fill) in _SYSTEM_FIELDS.items()
        }
        self.ven: dict[str, np.ndarray] = {
            k: np.full(4, fill, dtype=dt) for k, (dt, fill) in _VENUE_FIELDS.items()
        }
        #: Heap of (ts_ms, seq, record) not yet applied; ``seq`` keeps arrival order.
        self._pending: list[tuple[int, int, Position | MarketState]] = []
        self._seq = 0
        self.applied_ms: int | None = None

    # -- input ------------------------------------------------------------------------
    def add_positions(self, objs: Iterable[Any]) -> list[Reject]:
        """Buffer positions.v1 records (objects or :class:`Position`); returns rejects."""
        return self._add(objs, Position, parse_position)

    def add_market(self, objs: Iterable[Any]) -> list[Reject]:
        """Buffer market.v1 records (objects or :class:`MarketState`); returns rejects."""
        return self._add(objs, MarketState, parse_market)

    def _add(self, objs: Iterable[Any], kind: type, parse: Any) -> list[Reject]:
        rejects = []
        for i, obj in enumerate(objs):
            try:
                item = cast(
                    "Position | MarketState",
                    obj if isinstance(obj, kind) else validated(parse, obj),
                )
            except Exception as exc:  # ValidationError, named by validated()
                rejects.append(Reject(i, getattr(exc, "reason", "invalid"), str(exc)[:200]))
                continue
            self._seq += 1
            heapq.heappush(self._pending, (item.ts_ms, self._seq, item))
        return rejects

    @property
    def pending(self) -> int:
        return len(self._pending)

    def apply_due(self, t_ms: int) -> int:
        """Apply every buffered record with event time ≤ ``t_ms``, oldest first."""
        n = 0
        while self._pending and self._pending[0][0] <= t_ms:
            _, _, item = heapq.heappop(self._pending)
            if isinstance(item, Position):
                self._apply_position(item)
            else:
                self._apply_market(item)
            n += 1
        self.applied_ms = t_ms if self.applied_ms is None else max(self.applied_ms, t_ms)
        return n

    # -- state per system / venue ------------------------------------------------------
    def ensure_systems(self, n: int) -> None:
        for k, (_dt, fill) in _SYSTEM_FIELDS.items():
            self.sys[k] = grow(self.sys[k], n, fill)

    def ensure_venues(self, n: int) -> None:
        for k, (_dt, fill) in _VENUE_FIELDS.items():
            self.ven[k] = grow(self.ven[k], n, fill)

    def _apply_position(self, pos: Position) -> None:
        s = self.registry.system_index(pos.system)
        v = self.registry.venue_index(pos.venue)
        self.ensure_systems(s + 1)
        self.ensure_venues(v + 1)
        sys = self.sys
        if pos.ts_ms < sys["positions_ts"][s]:
            return
        sys["positions_ts"][s] = pos.ts_ms
        sys["venue"][s] = v
        sys["net"][s] = pos.net_notional_usd
        sys["gross"][s] = pos.gross_notional_usd
        sys["orders"][s] = pos.open_orders

    def _apply_market(self, m: MarketState) -> None:
        v = self.registry.venue_index(m.venue)
        self.ensure_venues(v + 1)
        ven = self.ven
        if m.ts_ms < ven["ts"][v]:
            return
        code = SESSIONS.index(m.session)
        if ven["ts"][v] == 0 or code != ven["session"][v]:
            ven["session_since"][v] = m.ts_ms
        if m.event_risk and not ven["event"][v]:
            ven["event_since"][v] = m.ts_ms
        ven["ts"][v] = m.ts_ms
        ven["vol"][v] = m.volatility_bps_per_min
        ven["spread"][v] = m.spread_bps
        ven["depth"][v] = m.depth_usd
        ven["session"][v] = code
        ven["event"][v] = m.event_risk

    def venue_of_systems(self, systems: np.ndarray) -> np.ndarray:
        """Venue per system: from its positions, else from the configuration, else -1."""
        reg = self.registry
        self.ensure_systems(reg.n_systems)
        from_positions = self.sys["venue"][systems]
        default = reg.system_default_venue[systems]
        return np.where(from_positions >= 0, from_positions, default)

    def for_components(
        self, comp_system: np.ndarray, t_ms: int, costs: CostConfig
    ) -> ComponentContext:
        """Exposure, market and the next safer window per component, at tick ``t_ms``."""
        reg = self.registry
        self.ensure_systems(reg.n_systems)
        self.ensure_venues(reg.n_venues)
        sys, ven = self.sys, self.ven
        exposure = Exposure(
            sys["net"][comp_system], sys["gross"][comp_system], sys["orders"][comp_system]
        )
        venue = self.venue_of_systems(comp_system)
        known = venue >= 0
        v = np.maximum(venue, 0)

        def pick(arr: np.ndarray, default: float | int | bool) -> np.ndarray:
            return np.where(known, arr[v], default)

        market = MarketArrays(
            pick(ven["vol"], DEFAULT_VOL_BPS_PER_MIN),
            pick(ven["spread"], DEFAULT_SPREAD_BPS),
            pick(ven["depth"], DEFAULT_DEPTH_USD),
            pick(ven["session"], CONTINUOUS),
            pick(ven["event"], False),
        )
        window = np.full(len(comp_system), np.nan)
        sess = market.session
        in_auction = (sess == OPENING_AUCTION) | (sess == CLOSING_AUCTION)
        auction_end = ven["session_since"][v] + costs.auction_length_s * 1000
        event_end = ven["event_since"][v] + costs.event_risk_length_s * 1000
        ends = np.where(in_auction, auction_end, -np.inf)
        ends = np.where(market.event_risk, np.maximum(ends, event_end), ends)
        # Elevated volatility alone: expect it to calm down volatility_calm_s from now.
        elevated = market.volatility_bps_per_min > costs.calm_volatility_bps_per_min
        calm_at = t_ms + costs.volatility_calm_s * 1000
        ends = np.where(elevated & ~np.isfinite(ends), calm_at, ends)
        has = known & np.isfinite(ends)
        # A window that should already have opened is assumed to open within 30 s.
        window[has] = np.maximum((ends[has] - t_ms) / 1000.0, 30.0)
        return ComponentContext(exposure, market, window, venue)

    def stale(
        self,
        comp_system: np.ndarray,
        venue: np.ndarray,
        t_ms: int,
        positions_s: float,
        market_s: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per component: positions stale?, market stale? (a record seen, then older than
        ``positions_s`` / ``market_s`` at ``t_ms``).

        Context never received is not flagged: the documented defaults apply to it.
        """
        pos_ts = self.sys["positions_ts"][comp_system]
        stale_pos = (pos_ts > 0) & (t_ms - pos_ts > positions_s * 1000)
        mkt_ts = np.where(venue >= 0, self.ven["ts"][np.maximum(venue, 0)], 0)
        stale_mkt = (mkt_ts > 0) & (t_ms - mkt_ts > market_s * 1000)
        return stale_pos, stale_mkt

    def system_exposure(self, s: int) -> dict[str, Any]:
        self.ensure_systems(s + 1)
        return {
            "net": _usd(self.sys["net"][s]),
            "gross": _usd(self.sys["gross"][s]),
            "open_orders": int(self.sys["orders"][s]),
        }

    def venue_market(self, v: int) -> dict[str, Any]:
        self.ensure_venues(v + 1)
        ven = self.ven
        return {
            "venue": self.registry.venue_names[v],
            "session": SESSIONS[int(ven["session"][v])],
            "volatility_bps_per_min": round(float(ven["vol"][v]), 3),
            "spread_bps": round(float(ven["spread"][v]), 3),
            "depth_usd": _usd(ven["depth"][v]),
            "event_risk": bool(ven["event"][v]),
        }

    # -- state ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        ns, nv = self.registry.n_systems, self.registry.n_venues
        self.ensure_systems(ns)
        self.ensure_venues(nv)
        return {
            "version": SNAPSHOT_VERSION,
            "systems": {k: a[:ns].copy() for k, a in self.sys.items()},
            "venues": {k: a[:nv].copy() for k, a in self.ven.items()},
            "pending": sorted(self._pending),
            "seq": self._seq,
            "applied_ms": self.applied_ms,
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        if snap.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"context snapshot version {snap.get('version')!r} unsupported")
        for k, a in snap["systems"].items():
            self.sys[k] = grow(np.array(a, dtype=self.sys[k].dtype), 8, _SYSTEM_FIELDS[k][1])
        for k, a in snap["venues"].items():
            self.ven[k] = grow(np.array(a, dtype=self.ven[k].dtype), 4, _VENUE_FIELDS[k][1])
        self._pending = list(snap["pending"])
        heapq.heapify(self._pending)
        self._seq = int(snap["seq"])
        self.applied_ms = snap["applied_ms"]


def _usd(v: Any) -> float | None:
    f = float(v)
    return None if not np.isfinite(f) else round(f, 2)
