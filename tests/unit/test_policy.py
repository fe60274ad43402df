"""The failover decision (DESIGN §4): its properties, as property tests."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from predictor.events import SESSION_CODE, SESSIONS
from predictor.market import CostConfig, Exposure, MarketArrays
from predictor.policy import (
    ACTIONS,
    AT_WINDOW,
    NONE,
    NOW,
    PREPARE,
    URGENCY,
    WATCH,
    Decision,
    PolicyConfig,
    decide,
)
from tests.factories import exposure, market_arrays

HORIZON_S = 1800.0
money = st.floats(min_value=0.0, max_value=5e8, allow_nan=False)
probability = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def exposures(draw: st.DrawFn) -> Exposure:
    return Exposure.single(
        net_usd=draw(st.floats(min_value=-5e8, max_value=5e8, allow_nan=False)),
        gross_usd=draw(money),
        open_orders=draw(st.integers(min_value=0, max_value=50_000)),
    )


@st.composite
def markets(draw: st.DrawFn, sessions: tuple[str, ...] = SESSIONS) -> MarketArrays:
    return MarketArrays.single(
        volatility_bps_per_min=draw(st.floats(min_value=0.0, max_value=100.0)),
        spread_bps=draw(st.floats(min_value=0.0, max_value=200.0)),
        depth_usd=draw(st.floats(min_value=0.0, max_value=1e9)),
        session=draw(st.sampled_from(sessions)),
        event_risk=draw(st.booleans()),
    )


windows = st.one_of(st.just(float("nan")), st.floats(min_value=0.0, max_value=4 * HORIZON_S))


@st.composite
def policies(draw: st.DrawFn) -> PolicyConfig:
    a, b, c = sorted(draw(st.lists(probability, min_size=3, max_size=3)))
    return PolicyConfig(watch_risk=a, prepare_risk=b, act_risk=c)


def run(
    risk: float,
    e: Exposure,
    m: MarketArrays,
    window_s: float = float("nan"),
    heartbeat_missed: bool = False,
    policy: PolicyConfig | None = None,
    costs: CostConfig | None = None,
) -> Decision:
    return decide(
        np.array([risk]),
        np.array([heartbeat_missed]),
        e,
        m,
        np.array([window_s]),
        policy or PolicyConfig(),
        costs or CostConfig(),
        HORIZON_S,
    )


@settings(max_examples=400)
@given(exposures(), markets(), windows, probability, probability, policies())
def test_higher_risk_never_less_urgent(
    e: Exposure, m: MarketArrays, window: float, p1: float, p2: float, policy: PolicyConfig
) -> None:
    lo, hi = sorted((p1, p2))
    a_lo = int(run(lo, e, m, window, policy=policy).action[0])
    a_hi = int(run(hi, e, m, window, policy=policy).action[0])
    assert a_hi >= a_lo, (ACTIONS[a_lo], ACTIONS[a_hi])


@given(
    st.lists(probability, min_size=2, max_size=30),
    exposures(),
    markets(),
    windows,
)
def test_monotone_over_a_vectorised_sweep(
    risks: list[float], e: Exposure, m: MarketArrays, window: float
) -> None:
    """The same property, many risks decided in one vectorised call."""
    p = np.sort(np.array(risks))
    n = len(p)

    def tile(a: np.ndarray) -> np.ndarray:
        return np.repeat(a, n)

    d = decide(
        p,
        np.zeros(n, dtype=bool),
        Exposure(tile(e.net_usd), tile(e.gross_usd), tile(e.open_orders)),
        MarketArrays(*(tile(getattr(m, f)) for f in MarketArrays.__slots__)),
        np.full(n, window),
        PolicyConfig(),
        CostConfig(),
        HORIZON_S,
    )
    assert np.all(np.diff(d.action.astype(int)) >= 0), d.action


@settings(max_examples=200)
@given(probability, markets(sessions=("closed",)), windows)
def test_zero_exposure_closed_market_switching_is_never_dearer_than_staying(
    p: float, m: MarketArrays, window: float
) -> None:
    d = run(p, exposure(0.0, 0.0, 0), m, window)
    assert d.cost_switch_now_usd[0] <= d.expected_loss_stay_usd[0]
    assert d.expected_cost_switch_usd[0] <= d.expected_loss_stay_usd[0]


@given(probability, exposures(), markets(), windows, st.booleans())
def test_same_inputs_same_decision(
    p: float, e: Exposure, m: MarketArrays, window: float, hb: bool
) -> None:
    a, b = run(p, e, m, window, hb), run(p, e, m, window, hb)
    for f in Decision.__slots__:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


@given(probability, exposures(), markets(), windows)
def test_heartbeat_missed_is_failover_now_whatever_the_risk(
    p: float, e: Exposure, m: MarketArrays, window: float
) -> None:
    assert int(run(p, e, m, window, heartbeat_missed=True).action[0]) == NOW


@given(probability, exposures(), markets(), windows)
def test_thresholds_bound_the_action(p: float, e: Exposure, m: MarketArrays, window: float) -> None:
    pol = PolicyConfig()
    action = int(run(p, e, m, window, policy=pol).action[0])
    if p < pol.watch_risk:
        assert action == NONE
    elif p < pol.prepare_risk:
        assert action == WATCH
    elif p < pol.early_act_risk:
        assert action == PREPARE
    elif p < pol.act_risk:  # a failover only when the dollars are clear
        d = run(p, e, m, window, policy=pol)
        clear = d.expected_loss_stay_usd[0] >= pol.early_act_margin * d.expected_cost_switch_usd[0]
        assert action == PREPARE or (action > PREPARE and clear)
    else:
        assert action >= PREPARE


@given(probability, exposures(), markets(), windows)
def test_dollar_terms_are_consistent(p: float, e: Exposure, m: MarketArrays, window: float) -> None:
    d = run(p, e, m, window)
    assert np.isclose(d.expected_loss_stay_usd[0], p * d.outage_loss_usd[0])
    assert d.expected_cost_switch_usd[0] == min(
        d.cost_switch_now_usd[0], d.cost_switch_window_usd[0]
    )
    assert d.cost_switch_now_usd[0] >= 0 and d.outage_loss_usd[0] >= 0
    if not (np.isfinite(window) and window > 0):
        assert d.cost_switch_window_usd[0] == np.inf and np.isnan(d.window_in_s[0])
    action = int(d.action[0])
    if action in (AT_WINDOW, NOW):
        assert d.expected_loss_stay_usd[0] >= d.expected_cost_switch_usd[0]
    if action == AT_WINDOW:
        assert d.cost_switch_window_usd[0] < d.cost_switch_now_usd[0]


def test_urgency_order_matches_action_codes() -> None:
    assert [URGENCY[a] for a in ACTIONS] == list(range(len(ACTIONS)))
    assert ACTIONS[0] == "none" and ACTIONS[-1] == "failover_now"


def test_high_risk_big_book_in_continuous_trading_fails_over_now() -> None:
    d = run(0.95, exposure(10e6, 40e6, 100), market_arrays(session="continuous"))
    assert ACTIONS[int(d.action[0])] == "failover_now"


def test_auction_with_a_near_window_waits_for_it() -> None:
    """In an auction switching is penalised; a window soon after makes waiting cheaper."""
    e = exposure(50e6, 400e6, 50)
    auction = market_arrays(
        volatility_bps_per_min=5.0, session="opening_auction", spread_bps=5.0, depth_usd=1e6
    )
    now_only = run(0.7, e, auction)
    with_window = run(0.7, e, auction, window_s=60.0)
    assert int(now_only.action[0]) == NOW
    assert int(with_window.action[0]) == AT_WINDOW
    assert with_window.cost_switch_window_usd[0] < with_window.cost_switch_now_usd[0]


def test_vectorised_rows_are_independent() -> None:
    risks = np.array([0.05, 0.3, 0.5, 0.95])
    n = len(risks)
    e = Exposure(np.full(n, 10e6), np.full(n, 40e6), np.full(n, 100.0))
    m = MarketArrays(
        np.full(n, 2.0),
        np.full(n, 1.0),
        np.full(n, 5e6),
        np.full(n, SESSION_CODE["continuous"]),
        np.zeros(n, dtype=bool),
    )
    together = decide(
        risks,
        np.zeros(n, dtype=bool),
        e,
        m,
        np.full(n, np.nan),
        PolicyConfig(),
        CostConfig(),
        HORIZON_S,
    )
    alone = [
        int(run(float(p), exposure(10e6, 40e6, 100), market_arrays()).action[0]) for p in risks
    ]
    assert together.action.tolist() == alone
    # 0.5 is below act_risk, but staying (11,500 USD) costs over 3x the switch (1,318 USD)
    assert alone == [NONE, WATCH, NOW, NOW]


def test_nan_risk_is_treated_as_zero() -> None:
    d = run(float("nan"), exposure(), market_arrays())
    assert int(d.action[0]) == NONE and d.expected_loss_stay_usd[0] == 0.0
