"""The failover decision: stay, switch now, or switch at the next safer window.

Vectorised over components: every argument is an array with one row per component, so
a whole fleet is decided in a few numpy operations per tick.

With ``p`` = P(failure within horizon H), ``L_out`` the outage loss, ``C_now`` the switch
cost now and ``C_w`` the switch cost in the calmer window that opens in ``w`` seconds
(``f = min(1, w / H)`` of the risk falls before it, assuming an even hazard over H)::

    L_stay   = p · L_out
    C_window = p·f · L_out + (1 - p·f) · C_w

Actions, from least to most urgent:

- ``none``                p < watch_risk
- ``watch``               p < prepare_risk
- ``prepare_standby``     p < act_risk, or staying is cheaper than any switch
- ``failover_at_window``  switching pays, and waiting for the window is cheaper
- ``failover_now``        switching pays now; or the heartbeat rule fired (failure *now*)

Switching *pays* at ``p ≥ act_risk`` when ``L_stay ≥ min(C_now, C_window)``, and already
at ``p ≥ early_act_risk`` when ``L_stay ≥ early_act_margin · min(C_now, C_window)``.

Higher risk never yields a less urgent action, all else equal: ``L_stay - C_window``
grows with ``p`` (its slope is ``(1-f)·L_out + f·C_w ≥ 0``), and once switching pays,
``C_window - C_now`` grows with ``p`` whenever the window can win at all.

>>> from predictor.market import CostConfig, Exposure, MarketArrays
>>> m = MarketArrays.single(2.0, 1.0, 5e6, "continuous", False)
>>> e = Exposure.single(10e6, 40e6, 100)
>>> d = decide(np.array([0.9]), np.array([False]), e, m, np.array([np.nan]),
...            PolicyConfig(), CostConfig(), horizon_s=1800.0)
>>> ACTIONS[int(d.action[0])], round(float(d.expected_loss_stay_usd[0]))
('failover_now', 20700)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from predictor.contracts import ACTIONS
from predictor.market import CostConfig, Exposure, MarketArrays, outage_loss, switch_cost

URGENCY = {name: i for i, name in enumerate(ACTIONS)}
NONE, WATCH, PREPARE, AT_WINDOW, NOW = range(5)


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Risk thresholds, as probabilities within the model's horizon.

    Attributes
    ----------
    watch_risk
        At or above: ``watch``.
    prepare_risk
        At or above: at least ``prepare_standby`` (warming DR is cheap).
    act_risk
        At or above, a failover is recommended whenever staying costs more than switching.
    early_act_risk, early_act_margin
        From ``early_act_risk`` (below ``act_risk``) a failover is recommended only when
        staying costs at least ``early_act_margin`` times the cheapest switch: a large,
        volatile book on a component about to fail is moved early, a small one waits.
    stale_positions_s, stale_market_s
        Context older than these bounds, seconds of event time, is *stale*: flagged in
        the recommendation and handled conservatively (see :func:`decide`).
    """

    watch_risk: float = 0.2
    prepare_risk: float = 0.4
    act_risk: float = 0.6
    #: Below act_risk, from this risk a failover may still be recommended when the
    #: dollars are clear: staying costs at least early_act_margin × the cheapest switch.
    early_act_risk: float = 0.4
    early_act_margin: float = 3.0
    #: Positions older than this (seconds of event time) are stale.
    stale_positions_s: float = 300.0
    #: Market state older than this (seconds of event time) is stale.
    stale_market_s: float = 180.0


@dataclass(frozen=True, slots=True)
class Decision:
    """Per-row outcome: action code (index into ``ACTIONS``) and its dollar terms."""

    action: np.ndarray
    expected_loss_stay_usd: np.ndarray
    expected_cost_switch_usd: np.ndarray
    cost_switch_now_usd: np.ndarray
    cost_switch_window_usd: np.ndarray
    outage_loss_usd: np.ndarray
    window_in_s: np.ndarray
    #: Share of the system's outage loss a failure of the row's component causes, 0-1.
    criticality: np.ndarray
    #: Rows whose positions or market were stale (their failover capped, see decide).
    stale: np.ndarray


def calm(risk: np.ndarray, heartbeat_missed: np.ndarray, policy: PolicyConfig) -> bool:
    """True when :func:`decide` would propose ``none`` for every row whatever the
    dollars: no heartbeat missed and every risk below the lowest threshold an action
    starts at (NaN risk counts 0). Most ticks of a healthy fleet; the engine then skips
    the context and the costs.

    >>> calm(np.array([0.05, np.nan]), np.zeros(2, dtype=bool), PolicyConfig())
    True
    >>> calm(np.array([0.05, 0.3]), np.zeros(2, dtype=bool), PolicyConfig())
    False
    """
    lowest = min(policy.watch_risk, policy.prepare_risk, policy.act_risk, policy.early_act_risk)
    # NaN compares False, as decide's nan_to_num makes it 0 (the thresholds are above 0).
    return not np.any(heartbeat_missed) and not np.any(np.asarray(risk) >= lowest)


def decide(
    risk: np.ndarray,
    heartbeat_missed: np.ndarray,
    exposure: Exposure,
    market: MarketArrays,
    window_in_s: np.ndarray,
    policy: PolicyConfig,
    costs: CostConfig,
    horizon_s: float,
    criticality: np.ndarray | None = None,
    stale: np.ndarray | None = None,
) -> Decision:
    """Decide every row; ``window_in_s`` is NaN where no calmer window is known.

    ``criticality`` (default 1) scales the outage loss of the row's component: a failing
    reporting job does not stop the book the way a failing order gateway does, while a
    switch moves the whole system and costs the same whichever component prompted it.

    Stale context (``stale`` True: positions or market older than their bound) is handled
    conservatively: the dollars cannot be trusted, so no *forecast* failover is proposed
    on them; the row is capped at ``prepare_standby`` (warming the standby is cheap and
    moves nothing) and the recommendation asks a person (authority ``approve``). The
    heartbeat rule still fails over at once: a dead component needs no dollars.
    """
    p = np.clip(np.nan_to_num(np.asarray(risk, dtype=np.float64), nan=0.0), 0.0, 1.0)
    crit = np.ones(len(p)) if criticality is None else np.asarray(criticality, dtype=np.float64)
    is_stale = np.zeros(len(p), dtype=bool) if stale is None else np.asarray(stale, dtype=bool)
    l_out = outage_loss(exposure, market, costs) * crit
    c_now = switch_cost(exposure, market, costs)
    has_window = np.isfinite(window_in_s) & (window_in_s > 0)
    f = np.where(has_window, np.minimum(1.0, np.nan_to_num(window_in_s) / horizon_s), 0.0)
    c_w = switch_cost(exposure, market.calmer(costs.calm_volatility_bps_per_min), costs)
    c_window = np.where(has_window, p * f * l_out + (1.0 - p * f) * c_w, np.inf)
    l_stay = p * l_out
    best = np.minimum(c_now, c_window)

    action = np.full(len(p), NONE, dtype=np.int8)
    action[p >= policy.watch_risk] = WATCH
    action[p >= policy.prepare_risk] = PREPARE
    switch = ((p >= policy.act_risk) & (l_stay >= best)) | (
        (p >= policy.early_act_risk) & (l_stay >= policy.early_act_margin * best)
    )
    action[switch & (c_window < c_now)] = AT_WINDOW
    action[switch & (c_window >= c_now)] = NOW
    action[is_stale & (action > PREPARE)] = PREPARE
    action[np.asarray(heartbeat_missed, dtype=bool)] = NOW
    return Decision(
        action=action,
        expected_loss_stay_usd=l_stay,
        expected_cost_switch_usd=best,
        cost_switch_now_usd=c_now,
        cost_switch_window_usd=c_window,
        outage_loss_usd=l_out,
        window_in_s=np.where(has_window, window_in_s, np.nan),
        criticality=crit,
        stale=is_stale,
    )
