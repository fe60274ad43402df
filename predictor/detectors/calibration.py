"""Surprise in bits: a raw statistic turned into a per-entity calibrated tail score.

A detector computes, per row, one or more raw statistics ``t >= 0`` (larger = more
unusual). Each entity keeps a decayed histogram of each statistic over its own recent
rows; the *surprise* of a new value is ``S = -log2 P(T >= t)`` under that histogram, so a
threshold of ``S`` bits is exceeded by about ``2**-S`` of an entity's normal rows, on every
entity alike, whatever its scale, noise or tail. Above the histogram's 90 % quantile the
tail is an exponential fitted by its mean excess (a generalised-Pareto tail of shape 0),
so the surprise keeps growing with ``t`` and never saturates: a 20-sd excursion scores
above a 9-sd one. Where the histogram itself holds values that high, the empirical
frequency caps the fitted tail (the smaller surprise of the two wins).

A new entity starts from a prior histogram (``prior`` pseudo-rows of the statistic's
distribution under a Gaussian baseline), which its own rows replace as they arrive.

Bits map to the contract's ``anomaly_score`` in [0, 1) by :func:`score_from_bits`,
``S / (S + HALF_BITS)``: monotone, 0.5 at ``HALF_BITS``, and resolving the tail in float64.

>>> import numpy as np
>>> float(score_from_bits(np.array([HALF_BITS]))[0])
0.5
>>> float(bits_from_score(score_from_bits(np.array([13.0])))[0])
13.0
"""

from __future__ import annotations

import numpy as np

#: Bits at which ``anomaly_score`` is 0.5.
HALF_BITS = 16.0
#: Rows whose score is at least this are in the tail: about one normal row in 2**ALARM_BITS.
ALARM_BITS = 12.0


def score_from_bits(bits: np.ndarray) -> np.ndarray:
    """Surprise (bits, >= 0) to ``anomaly_score`` in [0, 1): ``S / (S + HALF_BITS)``."""
    b = np.maximum(np.asarray(bits, dtype=np.float64), 0.0)
    return np.asarray(b / (b + HALF_BITS))


def bits_from_score(score: np.ndarray) -> np.ndarray:
    """Inverse of :func:`score_from_bits` (``inf`` at 1)."""
    s = np.clip(np.asarray(score, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return np.asarray(np.where(s < 1.0, HALF_BITS * s / np.maximum(1.0 - s, 1e-300), np.inf))


def bits_for_rate(rows_per_day: float, false_alarms_per_day: float) -> float:
    """Surprise threshold (bits) exceeded ``false_alarms_per_day`` times a day by chance.

    >>> round(bits_for_rate(8640.0, 1.0), 2)  # one event per 10 s
    13.08
    """
    return float(np.log2(max(rows_per_day, 1.0) / max(false_alarms_per_day, 1e-12)))


class TailCalibrator:
    """Decayed per-entity histograms of ``n_stats`` statistics on a fixed grid.

    Parameters
    ----------
    n_stats
        Statistics per row.
    edges_max, n_bins
        The grid: ``n_bins`` equal bins on ``[0, edges_max)``; larger values count in the
        last bin.
    half_life
        Rows after which an observation weighs half (the calibration adapts this slowly).
    prior
        Weight, in rows, of the prior histogram a new entity starts from.
    prior_hist
        Shape ``(n_stats, n_bins)``, each row summing to 1.
    """

    def __init__(
        self,
        n_stats: int,
        prior_hist: np.ndarray,
        edges_max: float = 64.0,
        n_bins: int = 64,
        half_life: float = 4000.0,
        prior: float = 64.0,
    ) -> None:
        self.n_stats = n_stats
        self.edges_max = edges_max
        self.n_bins = n_bins
        self.width = edges_max / n_bins
        self.decay = float(0.5 ** (1.0 / half_life))
        self.prior = prior
        self.prior_hist = np.asarray(prior_hist, dtype=np.float32).reshape(n_stats, n_bins)
        self.centers = (np.arange(n_bins) + 0.5) * self.width

    def fresh(self, k: int) -> np.ndarray:
        """Histograms for ``k`` new entities, shape ``(k, n_stats, n_bins)``."""
        return np.broadcast_to(self.prior * self.prior_hist, (k, self.n_stats, self.n_bins)).copy()

    def bits(self, hist: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Surprise of values ``t`` (shape ``(k, n_stats)``) under ``hist`` (``(k, s, b)``)."""
        h = hist.astype(np.float64)
        total = h.sum(axis=2)
        # Survival at each bin's lower edge: mass in this bin and above.
        above = np.cumsum(h[:, :, ::-1], axis=2)[:, :, ::-1]
        pos = np.clip(t / self.width, 0.0, self.n_bins - 1e-9)
        b = pos.astype(np.int64)
        frac = pos - b
        take = np.take_along_axis
        surv = take(above, b[..., None], 2)[..., 0] - frac * take(h, b[..., None], 2)[..., 0]
        p_emp = np.maximum(surv, 0.0) / total
        # Exponential tail above the 90 % quantile, scale = mean excess over it.
        share = above / total[..., None]
        q_bin = np.maximum((share >= 0.1).sum(axis=2) - 1, 0)
        q = q_bin * self.width + self.width * np.clip(
            (take(share, q_bin[..., None], 2)[..., 0] - 0.1)
            / np.maximum(take(h, q_bin[..., None], 2)[..., 0] / total, 1e-12),
            0.0,
            1.0,
        )
        out = -np.log2(np.clip(p_emp, 1e-300, 1.0))
        tail = t > q
        if tail.any():  # the fitted tail only where it is needed (~10 % of the cells)
            hs, qs = h[tail], q[tail]
            w_above = hs * (self.centers > qs[:, None])
            m_above = w_above.sum(axis=1)
            excess = (w_above * (self.centers - qs[:, None])).sum(axis=1)
            beta = np.maximum(excess / np.maximum(m_above, 1e-12), self.width)
            bits_tail = np.log2(10.0) + np.maximum(t[tail] - qs, 0.0) / beta * np.log2(np.e)
            # Where the entity's own history has seen values this high, its frequency wins
            # over the fitted tail (a sparse counter that ticks now and then is not news).
            out[tail] = np.minimum(bits_tail, out[tail])
        return np.asarray(out)

    def learn(self, hist: np.ndarray, t: np.ndarray, counted: np.ndarray) -> np.ndarray:
        """Histograms after one more row of values ``t`` (``(k, n_stats)``).

        Only the cells where ``counted`` is true learn (and decay); the others are kept.
        """
        out = np.where(counted[..., None], hist * np.float32(self.decay), hist)
        b = np.clip((t / self.width).astype(np.int64), 0, self.n_bins - 1)
        rows, cols = np.nonzero(counted)
        out[rows, cols, b[rows, cols]] += np.float32(1.0)
        return np.asarray(out, dtype=np.float32)


class TailTables:
    """Per-entity calibration state, scored from cached tables (the hot path).

    The decayed histograms of :class:`TailCalibrator` learn every row, but the survival
    table, the 90 % quantile ``q`` and the tail scale ``beta`` that turn a value into bits
    are recomputed only when :meth:`refresh` is called for an entity (the detector does it
    every few dozen of that entity's rows). Scoring a row is then two gathers and a
    formula per cell, not a cumulative sum over every bin, and learning is one scattered
    add: the decay is lazy (each cell keeps a growing weight for new rows, folded back into
    the histogram at the next refresh), so no histogram is rescaled row by row.

    Between two refreshes the scores are those of the histogram as it was at the last
    one: the calibration lags by at most that many rows of a memory thousands of rows
    long.

    Arrays (``k`` entity slots, ``s`` statistics, ``b`` bins; all float32): ``hist``
    ``(k, s, b)``, ``weight`` ``(k, s)`` (the next row's weight, ``decay**-n`` after ``n``
    rows since the last refresh), ``surv`` ``(k, s, b + 1)`` (survival at each bin edge,
    as a probability), ``q`` and ``beta`` ``(k, s)``.

    >>> import numpy as np
    >>> cal = TailCalibrator(1, np.full((1, 8), 1 / 8), edges_max=8.0, n_bins=8)
    >>> tab = TailTables(cal, 2)
    >>> e, t = np.array([0, 1]), np.array([[0.5], [7.5]])
    >>> bool(np.allclose(tab.bits(e, t), cal.bits(cal.fresh(2), t)))
    True
    """

    ARRAYS = ("hist", "weight", "surv", "q", "beta")

    def __init__(self, cal: TailCalibrator, capacity: int) -> None:
        self.cal = cal
        s, b = cal.n_stats, cal.n_bins
        one = cal.fresh(1)
        surv, q, beta = self.tables(one)
        self._fresh = {
            "hist": one[0],
            "weight": np.ones(s, dtype=np.float32),
            "surv": surv[0],
            "q": q[0],
            "beta": beta[0],
        }
        self._stat = np.arange(s)
        self._edge0 = self._stat * (b + 1)  # each statistic's first edge in an entity's table
        self.hist = np.zeros((0, s, b), dtype=np.float32)
        self.weight = np.zeros((0, s), dtype=np.float32)
        self.surv = np.zeros((0, s, b + 1), dtype=np.float32)
        self.q = np.zeros((0, s), dtype=np.float32)
        self.beta = np.zeros((0, s), dtype=np.float32)
        self.ensure(capacity)

    def ensure(self, capacity: int) -> None:
        """Room for ``capacity`` entity slots; new ones start from the prior."""
        n = len(self.hist)
        if capacity <= n:
            return
        for name in self.ARRAYS:
            old = getattr(self, name)
            new = np.empty((capacity, *old.shape[1:]), dtype=np.float32)
            new[:n] = old
            new[n:] = self._fresh[name]
            setattr(self, name, new)

    def tables(self, hist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Survival table, 90 % quantile and tail scale of histograms ``(k, s, b)``.

        One row per (entity, statistic) cell: the survival is a reversed cumulative sum
        (its first column is the total), the quantile and the bin under it are gathered
        by fancy index, and the mean excess over the quantile is one masked matrix-vector
        product (``Σ h·c - q Σ h`` over the bins above ``q``).
        """
        cal = self.cal
        k, s, b = hist.shape
        h = hist.reshape(k * s, b).astype(np.float64)
        above = np.cumsum(h[:, ::-1], axis=1)[:, ::-1]
        total = np.maximum(above[:, 0], 1e-300)
        share = above / total[:, None]
        surv = np.zeros((k * s, b + 1), dtype=np.float32)
        surv[:, :b] = share
        q_bin = np.maximum(np.count_nonzero(share >= 0.1, axis=1) - 1, 0)
        cells = np.arange(k * s)
        q = q_bin * cal.width + cal.width * np.clip(
            (share[cells, q_bin] - 0.1) / np.maximum(h[cells, q_bin] / total, 1e-12),
            0.0,
            1.0,
        )
        h_above = h * (cal.centers > q[:, None])
        m_above = h_above.sum(axis=1)
        excess = h_above @ cal.centers - q * m_above
        beta = np.maximum(excess / np.maximum(m_above, 1e-12), cal.width)
        f32 = np.float32
        return (
            surv.reshape(k, s, b + 1),
            q.astype(f32).reshape(k, s),
            beta.astype(f32).reshape(k, s),
        )

    def bits(self, e: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Surprise of values ``t`` (``(k, s)``) of entities ``e`` (unique), from the tables."""
        cal = self.cal
        pos = np.clip(t / cal.width, 0.0, cal.n_bins - 1e-9)
        b = pos.astype(np.int64)
        frac = pos - b
        # One flat gather per edge: cheaper than three broadcast index arrays.
        flat = self.surv.reshape(-1)
        at = (e[:, None] * (cal.n_stats * (cal.n_bins + 1)) + self._edge0) + b
        s0 = flat.take(at)
        s1 = flat.take(at + 1)
        p_emp = np.maximum(s0 - frac * (s0 - s1), 0.0)
        out = -np.log2(np.clip(p_emp, 1e-300, 1.0))
        cell = e[:, None] * cal.n_stats + self._stat
        q = self.q.reshape(-1).take(cell)
        rows, cols = np.nonzero(t > q)  # the fitted tail only where it is needed (~10 %)
        if len(rows):
            at_tail = cell[rows, cols]
            beta = self.beta.reshape(-1).take(at_tail)
            excess = t[rows, cols] - q[rows, cols]
            bits_tail = np.log2(10.0) + excess / beta * np.log2(np.e)
            out[rows, cols] = np.minimum(bits_tail, out[rows, cols])
        return np.asarray(out)

    def learn(self, e: np.ndarray, t: np.ndarray, counted: np.ndarray) -> None:
        """Count one more row of values ``t`` for entities ``e`` (unique) where ``counted``."""
        cal = self.cal
        rows, cols = np.nonzero(counted)
        if len(rows) == 0:
            return
        er = e[rows]
        w = self.weight[er, cols] * np.float32(1.0 / cal.decay)
        self.weight[er, cols] = w
        b = np.clip((t[rows, cols] / cal.width).astype(np.int64), 0, cal.n_bins - 1)
        self.hist[er, cols, b] += w

    def refresh(self, e: np.ndarray) -> None:
        """Fold the lazy decay into the histograms of ``e`` and rebuild their tables."""
        if len(e) == 0:
            return
        h = self.hist[e] / self.weight[e][..., None]
        self.hist[e] = h
        self.weight[e] = 1.0
        self.surv[e], self.q[e], self.beta[e] = self.tables(h)

    def snapshot(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k).copy() for k in self.ARRAYS}

    def restore(self, snap: dict[str, np.ndarray]) -> None:
        for k in self.ARRAYS:
            setattr(self, k, np.asarray(snap[k], dtype=np.float32).copy())

    def nbytes_per_slot(self) -> float:
        return sum(getattr(self, k).nbytes for k in self.ARRAYS) / max(len(self.hist), 1)
