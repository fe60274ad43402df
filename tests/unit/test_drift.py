"""Input drift per entity (river ADWIN over block means)."""

from __future__ import annotations

import pickle

import numpy as np

from predictor.detectors.drift import DriftWatch


def _rows(n: int, n_ent: int, shift_ent: int | None, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    slots = np.tile(np.arange(n_ent), n)
    ts = np.repeat(np.arange(n, dtype=np.int64) * 10_000, n_ent)
    v = rng.exponential(1.0, len(slots))
    if shift_ent is not None:
        v[(slots == shift_ent) & (ts >= n // 2 * 10_000)] += 3.0
    return slots, v, ts


def test_shift_on_one_entity_is_reported_on_that_entity_only() -> None:
    slots, v, ts = _rows(4000, 4, shift_ent=2)
    w = DriftWatch()
    for a in range(0, len(slots), 1000):  # micro-batches
        w.update(slots[a : a + 1000], v[a : a + 1000], ts[a : a + 1000])
    n, last = w.drifts(2)
    assert n >= 1 and last >= 2000 * 10_000
    assert all(w.drifts(e)[0] == 0 for e in (0, 1, 3))
    assert w.drifts(99) == (0, 0)


def test_batch_split_and_snapshot() -> None:
    slots, v, ts = _rows(3000, 3, shift_ent=0, seed=1)
    whole = DriftWatch()
    whole.update(slots, v, ts)
    parts = DriftWatch()
    parts.update(slots[:4000], v[:4000], ts[:4000])
    snap = pickle.loads(pickle.dumps(parts.snapshot()))
    other = DriftWatch()
    other.restore(snap)
    for w in (parts, other):
        w.update(slots[4000:], v[4000:], ts[4000:])
        assert [w.drifts(e) for e in range(3)] == [whole.drifts(e) for e in range(3)]
