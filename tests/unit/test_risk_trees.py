"""The compiled trees give LightGBM's own scores: at every threshold, with NaN, ±inf, zeros."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipelines.training.models import BASELINE_DIR, load_model
from predictor.errors import ModelError
from predictor.risk import RiskModel
from predictor.risk_trees import (
    DEFAULT_LEFT_MASK,
    K_ZERO_THRESHOLD,
    MISSING_NAN,
    MISSING_NONE,
    MISSING_ZERO,
    CompiledTrees,
    compile_booster,
)

#: The bound asked for; in practice the sums are bit for bit LightGBM's.
RAW_TOL = 1e-9
METHODS = ("bitmask", "walk")


def _fit(x: np.ndarray, y: np.ndarray, rounds: int = 25, **params: object) -> lgb.Booster:
    base = {
        "objective": "binary",
        "verbose": -1,
        "min_data_in_leaf": 5,
        "num_leaves": 15,
        "num_threads": 1,
        "deterministic": True,
        "seed": 3,
    }
    return lgb.train({**base, **params}, lgb.Dataset(x, y), num_boost_round=rounds)


def _holey_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four features with NaNs and exact zeros in training, labels depending on both."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4))
    x[rng.random(x.shape) < 0.15] = np.nan
    x[rng.random(x.shape) < 0.15] = 0.0
    y = (np.nan_to_num(x[:, 0]) > 0.3) ^ np.isnan(x[:, 1]) | (x[:, 2] == 0.0)
    y ^= rng.random(n) < 0.05
    return x, y.astype(int)


@pytest.fixture(scope="module")
def baseline() -> RiskModel:
    return load_model(BASELINE_DIR)


@pytest.fixture(scope="module")
def boosters(baseline: RiskModel) -> dict[str, lgb.Booster]:
    x, y = _holey_rows(3000, seed=0)
    return {
        "baseline": baseline.booster_,
        "nan_missing": _fit(x, y),
        "zero_as_missing": _fit(x, y, zero_as_missing=True),
        "no_missing": _fit(x, y, use_missing=False),
        "one_feature": _fit(x[:, :1], y, rounds=10),
    }


def edge_inputs(trees: CompiledTrees, n_rows: int, seed: int, dtype: type) -> np.ndarray:
    """Rows that sit on the trees' edges: every threshold exactly and one ulp either side
    (in ``dtype``), ±kZeroThreshold and their neighbours, NaN, ±inf, ±0.0, and ordinary
    values; each node's threshold gets rows of its own."""
    rng = np.random.default_rng(seed)
    f = trees.n_features
    with np.errstate(over="ignore"):  # LightGBM writes a split off NaN at 1e300
        feat, th = trees.nodes[:, 0], trees.thresholds.astype(dtype)
    k = dtype(K_ZERO_THRESHOLD)
    around_k = [np.nextafter(k, dtype(0)), np.nextafter(k, dtype(1)), 2 * k]
    special = np.array(
        [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 1.0, -1.0]
        + [v for a in [k, *around_k] for v in (a, -a)],
        dtype=dtype,
    )

    def near(v: np.ndarray) -> np.ndarray:
        """Each value, and one ulp below and above."""
        inf = np.asarray(np.inf, dtype=dtype)
        return np.concatenate([v, np.nextafter(v, -inf), np.nextafter(v, inf)])

    per_feature = [near(th[feat == j]) for j in range(f)]
    x = rng.standard_normal((n_rows, f)).astype(dtype) * dtype(rng.choice([0.01, 1, 100], f))
    pick = rng.random((n_rows, f))
    for j in range(f):
        if len(per_feature[j]):
            rows = pick[:, j] < 0.6
            x[rows, j] = rng.choice(per_feature[j], rows.sum())
        rows = pick[:, j] > 0.85
        x[rows, j] = rng.choice(special, rows.sum())
    # Then each node's threshold, exactly and one ulp either side, in a row of its own.
    node_rows = np.repeat(x[: min(n_rows, 50)], 1 + len(th) * 3 // min(n_rows, 50), axis=0)
    node_rows = node_rows[: len(th) * 3].copy()
    node_rows[np.arange(len(th) * 3), np.tile(feat, 3)] = near(th)
    return np.concatenate([x, node_rows])


@pytest.mark.parametrize(
    "name", ["baseline", "nan_missing", "zero_as_missing", "no_missing", "one_feature"]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", METHODS)
def test_raw_scores_are_lightgbm_s(
    boosters: dict[str, lgb.Booster], name: str, dtype: type, method: str
) -> None:
    booster = boosters[name]
    trees = compile_booster(booster)
    assert trees.n_trees == booster.num_trees()
    assert trees.bitmasks is not None
    x = edge_inputs(trees, 3000, seed=1, dtype=dtype)
    got = trees.raw(x, method)
    want = booster.predict(x, raw_score=True, num_threads=1)
    assert got.dtype == np.float64 and got.shape == (len(x),)
    np.testing.assert_allclose(got, want, rtol=0, atol=RAW_TOL)
    proba = booster.predict(x, num_threads=1)
    np.testing.assert_allclose(trees.proba(x, method), proba, rtol=0, atol=1e-12)


def test_trees_over_64_leaves_are_walked() -> None:
    x, y = _holey_rows(3000, seed=0)
    booster = _fit(x, y, rounds=4, num_leaves=100, min_data_in_leaf=2)
    trees = compile_booster(booster)
    assert max(t["num_leaves"] for t in booster.dump_model()["tree_info"]) > 64
    assert trees.bitmasks is None
    with pytest.raises(ModelError, match="more than 64 leaves"):
        trees.raw(x, "bitmask")
    probe = edge_inputs(trees, 1000, seed=4, dtype=np.float32)
    want = booster.predict(probe, raw_score=True, num_threads=1)
    np.testing.assert_allclose(trees.raw(probe), want, rtol=0, atol=RAW_TOL)


def test_the_fitted_models_exercise_every_missing_rule(boosters: dict[str, lgb.Booster]) -> None:
    """Otherwise the test above would pass with half the rules wrong."""
    seen = set()
    for name in ("nan_missing", "zero_as_missing", "no_missing"):
        decisions = compile_booster(boosters[name]).nodes[:, 3]
        seen |= {(int(d) >> 2, bool(d & DEFAULT_LEFT_MASK)) for d in decisions}
    for missing in (MISSING_NAN, MISSING_ZERO):
        assert {(missing, True), (missing, False)} <= seen
    assert (MISSING_NONE, True) in seen
    thresholds = compile_booster(boosters["nan_missing"]).thresholds
    assert K_ZERO_THRESHOLD in thresholds and -K_ZERO_THRESHOLD in thresholds


@pytest.mark.parametrize("method", METHODS)
def test_zeroish_inputs_read_as_zero(method: str) -> None:
    """A split at -kZeroThreshold: -kZeroThreshold itself is read as 0.0, so goes right,
    as in LightGBM (a plain ``<=`` would send it left)."""
    x, y = _holey_rows(3000, seed=0)
    booster = _fit(x, y)
    trees = compile_booster(booster)
    node = int(np.flatnonzero(trees.thresholds == -K_ZERO_THRESHOLD)[0])
    rows = np.zeros((3, trees.n_features))
    rows[:, trees.nodes[node, 0]] = [-K_ZERO_THRESHOLD, -1e-36, -2e-35]
    np.testing.assert_allclose(
        trees.raw(rows, method), booster.predict(rows, raw_score=True), rtol=0, atol=RAW_TOL
    )


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 40), st.just(4)),
        elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
    )
)
def test_any_float32_rows(x: np.ndarray) -> None:
    booster = _HYPOTHESIS_BOOSTER()
    trees = compile_booster(booster)
    want = booster.predict(x, raw_score=True, num_threads=1)
    for method in METHODS:
        np.testing.assert_allclose(trees.raw(x, method), want, rtol=0, atol=RAW_TOL)


def _cached_booster() -> Callable[[], lgb.Booster]:
    made: list[lgb.Booster] = []

    def get() -> lgb.Booster:
        if not made:
            made.append(_fit(*_holey_rows(2000, seed=5)))
        return made[0]

    return get


_HYPOTHESIS_BOOSTER = _cached_booster()


def test_predict_risk_is_what_lightgbm_gave(baseline: RiskModel) -> None:
    """The calibrated risk, against the path it replaced: LightGBM's probability, then
    the isotonic points."""
    trees = compile_booster(baseline.booster_)
    x = edge_inputs(trees, 2000, seed=2, dtype=np.float32)
    xs, ys = baseline.calibration_ or ([], [])
    assert xs, "the shipped model is calibrated"
    before = np.interp(baseline.booster_.predict(x, num_threads=1), xs, ys)
    np.testing.assert_allclose(baseline.predict_risk(x), before, rtol=0, atol=1e-12)
    assert baseline.compiled_trees() is not None  # scored by the kernel, not by the fallback


def test_fitted_model_and_its_state_round_trip() -> None:
    x, y = _holey_rows(4000, seed=7)
    model = RiskModel(n_estimators=30, min_child_samples=10, num_threads=1).fit(x, y)
    assert model.calibration_ is not None
    probe = x[:500]
    risk = model.predict_risk(probe)
    xs, ys = model.calibration_
    before = np.interp(model.booster_.predict(probe.astype(np.float32), num_threads=1), xs, ys)
    np.testing.assert_allclose(risk, before, rtol=0, atol=1e-12)

    text, meta = model.to_state()
    again = RiskModel.from_state(meta, model_text=text)
    np.testing.assert_array_equal(again.predict_risk(probe), risk)
    assert again.version == model.version

    state = model.__getstate__()
    assert "_compiled" in model.__dict__ and "_compiled" not in state
    unpickled = pickle.loads(pickle.dumps(model))
    assert "_compiled" not in unpickled.__dict__
    np.testing.assert_array_equal(unpickled.predict_risk(probe), risk)


def test_another_booster_is_compiled_afresh(baseline: RiskModel) -> None:
    x, y = _holey_rows(3000, seed=0)
    model = RiskModel.from_state(
        {"params": {}, "feature_names": [f"f{i}" for i in range(4)]}, booster=_fit(x, y)
    )
    first = model.compiled_trees()
    model.booster_ = _fit(x, y, zero_as_missing=True)
    second = model.compiled_trees()
    assert first is not None and second is not None and first is not second
    np.testing.assert_allclose(
        model.predict_risk(x[:200]),
        model.booster_.predict(x[:200].astype(np.float32)),
        rtol=0,
        atol=1e-12,
    )


def _categorical_booster() -> lgb.Booster:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.integers(0, 5, 600), rng.standard_normal(600)]).astype(float)
    y = ((x[:, 0] == 2) | (x[:, 1] > 1)).astype(int)
    return lgb.train(
        {"objective": "binary", "verbose": -1, "min_data_in_leaf": 5, "num_threads": 1},
        lgb.Dataset(x, y, categorical_feature=[0]),
        num_boost_round=5,
    )


def test_categorical_splits_are_refused_and_lightgbm_scores() -> None:
    booster = _categorical_booster()
    with pytest.raises(ModelError, match="tree 0 has categorical splits"):
        compile_booster(booster)
    model = RiskModel.from_state({"params": {}, "feature_names": ["venue", "z"]}, booster=booster)
    x = np.array([[2.0, 0.0], [1.0, 2.0], [np.nan, np.nan], [7.0, -1.0]])
    np.testing.assert_array_equal(
        model.predict_risk(x), booster.predict(x.astype(np.float32), num_threads=1)
    )
    assert model.compiled_trees() is None


def test_linear_trees_are_refused() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 2))
    y = (x[:, 0] + 0.3 * rng.standard_normal(500) > 0.5).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "linear_tree": True, "num_threads": 1},
        lgb.Dataset(x, y),
        num_boost_round=3,
    )
    with pytest.raises(ModelError, match="tree 0 is a linear tree"):
        compile_booster(booster)


def test_the_wrong_width_is_refused(boosters: dict[str, lgb.Booster]) -> None:
    trees = compile_booster(boosters["nan_missing"])
    with pytest.raises(ModelError, match=r"take 4 features, got shape \(2, 3\)"):
        trees.raw(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="method 'fast'"):
        trees.raw(np.zeros((2, 4)), "fast")
