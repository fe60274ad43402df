"""Market-aware decision properties (hypothesis): exposure, switch cost, staleness,
criticality; each compares two decisions that differ in one input only."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from predictor.events import SESSIONS
from predictor.market import CostConfig, Exposure, MarketArrays
from predictor.policy import NOW, PREPARE, Decision, PolicyConfig, decide

HORIZON_S = 1800.0
probability = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
windows = st.one_of(st.just(float("nan")), st.floats(min_value=0.0, max_value=4 * HORIZON_S))


@st.composite
def markets(draw: st.DrawFn) -> MarketArrays:
    return MarketArrays.single(
        volatility_bps_per_min=draw(st.floats(min_value=0.0, max_value=100.0)),
        spread_bps=draw(st.floats(min_value=0.0, max_value=200.0)),
        depth_usd=draw(st.floats(min_value=0.0, max_value=1e9)),
        session=draw(st.sampled_from(SESSIONS)),
        event_risk=draw(st.booleans()),
    )


@st.composite
def books(draw: st.DrawFn) -> tuple[float, float, int]:
    return (
        draw(st.floats(min_value=-5e8, max_value=5e8, allow_nan=False)),
        draw(st.floats(min_value=0.0, max_value=5e8, allow_nan=False)),
        draw(st.integers(min_value=0, max_value=50_000)),
    )


def run(
    risk: float,
    book: tuple[float, float, int],
    m: MarketArrays,
    window_s: float,
    costs: CostConfig | None = None,
    criticality: float = 1.0,
    stale: bool = False,
    dead: bool = False,
) -> Decision:
    return decide(
        np.array([risk]),
        np.array([dead]),
        Exposure.single(*book),
        m,
        np.array([window_s]),
        PolicyConfig(),
        costs or CostConfig(),
        HORIZON_S,
        criticality=np.array([criticality]),
        stale=np.array([stale]),
    )


@settings(max_examples=300)
@given(
    probability,
    books(),
    st.floats(min_value=1.0, max_value=100.0),
    st.integers(min_value=0, max_value=50_000),
    markets(),
    windows,
)
def test_more_exposure_never_lowers_the_loss_of_staying(
    risk: float,
    book: tuple[float, float, int],
    scale: float,
    more_orders: int,
    m: MarketArrays,
    window_s: float,
) -> None:
    net, gross, orders = book
    bigger = (net * scale, gross * scale, orders + more_orders)
    a, b = run(risk, book, m, window_s), run(risk, bigger, m, window_s)
    assert b.expected_loss_stay_usd[0] >= a.expected_loss_stay_usd[0] - 1e-6
    assert b.outage_loss_usd[0] >= a.outage_loss_usd[0] - 1e-6


@settings(max_examples=300)
@given(
    probability,
    books(),
    markets(),
    windows,
    st.floats(min_value=0.0, max_value=0.5),
    st.floats(min_value=0.0, max_value=200.0),
    st.floats(min_value=1.0, max_value=10.0),
)
def test_a_dearer_switch_never_makes_switching_now_more_attractive(
    risk: float,
    book: tuple[float, float, int],
    m: MarketArrays,
    window_s: float,
    more_recross: float,
    more_spread: float,
    penalty: float,
) -> None:
    cheap = CostConfig()
    dear = replace(
        cheap,
        cancel_replace_fraction=cheap.cancel_replace_fraction + more_recross,
        auction_penalty=cheap.auction_penalty * penalty,
        event_risk_penalty=cheap.event_risk_penalty * penalty,
    )
    wider = replace(m, spread_bps=m.spread_bps + more_spread)
    for costs, market in ((dear, m), (cheap, wider), (dear, wider)):
        d = run(risk, book, market, window_s, costs)
        base = run(risk, book, m, window_s, cheap)
        assert d.cost_switch_now_usd[0] >= base.cost_switch_now_usd[0] - 1e-6
        if d.action[0] == NOW:  # switching now under the dearer switch: so under the cheaper
            assert base.action[0] == NOW


@settings(max_examples=300)
@given(probability, books(), markets(), windows, st.booleans())
def test_stale_context_never_yields_a_more_aggressive_action(
    risk: float, book: tuple[float, float, int], m: MarketArrays, window_s: float, dead: bool
) -> None:
    fresh = run(risk, book, m, window_s, dead=dead)
    stale = run(risk, book, m, window_s, stale=True, dead=dead)
    assert stale.action[0] <= fresh.action[0]
    if not dead:  # no forecast failover on untrusted dollars
        assert stale.action[0] <= PREPARE
    else:  # the heartbeat rule needs no dollars
        assert stale.action[0] == NOW


@settings(max_examples=300)
@given(probability, books(), markets(), windows, probability, probability)
def test_a_less_critical_component_is_never_more_urgent(
    risk: float,
    book: tuple[float, float, int],
    m: MarketArrays,
    window_s: float,
    c1: float,
    c2: float,
) -> None:
    lo, hi = sorted((c1, c2))
    a, b = (
        run(risk, book, m, window_s, criticality=lo),
        run(risk, book, m, window_s, criticality=hi),
    )
    assert a.expected_loss_stay_usd[0] <= b.expected_loss_stay_usd[0] + 1e-6
    # switching pays for the less critical one only if it pays for the more critical one
    if a.action[0] >= 3:
        assert b.action[0] >= 3


def test_criticality_scales_the_loss_not_the_switch() -> None:
    m = MarketArrays.single(2.0, 1.0, 5e6, "continuous", False)
    book = (10e6, 40e6, 100)
    full = run(0.9, book, m, float("nan"))
    tenth = run(0.9, book, m, float("nan"), criticality=0.05)
    assert np.isclose(tenth.outage_loss_usd[0], full.outage_loss_usd[0] * 0.05)
    assert tenth.cost_switch_now_usd[0] == full.cost_switch_now_usd[0]
    assert full.action[0] == NOW and tenth.action[0] < full.action[0]
