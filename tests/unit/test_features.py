"""Streaming features: what they measure, and that state handling never changes them."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predictor.features import ENTITY_FEATURES, PER_METRIC, Z_CAP, FeatureState
from tests.factories import INTERVAL_MS, T0_MS

METRICS = ("cpu_pct", "mem_pct")


def col(fs: FeatureState, metric: str, feature: str) -> int:
    return fs.feature_names.index(f"{metric}__{feature}")


def noisy(n: int, seed: int = 0, level: float = 50.0, sd: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return level + sd * rng.standard_normal((n, len(METRICS)))


def one_entity(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(n, dtype=np.int64), T0_MS + INTERVAL_MS * np.arange(n, dtype=np.int64)


def interleaved(n_entities: int, steps: int, seed: int) -> tuple[np.ndarray, ...]:
    """A time-ordered stream of ``n_entities`` with jittered times and a few gaps."""
    rng = np.random.default_rng(seed)
    slots = np.tile(np.arange(n_entities), steps)
    ts = T0_MS + np.repeat(np.arange(steps), n_entities) * INTERVAL_MS
    ts = ts + rng.integers(0, 3000, len(ts))
    x = 30.0 + rng.standard_normal((len(ts), len(METRICS)))
    x[rng.random(x.shape) < 0.05] = np.nan
    x[len(x) // 2 :: 37, 0] += 25.0  # some spikes
    order = np.argsort(ts, kind="stable")
    return slots[order], ts[order], x[order]


def test_feature_names_layout() -> None:
    fs = FeatureState(METRICS)
    assert len(fs.feature_names) == len(METRICS) * len(PER_METRIC) + len(ENTITY_FEATURES)
    out = fs.update(*one_entity(3), noisy(3))
    assert out.shape == (3, len(fs.feature_names)) and out.dtype == np.float32


def test_ramp_gives_positive_slope_long_and_flat_gives_small_one() -> None:
    n = 720  # two hours at 10 s
    slots, ts = one_entity(n)
    ramp = noisy(n, sd=0.5)
    ramp[:, 1] += np.linspace(0.0, 30.0, n)  # mem_pct leaks
    fs = FeatureState(METRICS)
    out = fs.update(slots, ts, ramp)
    leak = out[-1, col(fs, "mem_pct", "slope_long")]
    flat = out[-1, col(fs, "cpu_pct", "slope_long")]
    assert leak > 0
    assert abs(flat) < leak / 5
    assert out[-1, col(fs, "mem_pct", "level_z")] > 1.0
    assert out[-1, col(fs, "mem_pct", "slope_short")] > 0


def test_spike_gives_large_z_after_warmup() -> None:
    n = 200
    x = noisy(n, sd=1.0)
    x[-1, 0] += 15.0
    fs = FeatureState(METRICS)
    out = fs.update(*one_entity(n), x)
    z = col(fs, "cpu_pct", "z")
    assert out[-1, z] > 8
    assert np.abs(out[100:-1, z]).max() < 5
    assert out[-1, fs.feature_names.index("max_abs_z")] == pytest.approx(out[-1, z])
    assert out[-1, col(fs, "cpu_pct", "value")] == pytest.approx(x[-1, 0])


def test_z_is_zero_before_warmup_and_capped_after() -> None:
    fs = FeatureState(METRICS, warmup=10)
    x = np.full((40, 2), 10.0)
    x[5, 0] = 30.0  # before warmup: no z yet
    x[-1, 0] = 1e9  # after warmup
    out = fs.update(*one_entity(40), x)
    z = col(fs, "cpu_pct", "z")
    assert (out[:10, z] == 0.0).all()
    assert out[-1, z] == Z_CAP
    assert out[-1, col(fs, "cpu_pct", "level_z")] <= Z_CAP


def test_one_spike_does_not_blind_the_baseline() -> None:
    n = 300
    x = noisy(n, sd=1.0)
    x[150, 0] += 500.0  # winsorised: the baseline barely moves
    x[-1, 0] += 10.0
    fs = FeatureState(METRICS)
    out = fs.update(*one_entity(n), x)
    assert out[-1, col(fs, "cpu_pct", "z")] > 5


def test_gap_is_seconds_since_the_entity_previous_event() -> None:
    fs = FeatureState(METRICS)
    ts = np.array([T0_MS, T0_MS + 10_000, T0_MS + 45_000], dtype=np.int64)
    out = fs.update(np.zeros(3, dtype=np.int64), ts, noisy(3))
    assert out[:, fs.feature_names.index("gap_s")].tolist() == [0.0, 10.0, 35.0]


def test_nan_metric_leaves_that_metric_state_unchanged() -> None:
    fs = FeatureState(METRICS)
    fs.update(*one_entity(100), noisy(100))
    before = fs.snapshot()["arrays"]
    row = np.array([[np.nan, 55.0]])
    out = fs.update(np.array([0]), np.array([T0_MS + 100 * INTERVAL_MS]), row)
    after = fs.snapshot()["arrays"]
    for k in ("mu_f", "mu_m", "mu_s", "var_s"):
        assert after[k][0, 0] == before[k][0, 0] or (
            np.isnan(after[k][0, 0]) and np.isnan(before[k][0, 0])
        ), k
        assert after[k][0, 1] != before[k][0, 1], k  # the present metric did move
    assert np.isnan(out[0, col(fs, "cpu_pct", "value")])
    assert out[0, col(fs, "cpu_pct", "z")] == 0.0 or np.isnan(out[0, col(fs, "cpu_pct", "z")])


def test_entities_do_not_share_state() -> None:
    n = 150
    x = noisy(2 * n)
    slots = np.tile([0, 1], n)
    ts = T0_MS + np.repeat(np.arange(n), 2) * INTERVAL_MS
    x_spiky = x.copy()
    x_spiky[::2][100:, 0] += 40.0  # entity 0 goes wild
    a = FeatureState(METRICS).update(slots, ts, x)
    b = FeatureState(METRICS).update(slots, ts, x_spiky)
    np.testing.assert_array_equal(a[1::2], b[1::2])
    assert not np.array_equal(a[::2], b[::2])


def test_snapshot_round_trip_gives_identical_next_outputs() -> None:
    slots, ts, x = interleaved(5, 200, seed=1)
    half = len(slots) // 2
    fs = FeatureState(METRICS, capacity=2)  # forces growth on the way
    fs.update(slots[:half], ts[:half], x[:half])
    snap = pickle.loads(pickle.dumps(fs.snapshot()))
    restored = FeatureState.from_snapshot(snap)
    assert restored.get_params() == fs.get_params()
    a = fs.update(slots[half:], ts[half:], x[half:])
    b = restored.update(slots[half:], ts[half:], x[half:])
    np.testing.assert_array_equal(a, b)


def test_snapshot_is_a_copy() -> None:
    fs = FeatureState(METRICS)
    fs.update(*one_entity(10), noisy(10))
    snap = fs.snapshot()
    n_before = snap["arrays"]["n"].copy()
    fs.update(np.array([0]), np.array([T0_MS + 10**6]), noisy(1))
    np.testing.assert_array_equal(snap["arrays"]["n"], n_before)


@settings(max_examples=20)
@given(
    st.lists(st.integers(min_value=1, max_value=1199), max_size=40, unique=True),
    st.integers(min_value=0, max_value=3),
)
def test_batch_split_invariance(cuts: list[int], seed: int) -> None:
    slots, ts, x = interleaved(6, 200, seed=seed)
    whole = FeatureState(METRICS).update(slots, ts, x)
    fs = FeatureState(METRICS, capacity=1)
    bounds = [0, *sorted(cuts), len(slots)]
    parts = [
        fs.update(slots[lo:hi], ts[lo:hi], x[lo:hi])
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_ensure_grows_and_keeps_state() -> None:
    fs = FeatureState(METRICS, capacity=2)
    fs.update(np.array([0, 1]), np.array([T0_MS, T0_MS]), noisy(2))
    mu = fs.mu_s[:2].copy()
    fs.ensure(100)
    assert fs.capacity >= 100
    np.testing.assert_array_equal(fs.mu_s[:2], mu)
    assert np.isnan(fs.mu_s[2:]).all() and (fs.n[2:] == 0).all()
