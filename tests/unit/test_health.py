"""Health 0-100 per host, and its roll-ups to components and systems."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from predictor.detectors.calibration import score_from_bits
from predictor.health import (
    ANOMALY_WEIGHT,
    FULL_BITS,
    RISK_FLOOR,
    TAIL_BITS,
    anomaly_term,
    host_health,
    risk_term,
    roll_up_min,
    system_health,
)

unit_or_nan = st.one_of(st.floats(0.0, 1.0), st.just(float("nan")))
health_values = st.floats(0.0, 100.0)


@given(
    hnp.arrays(np.float64, 20, elements=unit_or_nan),
    hnp.arrays(np.float64, 20, elements=unit_or_nan),
    hnp.arrays(np.bool_, 20),
)
def test_host_health_is_in_range_and_dead_is_zero(
    risk: np.ndarray, anomaly: np.ndarray, dead: np.ndarray
) -> None:
    h = host_health(risk, anomaly, dead)
    assert h.shape == (20,)
    assert np.all((h >= 0) & (h <= 100))
    assert np.all(h[dead] == 0.0)


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_more_risk_or_anomaly_never_improves_health(r1: float, r2: float, a: float) -> None:
    lo, hi = sorted((r1, r2))
    h = host_health(np.array([lo, hi, a, a]), np.array([a, a, lo, hi]), np.zeros(4, dtype=bool))
    assert h[1] <= h[0] and h[3] <= h[2]


def test_host_health_terms() -> None:
    mid_bits = (TAIL_BITS + FULL_BITS) / 2
    h = host_health(
        np.array([0.3, np.nan, 0.0, np.nan]),
        score_from_bits(np.array([0.0, mid_bits, np.nan, 100.0])),
        np.array([False, False, False, False]),
    )
    expected_risk = 100.0 * (1 - (0.3 - RISK_FLOOR) / (1 - RISK_FLOOR))
    np.testing.assert_allclose(
        h, [expected_risk, 100.0 * (1 - ANOMALY_WEIGHT / 2), 100.0, 100.0 * (1 - ANOMALY_WEIGHT)]
    )


def test_nothing_unusual_reads_100() -> None:
    """Ordinary anomaly scores (below the tail threshold) and background risk cost nothing."""
    rng = np.random.default_rng(0)
    ordinary = score_from_bits(rng.uniform(0.0, TAIL_BITS, 1000))
    background = rng.uniform(0.0, RISK_FLOOR, 1000)
    h = host_health(background, ordinary, np.zeros(1000, dtype=bool))
    assert np.all(h == 100.0)
    # ...and evidence does cost: a tail anomaly or a real forecast.
    tail = host_health(
        np.array([0.0, 0.5]), score_from_bits(np.array([40.0, 0.0])), np.zeros(2, bool)
    )
    assert np.all(tail < 90.0)


@given(st.lists(st.tuples(health_values, st.integers(0, 4)), max_size=30))
def test_roll_up_min_is_the_group_minimum(rows: list[tuple[float, int]]) -> None:
    values = np.array([v for v, _ in rows])
    groups = np.array([g for _, g in rows], dtype=np.int64)
    out = roll_up_min(values, groups, 5)
    for g in range(5):
        members = [v for v, gg in rows if gg == g]
        assert out[g] == (min(members) if members else 100.0)


@given(
    st.lists(st.tuples(health_values, st.integers(0, 2), st.booleans()), min_size=1, max_size=20)
)
def test_system_health_bounded_by_critical_min_and_mean(
    rows: list[tuple[float, int, bool]],
) -> None:
    comp = np.array([v for v, _, _ in rows])
    sys = np.array([s for _, s, _ in rows], dtype=np.int64)
    crit = np.array([c for _, _, c in rows])
    out = system_health(comp, sys, crit, 3)
    assert np.all((out >= 0) & (out <= 100))
    for s in range(3):
        mine = [(v, c) for v, ss, c in rows if ss == s]
        if not mine:
            assert out[s] == 100.0
            continue
        mean = sum(v for v, _ in mine) / len(mine)
        assert out[s] <= mean + 1e-9
        critical = [v for v, c in mine if c]
        if critical:
            assert out[s] <= min(critical)
            assert out[s] == min(min(critical), mean) or np.isclose(
                out[s], min(min(critical), mean)
            )
        else:
            assert np.isclose(out[s], mean)


def test_sick_non_critical_parts_still_show() -> None:
    out = system_health(
        np.array([100.0, 0.0, 0.0]), np.array([0, 0, 0]), np.array([True, False, False]), 1
    )
    assert out[0] < 100.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(allow_nan=True, allow_infinity=True),
            st.floats(allow_nan=True, allow_infinity=True),
            st.booleans(),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_the_compiled_pass_is_the_formula_of_its_terms(
    rows: list[tuple[float, float, bool]],
) -> None:
    risk, anomaly, dead = (np.array(c) for c in zip(*rows, strict=True))
    with np.errstate(all="ignore"):  # the numpy terms overflow on ±max floats (to ±inf)
        want = np.where(
            dead,
            0.0,
            100.0 * (1.0 - np.clip(np.fmax(risk_term(risk), anomaly_term(anomaly)), 0.0, 1.0)),
        )
    np.testing.assert_allclose(host_health(risk, anomaly, dead), want, rtol=1e-12, atol=1e-9)
