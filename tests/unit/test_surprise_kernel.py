"""The compiled Surprise row loop reproduces the numpy implementation it replaced.

``tests/data/surprise_reference.npz`` holds that implementation's outputs and final
state on two cases (written by ``tests/data/make_surprise_reference.py`` at the commit
before the kernel): synthetic rows built to reach every branch (NaN and inf readings, a
stuck metric that moves, a sparse counter, heavy tails, a correlation break, entities
repeated within a call, call sizes from 1 to 400 rows, short refit and calibration
cadences) and two hours of the simulated fleet with the engine's settings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predictor.detectors.calibration import TailCalibrator, TailTables
from predictor.detectors.surprise import Surprise
from predictor.detectors.surprise_kernel import from_half_bits, tail_bits, to_half_bits
from tests.data.make_surprise_reference import PARAMS, STATE, fleet, run, synthetic

REF = Path(__file__).parents[1] / "data" / "surprise_reference.npz"


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(REF) as z:
        return dict(z)


@pytest.mark.parametrize("case", ["syn", "fleet"])
def test_kernel_reproduces_the_numpy_outputs_and_state(
    case: str, ref: dict[str, np.ndarray]
) -> None:
    keys, x, cuts = synthetic() if case == "syn" else fleet()
    bits, det = run(keys, x, cuts, **PARAMS[case])
    want = ref[f"{case}_bits"]
    # Float32 state and sums in another order: equal up to rounding, on every row.
    np.testing.assert_allclose(bits, want, rtol=1e-4, atol=1e-3)
    assert np.corrcoef(bits, want)[0, 1] > 0.99999
    np.testing.assert_array_equal(det.count_, ref[f"{case}_count_"])
    np.testing.assert_array_equal(det.nbuf_, ref[f"{case}_nbuf_"])
    for k in STATE:
        if k not in ("count_", "nbuf_"):
            np.testing.assert_allclose(getattr(det, k), ref[f"{case}_{k}"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        det.gbuf_.astype(np.float32), ref[f"{case}_gbuf_"].astype(np.float32), atol=2e-3
    )
    for prefix, tab in (("mcal_", det._mtab), ("rcal_", det._rtab)):
        for k, v in tab.snapshot().items():
            np.testing.assert_allclose(v, ref[f"{case}_{prefix}{k}"], rtol=1e-4, atol=1e-5)


def test_the_call_size_does_not_change_the_result() -> None:
    keys, x, cuts = synthetic(seed=9, rows=2500)
    one, _ = run(keys, x, np.array([], dtype=np.int64), **PARAMS["syn"])
    many, _ = run(keys, x, cuts, **PARAMS["syn"])
    np.testing.assert_array_equal(one, many)  # entities are independent: bit for bit


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, width=64))
def test_half_precision_rounding_is_numpys(v: float) -> None:
    with np.errstate(over="ignore"):
        want = np.array([v]).astype(np.float16)
    got = np.array([to_half_bits(v)], dtype=np.uint16).view(np.float16)
    if np.isnan(want[0]):
        assert np.isnan(got[0])
    else:
        assert got.tobytes() == want.tobytes()
        assert from_half_bits(np.uint16(got.view(np.uint16)[0])) == np.float32(want[0])


def test_one_cell_of_the_tables_scores_as_tail_tables() -> None:
    rng = np.random.default_rng(3)
    cal = TailCalibrator(2, np.full((2, 16), 1 / 16), edges_max=16.0, n_bins=16)
    tab = TailTables(cal, 2)
    for _ in range(300):
        tab.learn(np.array([0, 1]), rng.exponential(2.0, (2, 2)), np.ones((2, 2), dtype=bool))
    tab.refresh(np.arange(2))
    t = np.array([[0.0, 3.3], [15.99, 80.0]])
    want = tab.bits(np.arange(2), t)
    for e in range(2):
        for s in range(2):
            got = tail_bits(tab.surv, tab.q, tab.beta, e, s, t[e, s], cal.width, cal.n_bins)
            assert got == pytest.approx(want[e, s], rel=1e-12)


def test_a_detector_restored_from_a_snapshot_continues_identically() -> None:
    keys, x, _ = synthetic(seed=2, rows=1200)
    a = Surprise(n_features=x.shape[1])
    a.bits_learn_many(keys[:700], x[:700])
    b = Surprise(n_features=x.shape[1])
    b.restore(a.snapshot())
    np.testing.assert_array_equal(
        a.bits_learn_many(keys[700:], x[700:]), b.bits_learn_many(keys[700:], x[700:])
    )
