"""Input drift per entity (river ADWIN over block means)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from predictor.detectors.drift import SNAPSHOT_VERSION, DriftWatch
from predictor.engine import Engine, EngineConfig
from predictor.errors import ConfigError
from predictor.views import input_drifts
from tests.factories import decode, steady_stream


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


def test_one_row_per_entity_batches_count_as_one_batch() -> None:
    """The vectorised path (an entity's one row here completes its block) matches the
    row-by-row path: same drifts at the same event times, same partial blocks left."""
    slots, v, ts = _rows(3000, 5, shift_ent=3, seed=2)
    whole = DriftWatch(every=4)
    whole.update(slots, v, ts)
    steps = DriftWatch(every=4)
    for a in range(0, len(slots), 5):  # one row per entity per batch
        steps.update(slots[a : a + 5], v[a : a + 5], ts[a : a + 5])
    assert [steps.drifts(e) for e in range(5)] == [whole.drifts(e) for e in range(5)]
    assert steps.drifts(3)[0] >= 1
    np.testing.assert_array_equal(steps.n_, whole.n_)
    np.testing.assert_allclose(steps.sum_, whole.sum_)


def test_snapshot_is_versioned() -> None:
    w = DriftWatch()
    snap = w.snapshot()
    assert snap["version"] == SNAPSHOT_VERSION
    with pytest.raises(ConfigError, match="drift snapshot version 0"):
        DriftWatch().restore({**snap, "version": 0})
    with pytest.raises(ConfigError, match="drift snapshot version None"):
        DriftWatch().restore(pickle.dumps(snap))  # type: ignore[arg-type]


def _shifted_stream() -> list[dict[str, object]]:
    """Two hosts, steady; host h2's metrics jump by 12 sd after step 700."""
    keys = [("sys-a", "comp-a", "h1"), ("sys-a", "comp-a", "h2")]
    events = steady_stream(keys, steps=1600, seed=3)
    for i, e in enumerate(events):
        if e["host"] == "h2" and i // 2 >= 700:
            e["metrics"] = {m: v + 12.0 for m, v in e["metrics"].items()}
    return events


def test_engine_restart_keeps_drift_counts() -> None:
    """The drift counts travel in the engine's snapshot: a restored engine reports the same
    counts, and goes on to count exactly what an uninterrupted one counts."""
    events = _shifted_stream()
    names = EngineConfig().metric_names
    whole = Engine(EngineConfig())
    first = Engine(EngineConfig())
    cut = 2 * 1200
    for eng, part in ((whole, events), (first, events[:cut])):
        for a in range(0, len(part), 500):
            eng.process(decode(part[a : a + 500], names))
    before = input_drifts(first)
    assert before.get("sys-a/comp-a/h2", 0) >= 1, before
    assert "sys-a/comp-a/h1" not in before
    snap = pickle.loads(pickle.dumps(first.snapshot()))
    assert snap["drift"]["version"] == SNAPSHOT_VERSION
    resumed = Engine.from_snapshot(snap, EngineConfig())
    assert input_drifts(resumed) == before
    for a in range(cut, len(events), 500):
        resumed.process(decode(events[a : a + 500], names))
    assert input_drifts(resumed) == input_drifts(whole)
    # an older snapshot (no drift part) still restores, its counts from zero
    del snap["drift"]
    assert input_drifts(Engine.from_snapshot(snap, EngineConfig())) == {}
