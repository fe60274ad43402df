"""Every detector in ``DETECTORS`` through the same checks (river's ``test_estimators``).

The contract is in :mod:`predictor.detectors.base`: multi-entity, prequential
``score_learn_many``, scores in [0, 1], ``clone``, ``snapshot``/``restore``.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from predictor.detectors import COMPARISON, DETECTORS, SHIPPED, make_detector
from predictor.detectors.base import Detector

N_FEATURES = 3
WARM = 600  # rows per entity before anomalies (river's HalfSpaceTrees needs two windows)

Factory = Callable[[], Detector]


@pytest.fixture(params=sorted(DETECTORS), ids=str)
def new(request: pytest.FixtureRequest) -> Factory:
    name = request.param

    def factory() -> Detector:
        return make_detector(name, N_FEATURES, seed=1, comparison=True)

    return factory


def stream(
    n: int = 3000,
    n_entities: int = 3,
    seed: int = 0,
    n_anomalies: int = 40,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Interleaved Gaussian entities with spikes injected after each one's warm-up.

    Returns keys, x, labels and the mask of rows to evaluate (warmed-up ones).
    """
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, n_entities, n).astype(np.int64)
    level = rng.uniform(5.0, 50.0, size=(n_entities, N_FEATURES))
    x = level[keys] + rng.standard_normal((n, N_FEATURES)) * (0.05 * level[keys])
    count = np.zeros(n, dtype=np.int64)
    seen: dict[int, int] = {}
    for i, k in enumerate(keys.tolist()):
        count[i] = seen.get(k, 0)
        seen[k] = count[i] + 1
    warm = count >= WARM
    n_anomalies = min(n_anomalies, int(warm.sum()))  # short streams: none
    rows = rng.choice(np.flatnonzero(warm), n_anomalies, replace=False)
    cols = rng.integers(0, N_FEATURES, n_anomalies)
    x[rows, cols] += 8 * 0.05 * level[keys[rows], cols]  # +8 sd on one metric
    labels = np.zeros(n, dtype=bool)
    labels[rows] = True
    return keys, x, labels, warm


def test_make_detector_knows_every_name() -> None:
    for name, cls in DETECTORS.items():
        assert isinstance(make_detector(name, 2, comparison=True), cls)
    assert set(SHIPPED) | set(COMPARISON) == set(DETECTORS)
    for name in SHIPPED:
        assert isinstance(make_detector(name, 2), DETECTORS[name])
    for name in COMPARISON:  # not run live: they do not lead the baselines
        with pytest.raises(ValueError, match="comparison only"):
            make_detector(name, 2)
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("nope", 2)


def test_scores_in_unit_interval_and_shape(new: Factory) -> None:
    keys, x, _, _ = stream(n=1500)
    x[::17, 1] = np.nan  # absent metrics
    x[5::101] *= 1e6  # absurd values
    s = new().score_learn_many(keys, x)
    assert s.shape == (len(keys),)
    assert np.all(np.isfinite(s))
    assert np.all((s >= 0.0) & (s <= 1.0))


def test_no_evidence_scores_zero(new: Factory) -> None:
    det = new()
    s = det.score_learn_many(np.zeros(5, dtype=np.int64), np.ones((5, N_FEATURES)))
    assert np.all(s == 0.0)
    assert det.score_learn_many(np.zeros(0, dtype=np.int64), np.zeros((0, N_FEATURES))).shape == (
        0,
    )


def test_clone_is_fresh_with_the_same_params(new: Factory) -> None:
    keys, x, _, _ = stream(n=1500)
    det = new()
    det.score_learn_many(keys[:1000], x[:1000])
    clone = det.clone()
    assert type(clone) is type(det)
    assert clone.get_params() == det.get_params()  # type: ignore[attr-defined]
    fresh = new().score_learn_many(keys, x)
    np.testing.assert_array_equal(clone.score_learn_many(keys, x), fresh)
    # the original kept its state: it continues from row 1000, unlike a fresh one
    cont = det.score_learn_many(keys[1000:], x[1000:])
    np.testing.assert_array_equal(cont, _continue(new, keys, x, 1000))


def _continue(new: Factory, keys: np.ndarray, x: np.ndarray, at: int) -> np.ndarray:
    det = new()
    det.score_learn_many(keys[:at], x[:at])
    return det.score_learn_many(keys[at:], x[at:])


def test_snapshot_restore_round_trip(new: Factory) -> None:
    keys, x, _, _ = stream(n=2000)
    det = new()
    det.score_learn_many(keys[:1200], x[:1200])
    snap = pickle.loads(pickle.dumps(det.snapshot()))
    expected = det.score_learn_many(keys[1200:], x[1200:])
    # into a fresh detector
    other = new()
    other.restore(snap)
    np.testing.assert_array_equal(other.score_learn_many(keys[1200:], x[1200:]), expected)
    # and back into the one that moved on
    det.restore(snap)
    np.testing.assert_array_equal(det.score_learn_many(keys[1200:], x[1200:]), expected)


def test_snapshot_is_not_aliased(new: Factory) -> None:
    keys, x, _, _ = stream(n=1200)
    det = new()
    det.score_learn_many(keys[:800], x[:800])
    snap = det.snapshot()
    det.score_learn_many(keys[800:], x[800:])  # must not change ``snap``
    other = new()
    other.restore(snap)
    np.testing.assert_array_equal(
        other.score_learn_many(keys[800:], x[800:]), _continue(new, keys, x, 800)
    )


def test_batch_split_invariance(new: Factory) -> None:
    keys, x, _, _ = stream(n=1500)
    whole = new().score_learn_many(keys, x)
    det = new()
    cuts = [0, 1, 2, 50, 333, 334, 900, 1499, 1500]
    parts = [
        det.score_learn_many(keys[a:b], x[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("i", [700, 1234, 1799])
def test_prequential_a_row_never_scores_itself(new: Factory, i: int) -> None:
    """Row ``i`` is scored against the state of the rows before it, then learnt.

    So changing row ``i`` changes no earlier score, its own score is what a detector that
    saw only the rows before it gives, and later rows of its entity do see it.
    """
    keys, x, _, _ = stream(n=1800)
    base = new().score_learn_many(keys, x)
    x2 = x.copy()
    x2[i] = x[i] * 50.0 + 1000.0  # a wild change to row i
    changed = new().score_learn_many(keys, x2)
    np.testing.assert_array_equal(changed[:i], base[:i])
    prefix = new()
    prefix.score_learn_many(keys[:i], x[:i])
    assert prefix.score_learn_many(keys[i : i + 1], x2[i : i + 1])[0] == changed[i]
    assert changed[i] >= base[i]  # the wild row itself scores at least as high
    later_same = np.flatnonzero(keys[i + 1 :] == keys[i]) + i + 1
    if len(later_same):
        assert not np.array_equal(changed[later_same], base[later_same])


def test_beats_chance_on_injected_anomalies(new: Factory) -> None:
    keys, x, labels, warm = stream(seed=3)
    s = new().score_learn_many(keys, x)
    auc = roc_auc_score(labels[warm], s[warm])
    assert auc > 0.7, auc
    assert s[labels].mean() > s[warm & ~labels].mean()


def test_entities_are_isolated(new: Factory) -> None:
    keys, x, _, _ = stream(n=2400, seed=4)
    a_rows = np.flatnonzero(keys == 0)
    x_anom = x.copy()
    x_anom[a_rows[WARM : WARM + 30]] += 100.0  # entity 0 goes wild
    base = new().score_learn_many(keys, x)
    anom = new().score_learn_many(keys, x_anom)
    others = keys != 0
    np.testing.assert_array_equal(anom[others], base[others])
    assert anom[a_rows[WARM : WARM + 30]].mean() > base[a_rows[WARM : WARM + 30]].mean()


def test_entity_ids_need_not_be_dense(new: Factory) -> None:
    keys, x, _, _ = stream(n=900)
    sparse = np.array([0, 700, 5000])[keys]
    np.testing.assert_array_equal(
        new().score_learn_many(sparse, x), new().score_learn_many(keys, x)
    )


def test_state_size_is_reported(new: Factory) -> None:
    keys, x, _, _ = stream(n=600)
    det = new()
    det.score_learn_many(keys, x)
    assert det.nbytes_per_entity() > 0


def test_tail_is_ranked_not_saturated(new: Factory) -> None:
    """From the same state, a 20-sd excursion outranks a 9-sd one, which outranks the
    normal rows; and the scale has resolution left above both (no ties at the top)."""
    rng = np.random.default_rng(5)
    n = 1300
    x = 10.0 + rng.standard_normal((n, N_FEATURES))
    det = new()
    normal = det.score_learn_many(np.zeros(n, dtype=np.int64), x)[600:]
    snap = pickle.loads(pickle.dumps(det.snapshot()))
    scores = []
    for sd in (9.0, 20.0, 50.0):
        probe = new()
        probe.restore(snap)
        row = np.full((1, N_FEATURES), 10.0)
        row[0, 1] += sd
        scores.append(float(probe.score_learn_many(np.zeros(1, dtype=np.int64), row)[0]))
    assert scores[2] > scores[1] > scores[0] > normal.max(), (scores, normal.max())
    assert scores[2] < 1.0


def test_calibrated_scale_free(new: Factory) -> None:
    """The same noise at 1e-3 and at 1e9 scale scores alike (units do not matter)."""
    rng = np.random.default_rng(6)
    base = rng.standard_normal((1200, N_FEATURES))
    base[1100, 0] += 8.0
    small = new().score_learn_many(np.zeros(1200, dtype=np.int64), 1e-3 * (5.0 + base))
    big = new().score_learn_many(np.zeros(1200, dtype=np.int64), 1e9 * (5.0 + base))
    np.testing.assert_allclose(small, big, rtol=1e-6, atol=1e-9)
    assert small[1100] > np.quantile(small[600:1100], 0.99)
