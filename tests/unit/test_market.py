"""The dollar cost model of DESIGN §4: units, terms and penalties."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from predictor.events import SESSION_CODE, SESSIONS
from predictor.market import CostConfig, MarketArrays, outage_loss, switch_cost
from tests.factories import exposure, market_arrays

#: Only the volatility term: no order, flow or crossing costs.
VOL_ONLY = CostConfig(
    stranded_order_usd_per_min=0.0,
    lost_flow_usd_per_min=0.0,
    cancel_replace_fraction=0.0,
)


def one(a: np.ndarray) -> float:
    assert a.shape == (1,)
    return float(a[0])


def test_volatility_term_is_net_times_sigma_sqrt_minutes() -> None:
    """|N|·σ·1e-4·√D·0.8, with σ in bps per √minute and D in minutes."""
    e = exposure(net_usd=-8e6, gross_usd=0.0, open_orders=0)
    m = market_arrays(volatility_bps_per_min=3.0)
    got = one(outage_loss(e, m, VOL_ONLY))
    assert got == pytest.approx(8e6 * 3.0 * 1e-4 * math.sqrt(VOL_ONLY.unplanned_recovery_min) * 0.8)
    planned = one(switch_cost(e, m, VOL_ONLY))
    assert planned == pytest.approx(
        got * math.sqrt(VOL_ONLY.planned_switch_min / VOL_ONLY.unplanned_recovery_min)
    )


def test_durations_are_minutes_orders_and_flow_scale_linearly() -> None:
    e = exposure(net_usd=0.0, gross_usd=0.0, open_orders=250)
    m = market_arrays(session="continuous")
    c = CostConfig(unplanned_recovery_min=10.0)
    base = one(outage_loss(e, m, c))
    assert base == pytest.approx(
        250 * c.stranded_order_usd_per_min * 10 + c.lost_flow_usd_per_min * 10
    )
    doubled = one(outage_loss(e, m, replace(c, unplanned_recovery_min=20.0)))
    assert doubled == pytest.approx(2 * base)


def test_closed_market_has_no_lost_flow() -> None:
    e = exposure(0.0, 0.0, 0)
    assert one(outage_loss(e, market_arrays(session="closed"), CostConfig())) == 0.0
    assert one(outage_loss(e, market_arrays(session="continuous"), CostConfig())) > 0.0


@given(
    st.sampled_from(SESSIONS),
    st.booleans(),
    st.floats(0.0, 100.0),
    st.floats(0.0, 500.0),
    st.floats(0.0, 1e9),
)
def test_zero_exposure_closed_market_costs_nothing(
    session: str, event_risk: bool, vol: float, spread: float, depth: float
) -> None:
    e = exposure(0.0, 0.0, 0)
    m = market_arrays(vol, spread, depth, "closed", event_risk)
    assert one(outage_loss(e, m, CostConfig())) == 0.0
    assert one(switch_cost(e, m, CostConfig())) == 0.0
    # open sessions cost at least the lost flow, never less than closed
    m_open = market_arrays(vol, spread, depth, session, event_risk)
    assert one(outage_loss(e, m_open, CostConfig())) >= 0.0


@pytest.mark.parametrize("auction", ["opening_auction", "closing_auction"])
def test_auction_penalty_multiplies_switch_cost(auction: str) -> None:
    e = exposure()
    c = CostConfig()
    cont = one(switch_cost(e, market_arrays(session="continuous"), c))
    auc = one(switch_cost(e, market_arrays(session=auction), c))
    assert auc == pytest.approx(c.auction_penalty * cont)
    assert auc > cont
    # the outage itself is not penalised
    assert one(outage_loss(e, market_arrays(session=auction), c)) == pytest.approx(
        one(outage_loss(e, market_arrays(session="continuous"), c))
    )


def test_event_risk_penalty_multiplies_switch_cost() -> None:
    e, c = exposure(), CostConfig()
    calm = one(switch_cost(e, market_arrays(event_risk=False), c))
    risky = one(switch_cost(e, market_arrays(event_risk=True), c))
    assert risky == pytest.approx(c.event_risk_penalty * calm)
    both = one(switch_cost(e, market_arrays(session="closing_auction", event_risk=True), c))
    assert both == pytest.approx(c.event_risk_penalty * c.auction_penalty * calm)


def test_wider_spread_and_thinner_depth_cost_more() -> None:
    e, c = exposure(), CostConfig()
    base = one(switch_cost(e, market_arrays(spread_bps=1.0, depth_usd=5e6), c))
    assert one(switch_cost(e, market_arrays(spread_bps=4.0, depth_usd=5e6), c)) > base
    assert one(switch_cost(e, market_arrays(spread_bps=1.0, depth_usd=1e5), c)) > base
    # slippage is capped at 5 units of notional-to-depth: no depth is finite
    assert math.isfinite(one(switch_cost(e, market_arrays(depth_usd=0.0), c)))


@given(st.floats(-1e9, 1e9), st.floats(0, 1e9), st.integers(0, 10**5), st.sampled_from(SESSIONS))
def test_costs_are_non_negative_and_symmetric_in_net(
    net: float, gross: float, orders: int, session: str
) -> None:
    m = market_arrays(session=session)
    long_, short = exposure(net, gross, orders), exposure(-net, gross, orders)
    for f in (outage_loss, switch_cost):
        assert one(f(long_, m, CostConfig())) >= 0.0
        assert one(f(long_, m, CostConfig())) == pytest.approx(one(f(short, m, CostConfig())))


def test_calmer_ends_auctions_and_event_risk_only() -> None:
    codes = np.array([SESSION_CODE[s] for s in SESSIONS])
    n = len(codes)
    m = MarketArrays(np.ones(n), np.ones(n), np.ones(n), codes, np.ones(n, dtype=bool))
    calm = m.calmer()
    assert [SESSIONS[c] for c in calm.session] == [
        "closed",
        "pre_open",
        "continuous",
        "continuous",
        "continuous",
    ]
    assert not calm.event_risk.any()
    np.testing.assert_array_equal(m.session, codes)  # the original is untouched
