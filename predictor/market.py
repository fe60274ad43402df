"""Market context and the dollar cost model of DESIGN.md §4.

Every term is in US dollars and every parameter carries its unit in its name. The
model, for a book of net notional ``N``, gross ``G``, ``O`` open orders, volatility
``σ`` (bps per √minute), spread ``s`` (bps) and depth ``d`` (USD):

- unplanned outage over ``D_u`` minutes (what staying risks)::

    L_out = |N|·σ·1e-4·√D_u·0.8  +  O·c_order·D_u  +  [open]·c_flow·D_u

- planned switch over ``D_p`` minutes (what failing over costs)::

    C = ( |N|·σ·1e-4·√D_p·0.8  +  O·c_order·D_p  +  [open]·c_flow·D_p
          + f·G·(s/2)·1e-4  +  f·G·k·1e-4·min(f·G/d, 5) ) × penalty

  where ``f`` is the share of the book re-crossed (cancel/replace), ``k`` the slippage
  per unit of notional-to-depth, and ``penalty`` multiplies in auctions and around
  event risk. 0.8 ≈ E|N(0, 1)|.

With zero exposure and a closed market both are zero, so failing over is never dearer
than staying implies.

>>> c = CostConfig()
>>> m = MarketArrays.single(volatility_bps_per_min=2.0, spread_bps=1.0, depth_usd=5e6,
...                         session="continuous", event_risk=False)
>>> e = Exposure.single(net_usd=10e6, gross_usd=40e6, open_orders=100)
>>> round(float(outage_loss(e, m, c)[0])), round(float(switch_cost(e, m, c)[0]))
(23000, 1318)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from predictor.events import SESSION_CODE

CLOSED = SESSION_CODE["closed"]
OPENING_AUCTION = SESSION_CODE["opening_auction"]
CLOSING_AUCTION = SESSION_CODE["closing_auction"]
CONTINUOUS = SESSION_CODE["continuous"]


@dataclass(frozen=True, slots=True)
class CostConfig:
    """Parameters of the cost model; seed values from DESIGN.md §4.

    Attributes
    ----------
    unplanned_recovery_min
        Expected unplanned recovery time D_u, minutes (seed: 18-32).
    planned_switch_min
        Planned failover duration D_p, minutes (seed: 15-30 s).
    stranded_order_usd_per_min
        Cost of one open order left unmanaged, USD per minute.
    lost_flow_usd_per_min
        Flow (commissions, spread capture) lost per minute a system is down while the
        market is open, USD per minute.
    cancel_replace_fraction
        Share of gross notional resting as orders that are cancelled and re-placed
        across the spread during a switch, 0-1.
    depth_slippage_bps
        Slippage in bps per unit of (re-placed notional / depth), capped at 5 units.
    auction_penalty
        Multiplier on the switch cost during opening/closing auctions.
    event_risk_penalty
        Multiplier on the switch cost during an event-risk window.
    auction_length_s
        Expected length of an auction, seconds (when the next safe window comes).
    event_risk_length_s
        Expected length of an event-risk window, seconds.
    calm_volatility_bps_per_min
        Volatility above this (bps per √minute) is *elevated*: a calmer window is
        expected ``volatility_calm_s`` later, at this volatility.
    volatility_calm_s
        Expected time for elevated volatility to calm down, seconds.
    """

    unplanned_recovery_min: float = 25.0
    planned_switch_min: float = 0.4
    stranded_order_usd_per_min: float = 2.0
    lost_flow_usd_per_min: float = 400.0
    cancel_replace_fraction: float = 0.02
    depth_slippage_bps: float = 2.0
    auction_penalty: float = 3.0
    event_risk_penalty: float = 2.0
    auction_length_s: float = 300.0
    event_risk_length_s: float = 900.0
    calm_volatility_bps_per_min: float = 4.0
    volatility_calm_s: float = 900.0


@dataclass(frozen=True, slots=True)
class Exposure:
    """Exposure per row (one row per component, usually), USD and counts."""

    net_usd: np.ndarray
    gross_usd: np.ndarray
    open_orders: np.ndarray

    @classmethod
    def single(cls, net_usd: float, gross_usd: float, open_orders: float) -> Exposure:
        return cls(np.array([net_usd]), np.array([gross_usd]), np.array([float(open_orders)]))


@dataclass(frozen=True, slots=True)
class MarketArrays:
    """Market conditions per row; ``session`` holds codes of ``events.SESSIONS``."""

    volatility_bps_per_min: np.ndarray
    spread_bps: np.ndarray
    depth_usd: np.ndarray
    session: np.ndarray
    event_risk: np.ndarray

    @classmethod
    def single(
        cls,
        volatility_bps_per_min: float,
        spread_bps: float,
        depth_usd: float,
        session: str,
        event_risk: bool,
    ) -> MarketArrays:
        return cls(
            np.array([volatility_bps_per_min]),
            np.array([spread_bps]),
            np.array([depth_usd]),
            np.array([SESSION_CODE[session]]),
            np.array([event_risk]),
        )

    def calmer(self, calm_volatility_bps_per_min: float = np.inf) -> MarketArrays:
        """The same market after the safer window: continuous, no event risk, volatility
        at most ``calm_volatility_bps_per_min``."""
        in_auction = (self.session == OPENING_AUCTION) | (self.session == CLOSING_AUCTION)
        return replace(
            self,
            session=np.where(in_auction, CONTINUOUS, self.session),
            event_risk=np.zeros_like(self.event_risk, dtype=bool),
            volatility_bps_per_min=np.minimum(
                self.volatility_bps_per_min, calm_volatility_bps_per_min
            ),
        )


def _market_terms(e: Exposure, m: MarketArrays, c: CostConfig, minutes: float) -> np.ndarray:
    is_open = m.session != CLOSED
    vol = np.abs(e.net_usd) * m.volatility_bps_per_min * 1e-4 * np.sqrt(minutes) * 0.8
    orders = e.open_orders * c.stranded_order_usd_per_min * minutes
    flow = np.where(is_open, c.lost_flow_usd_per_min * minutes, 0.0)
    return np.asarray(vol + orders + flow)


def outage_loss(e: Exposure, m: MarketArrays, c: CostConfig) -> np.ndarray:
    """Expected loss of an unplanned outage, USD."""
    return _market_terms(e, m, c, c.unplanned_recovery_min)


def switch_cost(e: Exposure, m: MarketArrays, c: CostConfig) -> np.ndarray:
    """Cost of a planned failover now, USD."""
    recross = c.cancel_replace_fraction * e.gross_usd
    spread = recross * m.spread_bps / 2.0 * 1e-4
    depth_ratio = np.minimum(recross / np.maximum(m.depth_usd, 1.0), 5.0)
    slippage = recross * c.depth_slippage_bps * 1e-4 * depth_ratio
    in_auction = (m.session == OPENING_AUCTION) | (m.session == CLOSING_AUCTION)
    penalty = np.where(in_auction, c.auction_penalty, 1.0) * np.where(
        m.event_risk, c.event_risk_penalty, 1.0
    )
    base = _market_terms(e, m, c, c.planned_switch_min) + spread + slippage
    return np.asarray(base * penalty)
