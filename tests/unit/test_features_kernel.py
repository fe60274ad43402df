"""The features' compiled row loop against the numpy update it replaced.

``tests/data/features_reference.npz`` holds that numpy code's outputs and final state on
two streams (``tests/data/make_features_reference.py`` says which and writes it); the
numpy code itself is kept as the benchmark's baseline
(:func:`benchmarks.bench_kernels.numpy_update`) and checked live on generated streams.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.bench_kernels import numpy_update
from predictor.features import PER_METRIC, Z_CAP, FeatureState
from predictor.features_kernel import N_PER_METRIC
from predictor.features_kernel import Z_CAP as KERNEL_Z_CAP
from tests.data.make_features_reference import RAND_METRICS, STATE, rand_stream

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "features_reference.npz"
CASES = ("rand", "sim")
CAPACITY = {"rand": 4, "sim": 1024}  # as recorded: "rand" grows inside a call


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


def stream(ref: dict[str, np.ndarray], case: str) -> tuple[np.ndarray, ...]:
    return tuple(ref[f"{case}_{k}"] for k in ("slots", "ts", "x", "bounds"))


def fresh(ref: dict[str, np.ndarray], case: str) -> FeatureState:
    params: dict[str, Any] = json.loads(str(ref[f"{case}_params"]))
    return FeatureState(**params, capacity=CAPACITY[case])


def run(fs: FeatureState, slots: np.ndarray, ts: np.ndarray, x: np.ndarray, bounds: Any) -> Any:
    return np.concatenate([fs.update(slots[i:j], ts[i:j], x[i:j]) for i, j in pairwise(bounds)])


def assert_same_state(a: FeatureState, b: FeatureState) -> None:
    """Bit for bit on the slots both have (capacity doubles when a call needs it, so it
    depends on the chunking); the slots only one has were never used."""
    k = min(a.capacity, b.capacity)
    for name in STATE:
        np.testing.assert_array_equal(getattr(a, name)[:k], getattr(b, name)[:k], err_msg=name)
    assert not a.n[k:].any() and not b.n[k:].any()


def test_layout_constants_agree() -> None:
    assert N_PER_METRIC == len(PER_METRIC)
    assert KERNEL_Z_CAP == Z_CAP


def test_reference_inputs_are_what_the_generator_makes(ref: dict[str, np.ndarray]) -> None:
    for got, want in zip(rand_stream(), stream(ref, "rand"), strict=True):
        np.testing.assert_array_equal(got, want)
    assert json.loads(str(ref["rand_params"]))["metric_names"] == list(RAND_METRICS)


def test_the_streams_cover_what_they_claim(ref: dict[str, np.ndarray]) -> None:
    slots, ts, x, bounds = stream(ref, "rand")
    sizes = np.diff(bounds)
    assert sizes.min() == 1 and sizes.max() >= 250
    dup_calls = sum(len(np.unique(slots[i:j])) < j - i for i, j in pairwise(bounds))
    assert dup_calls > len(sizes) // 4  # entities repeat inside calls
    entities = np.unique(slots)
    assert any((np.diff(ts[slots == s]) < 0).any() for s in entities)  # backward times
    assert any(np.isnan(x[slots == s, 3]).all() for s in entities)  # a metric never seen
    assert np.nanstd(x[:, 1]) == 0  # a constant metric
    out = ref["rand_out"]
    assert np.isnan(out).any() and (out[:, 1::6][:, : len(RAND_METRICS)] == Z_CAP).any()


@pytest.mark.parametrize("case", CASES)
def test_kernel_reproduces_the_recorded_numpy_outputs(
    ref: dict[str, np.ndarray], case: str
) -> None:
    fs = fresh(ref, case)
    out = run(fs, *stream(ref, case))
    assert out.dtype == np.float32 and out.shape == ref[f"{case}_out"].shape
    np.testing.assert_allclose(out, ref[f"{case}_out"], rtol=1e-6, atol=1e-6)
    for k in ("n", "last_ts"):
        np.testing.assert_array_equal(getattr(fs, k), ref[f"{case}_state_{k}"], err_msg=k)
    for k in ("mu_f", "mu_m", "mu_s", "var_s", "persist"):
        np.testing.assert_allclose(getattr(fs, k), ref[f"{case}_state_{k}"], 1e-9, 1e-12, k)


@pytest.mark.parametrize("case", CASES)
def test_any_chunking_gives_the_same_bits_as_one_call(
    ref: dict[str, np.ndarray], case: str
) -> None:
    slots, ts, x, recorded = stream(ref, case)
    n = len(slots)
    whole = fresh(ref, case)
    expected = run(whole, slots, ts, x, [0, n])
    rng = np.random.default_rng(3)
    random_cuts = np.unique(np.concatenate([[0, n], rng.integers(0, n, n // 40)]))
    for bounds in (recorded, range(0, n + 1), [*range(0, n, 60), n], random_cuts):
        fs = fresh(ref, case)
        np.testing.assert_array_equal(run(fs, slots, ts, x, bounds), expected)
        assert_same_state(fs, whole)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    rows=st.integers(1, 400),
    entities=st.integers(1, 6),
    warmup=st.integers(0, 12),
    chunk=st.integers(1, 50),
)
def test_kernel_matches_the_numpy_baseline_on_generated_streams(
    seed: int, rows: int, entities: int, warmup: int, chunk: int
) -> None:
    rng = np.random.default_rng(seed)
    slots = rng.integers(0, entities, rows) * 3  # sparse slots, duplicates in a call
    ts = 1_767_571_200_000 + np.cumsum(rng.choice([0, 1, 10_000, 600_000], rows))
    ts -= rng.integers(0, 2, rows) * 5_000  # some readings stamped earlier
    x = rng.choice([1.0, 20.0], (rows, 3)) * rng.standard_normal((rows, 3)) + 50.0
    x[:, 1] = 7.0  # constant
    x[rng.random(x.shape) < 0.2] = np.nan
    x[rng.random(rows) < 0.05, 0] += 500.0  # spikes
    kw: dict[str, Any] = {"warmup": warmup, "capacity": 2, "tau_fast_s": 5.0}
    base, new = FeatureState(("a", "b", "c"), **kw), FeatureState(("a", "b", "c"), **kw)
    bounds = [*range(0, rows, chunk), rows]
    want = np.concatenate(
        [numpy_update(base, slots[i:j], ts[i:j], x[i:j]) for i, j in pairwise(bounds)]
    )
    np.testing.assert_allclose(run(new, slots, ts, x, bounds), want, rtol=1e-6, atol=1e-6)
    for k in STATE:
        np.testing.assert_allclose(getattr(new, k), getattr(base, k), 1e-9, 1e-12, err_msg=k)


def test_empty_call_changes_nothing() -> None:
    fs = FeatureState(("a",), capacity=2)
    out = fs.update(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 1)))
    assert out.shape == (0, 8) and not fs.n.any()


def test_bad_input_is_named() -> None:
    fs = FeatureState(("a", "b"))
    ts = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match=r"slot -1 is negative"):
        fs.update(np.array([0, -1]), ts, np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"x of shape \(2, 2\).*got \(2,\) and \(2, 3\)"):
        fs.update(np.array([0, 1]), ts, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"ts_ms of shape \(2,\)"):
        fs.update(np.array([0, 1]), ts[:1], np.zeros((2, 2)))
    assert not fs.n.any()  # nothing was ingested


def test_integer_and_float32_inputs_are_read_as_numpy_would() -> None:
    slots, ts = np.zeros(80, np.int32), np.arange(80) * 10_000
    x = np.random.default_rng(0).standard_normal((80, 1)).astype(np.float32)
    a, b = FeatureState(("a",)), FeatureState(("a",))
    np.testing.assert_array_equal(a.update(slots, ts, x), b.update(slots, ts, x.astype(float)))
