"""The Surprise detector's fast paths agree with the plain computations they replace.

Scoring from cached calibration tables with a lazy decay (:class:`TailTables`) and
folding buffered rows into the covariance in one step (``surprise_kernel.fold``) are speed
devices: these tests pin them to the row-by-row definitions.
"""

from __future__ import annotations

import numpy as np

from predictor.detectors.calibration import TailCalibrator, TailTables
from predictor.detectors.surprise import Surprise
from predictor.detectors.surprise_kernel import fold


def test_tables_after_refresh_match_the_row_by_row_histogram() -> None:
    rng = np.random.default_rng(0)
    prior = np.full((2, 16), 1 / 16)
    cal = TailCalibrator(2, prior, edges_max=16.0, n_bins=16, half_life=50.0)
    tab = TailTables(cal, 3)
    hist = cal.fresh(3)
    e = np.array([2, 0, 1])
    for _ in range(200):
        t = rng.exponential(2.0, (3, 2))
        counted = rng.random((3, 2)) < 0.8
        tab.learn(e, t, counted)
        hist[e] = cal.learn(hist[e], t, counted)
    tab.refresh(np.arange(3))
    np.testing.assert_allclose(tab.hist, hist, rtol=1e-4)
    probe = np.array([[0.3, 5.0], [9.0, 15.9], [40.0, 1.0]])
    got = tab.bits(np.arange(3), probe)
    want = cal.bits(hist, probe)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert got[2, 0] > got[1, 0] > got[0, 0]  # the fitted tail ranks beyond the grid


def test_tables_lag_until_refreshed() -> None:
    cal = TailCalibrator(1, np.full((1, 8), 1 / 8), edges_max=8.0, n_bins=8)
    tab = TailTables(cal, 1)
    e, t = np.array([0]), np.array([[7.5]])
    before = tab.bits(e, t)
    for _ in range(100):
        tab.learn(e, t, np.ones((1, 1), dtype=bool))
    np.testing.assert_array_equal(tab.bits(e, t), before)
    tab.refresh(e)
    assert tab.bits(e, t)[0, 0] < before[0, 0]  # now a common value: less surprising


def test_fold_is_the_row_by_row_ewma_covariance() -> None:
    rng = np.random.default_rng(1)
    det = Surprise(n_features=4, cov_alpha=0.05)
    det._ensure(2)
    start = rng.normal(size=(2, 4, 4)).astype(np.float32)
    det.cov_[:2] = start
    g = np.clip(rng.normal(size=(2, 10, 4)), -4, 4).astype(np.float16)
    n = np.array([10, 6])
    count = np.array([13, 30])  # rows seen after the buffered ones
    det.gbuf_[:2, :10] = g
    for k in range(2):
        fold(det.cov_, det.gbuf_.view(np.uint16), k, int(n[k]), int(count[k]), 0.05)
    for k in range(2):
        cov = start[k].astype(np.float64)
        for j in range(n[k]):
            c = count[k] - n[k] + j
            w = max(0.05, 1.0 / max(c - 1, 1)) if c >= 2 else 0.0
            row = g[k, j].astype(np.float64)
            cov = (1 - w) * cov + w * np.outer(row, row)
        np.testing.assert_allclose(det.cov_[k], cov, rtol=1e-4, atol=1e-5)


def test_state_is_bounded_and_said() -> None:
    rng = np.random.default_rng(2)
    det = Surprise(n_features=15)
    keys = np.repeat(np.arange(50), 40)
    det.score_learn_many(keys, rng.normal(size=(len(keys), 15)))
    first = det.nbytes_per_entity()
    det.score_learn_many(keys, rng.normal(size=(len(keys), 15)))
    assert det.nbytes_per_entity() == first  # rows do not grow it
    assert first < 9 * 1024, first  # 8,318 B at 15 metrics (docs/detectors.md)


def test_snapshot_from_before_the_cached_tables_restores() -> None:
    rng = np.random.default_rng(3)
    det = Surprise(n_features=3)
    keys = np.zeros(300, dtype=np.int64)
    det.score_learn_many(keys, rng.normal(size=(300, 3)))
    snap = det.snapshot()
    old = {k: v for k, v in snap.items() if not k.startswith(("mcal_", "rcal_"))}
    old.pop("gbuf_")
    old.pop("nbuf_")
    old["mhist_"] = snap["mcal_hist"] / snap["mcal_weight"][..., None]
    old["hist_"] = snap["rcal_hist"] / snap["rcal_weight"][..., None]
    other = Surprise(n_features=3)
    other.restore(old)
    s = other.score_learn_many(np.zeros(50, dtype=np.int64), rng.normal(size=(50, 3)))
    assert np.all(np.isfinite(s)) and np.all((s >= 0) & (s < 1))
