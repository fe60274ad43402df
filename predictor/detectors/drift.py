"""Input drift per entity, watched by river's ADWIN.

The detectors adapt, so a regime change (a deploy that doubles a host's baseline CPU, a
metric that changes units) is learnt away within a few hundred rows: the anomaly score
says "unusual for a while", then nothing. Drift is the other half of the story: *that*
the entity's inputs changed, and when. Each entity has one
:class:`river.drift.ADWIN` fed the mean, over ``every`` rows of that entity, of the
detector's surprise (bits): a level of surprise that settles at a new mean is a changed
input distribution. Feeding block means keeps river's per-event Python cost off the hot
path (one ADWIN update per ``every`` rows; the blocks accumulate in one compiled pass,
:func:`block_means`) and smooths single spikes out.

The counts survive a restart: :meth:`DriftWatch.snapshot` is a versioned part of the
engine's snapshot (``"drift"``), ADWIN windows included, so a restored stream goes on
counting where it stopped and detects the same drifts as one that never stopped.

>>> import numpy as np
>>> w = DriftWatch(every=5)
>>> rng = np.random.default_rng(0)
>>> bits = np.concatenate([rng.exponential(1.0, 3000), 4.0 + rng.exponential(1.0, 3000)])
>>> w.update(np.zeros(6000, dtype=np.int64), bits, np.arange(6000, dtype=np.int64) * 10_000)
>>> n, last_ms = w.drifts(0)
>>> n >= 1 and 30_000_000 <= last_ms <= 36_000_000
True
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np

from predictor.errors import ConfigError
from predictor.jit import kernel

#: Layout of :meth:`DriftWatch.snapshot` (1: counts as arrays, ADWIN windows pickled).
SNAPSHOT_VERSION = 1


class DriftWatch:
    """One ADWIN per entity slot over block means of a per-row value.

    Parameters
    ----------
    delta
        ADWIN's confidence (smaller: fewer, surer detections).
    every
        Rows of an entity averaged into one ADWIN update.
    """

    def __init__(self, delta: float = 0.002, every: int = 6) -> None:
        self.delta = delta
        self.every = every
        self.sum_ = np.zeros(0)
        self.n_ = np.zeros(0, dtype=np.int64)
        self.count_ = np.zeros(0, dtype=np.int64)  # drifts detected
        self.last_ms_ = np.zeros(0, dtype=np.int64)  # event time of the latest, 0: none
        self.adwins_: dict[int, Any] = {}
        # Imported here, not on the hot path: river costs ~0.4-1 s to import, paid
        # once when an engine is built rather than by its first batch of events.
        from river import drift

        self._adwin = drift.ADWIN

    def _ensure(self, n: int) -> None:
        if n <= len(self.n_):
            return
        m = max(n, 2 * len(self.n_), 64)
        for name in ("sum_", "n_", "count_", "last_ms_"):
            old = getattr(self, name)
            new = np.zeros(m, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def update(self, slots: np.ndarray, values: np.ndarray, ts_ms: np.ndarray) -> None:
        """Add rows (in order); entities whose block fills feed their ADWIN."""
        if len(slots) == 0:
            return
        slots = np.ascontiguousarray(slots, dtype=np.int64)
        self._ensure(int(slots.max()) + 1)
        # One compiled pass accumulates the blocks; Python only for the ADWIN updates
        # (one per ``every`` rows of an entity).
        ents = np.empty(len(slots), dtype=np.int64)
        means = np.empty(len(slots))
        at = np.empty(len(slots), dtype=np.int64)
        k = block_means(
            slots,
            np.ascontiguousarray(values, dtype=np.float64),
            np.ascontiguousarray(ts_ms, dtype=np.int64),
            self.sum_,
            self.n_,
            self.every,
            ents,
            means,
            at,
        )
        adwins, make = self.adwins_, self._adwin
        for e, m, t in zip(ents[:k].tolist(), means[:k].tolist(), at[:k].tolist(), strict=True):
            adwin = adwins.get(e)
            if adwin is None:
                adwin = adwins[e] = make(delta=self.delta)
            adwin.update(m)
            if adwin.drift_detected:
                self.count_[e] += 1
                self.last_ms_[e] = t

    def drifts(self, slot: int) -> tuple[int, int]:
        """``(drifts detected, event time in ms of the latest or 0)`` of one entity."""
        if slot >= len(self.n_):
            return 0, 0
        return int(self.count_[slot]), int(self.last_ms_[slot])

    def snapshot(self) -> dict[str, Any]:
        """A picklable copy of the state, versioned (:data:`SNAPSHOT_VERSION`).

        The ADWIN windows travel pickled (river's own objects), the counts as arrays.
        """
        arrays = {k: getattr(self, k).copy() for k in ("sum_", "n_", "count_", "last_ms_")}
        adwins = pickle.dumps(self.adwins_, protocol=pickle.HIGHEST_PROTOCOL)
        return {"version": SNAPSHOT_VERSION, "arrays": arrays, "adwins": adwins}

    def restore(self, snap: dict[str, Any]) -> None:
        """Replace the state by a snapshot's; one of another layout is refused by name."""
        version = snap.get("version") if isinstance(snap, dict) else None
        if version != SNAPSHOT_VERSION:
            raise ConfigError(
                f"drift snapshot version {version!r} is not {SNAPSHOT_VERSION}: a checkpoint "
                "from another release; remove the checkpoint directory to start afresh"
            )
        self.adwins_ = pickle.loads(snap["adwins"])
        for k, v in snap["arrays"].items():
            setattr(self, k, np.asarray(v).copy())


@kernel
def block_means(slots, values, ts_ms, sums, counts, every, ents, means, at):  # type: ignore[no-untyped-def]
    """Accumulate rows into their entity's block (``sums``, ``counts``, in place); each
    block that fills is written to ``ents``/``means``/``at`` (its last row's time), in
    row order. Returns how many filled. Values as :func:`numpy.nan_to_num` makes them."""
    k = 0
    big = np.finfo(np.float64).max
    for i in range(slots.shape[0]):
        e = slots[i]
        v = values[i]
        if math.isnan(v):
            v = 0.0
        elif math.isinf(v):
            v = big if v > 0 else -big
        sums[e] += v
        counts[e] += 1
        if counts[e] == every:
            ents[k] = e
            means[k] = sums[e] / every
            at[k] = ts_ms[i]
            k += 1
            sums[e] = 0.0
            counts[e] = 0
    return k
