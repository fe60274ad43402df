"""Surprise: robust standardisation, online PCA residual and level shifts, in calibrated bits.

Per entity, vectorised over entities (numpy), every row is scored then learnt:

1. **Standardise.** Each metric keeps an EWMA level and variance (``alpha``), updated
   with the reading winsorised to ``±clip_z`` sd, so ``z = (x - level) / sd`` is in the
   metric's own units of normal noise (scale-free: 1e-3 and 1e9 metrics alike). Absent
   metrics (NaN) count as ``z = 0`` and do not move the baseline; a constant metric has a
   tiny relative sd floor, so a stuck metric that moves is news.
2. **Per metric**, ``z`` (soft-clipped beyond ``clip_z``: monotone, unbounded; a metric
   that never varied counts at most ``clip_z`` sd) is calibrated to bits against the
   metric's own decayed histogram of ``z²``
   (:class:`~predictor.detectors.calibration.TailCalibrator`: exponential tail above the
   90 % quantile, so no saturation, capped by the empirical frequency where the metric
   has been that far out before, so a sparse counter that ticks now and then is not
   news). Heavy-tailed metrics are discounted; the bits are turned back into normal
   scores ``g``.
3. **Three row statistics**: ``peak`` (the largest metric's bits, less ``log2 F``),
   ``energy`` (mean bits over metrics) and ``residual`` (``||R g||²`` where ``R`` projects
   out the principal components explaining ``var_explained`` of an EWMA covariance of
   ``g``, refit by ``eigh`` every ``refit_every`` rows: metrics moving against their
   usual correlation, each unremarkable alone — PCA reconstruction error fit online on
   the history and warm-up, adapting after). Each is calibrated again per entity, and
   the three are combined by Fisher's method (:func:`fisher_bits`).
4. ``anomaly_score = S / (S + 16)``: 0.5 at 16 bits, monotone, resolving the tail.

So a threshold of ``S`` bits is crossed by about ``2**-S`` of an entity's normal rows,
the same on every entity; :func:`~predictor.detectors.calibration.bits_for_rate` turns
a false-alarm budget per entity-day into bits for a given row rate.

State per entity: ``F`` metrics cost ``3 F`` float64 (level, variance, slow variance),
two ``F × F`` float32 (covariance, residual projector), the calibration (per metric 32
histogram bins, a 33-edge survival table and three scalars; per row statistic 64 bins,
65 edges and three scalars; float32), 16 buffered rows of ``F`` float16 normal scores
awaiting the covariance, and three scalars: 8,318 B (8.1 KiB) at 15 metrics, whatever
the number of rows seen.

Speed: one compiled loop walks the rows of a call (:mod:`predictor.detectors.surprise_kernel`,
entities are independent, so row order within an entity is all that matters). Scoring
reads cached calibration tables (rebuilt every ``calib_every`` rows of the entity),
learning is one scattered add (the decay is lazy) and the covariance learns 16 rows at a
time. The tables and the fold are pinned to the row-by-row definitions in
``tests/unit/test_surprise_state.py``, the kernel to the numpy implementation it replaced
in ``tests/unit/test_surprise_kernel.py``.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> det = Surprise(n_features=3)
>>> s = det.score_learn_many(np.zeros(3000, dtype=np.int64), rng.normal(size=(3000, 3)))
>>> snap = det.snapshot()
>>> def probe(sd):  # one more row, sd out on one metric, from the same state
...     d = Surprise(n_features=3); d.restore(snap)
...     return d.score_learn_many(np.zeros(1, dtype=np.int64), np.array([[0.0, sd, 0.0]]))[0]
>>> bool(probe(20.0) > probe(9.0) > np.quantile(s[1000:], 0.999))
True
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from predictor.detectors.calibration import TailCalibrator, TailTables, score_from_bits
from predictor.detectors.surprise_kernel import surprise_rows

N_STATS = 3
METRIC_GRID, METRIC_BINS = 64.0, 32
Z_CAP = 1e6
SLOW_SHARE = 0.05  # the slow variance's EWMA weight, relative to ``alpha``
SLOW_SD_SHARE = 0.2  # the sd never falls below this share of the slow sd
FOLD_ROWS = 16  # rows of normal scores buffered before they are folded into the covariance
_ARRAYS = ("count_", "mean_", "var_", "slow_var_", "cov_", "proj_", "resid_", "gbuf_", "nbuf_")


def fisher_bits(bits: np.ndarray) -> np.ndarray:
    """Fisher's combination of ``m`` surprises per row, in bits (exact if independent).

    With ``b`` the row's total bits and ``y = b ln 2``, ``P = 2**-b · Σ_{i<m} y**i / i!``:
    the chance that ``m`` independent tail probabilities multiply to ``2**-b`` or less.

    >>> round(float(fisher_bits(np.array([[10.0, 0.0]]))[0]), 2)
    7.01
    """
    b = np.maximum(bits, 0.0).sum(axis=1)
    y = b * np.log(2.0)
    series = np.ones_like(y)
    term = np.ones_like(y)
    for i in range(1, bits.shape[1]):
        term = term * y / i
        series = series + term
    return np.asarray(np.maximum(b - np.log2(series), 0.0))


class Surprise:
    """Multi-entity calibrated anomaly detector (see the module docstring).

    Parameters
    ----------
    n_features
        Columns of the input matrix (NaN means "absent").
    alpha
        EWMA weight of a new row in each metric's level and variance.
    cov_alpha
        EWMA weight of a new row in the covariance the PCA is fit on.
    var_explained
        Share of the covariance's trace the kept components explain; the rest is residual.
    refit_every
        Rows of an entity between two PCA refits.
    warmup
        Rows an entity needs before it is scored; earlier rows score 0.
    clip_z
        Readings beyond this many sd are winsorised before they update the baseline.
    rel_sd_floor
        The sd is at least this share of the level's magnitude (and 1e-12).
    half_life
        Rows after which a row's weight in the calibration histograms halves.
    calib_every
        Rows of an entity between two rebuilds of its calibration tables (and 8 and 16
        rows after warm-up, while the histograms move fastest from the prior).
    seed
        Seed of the prior's Gaussian sample (the detector is otherwise deterministic).
    """

    def __init__(
        self,
        n_features: int,
        alpha: float = 0.001,
        cov_alpha: float = 0.0005,
        var_explained: float = 0.9,
        refit_every: int = 64,
        warmup: int = 20,
        clip_z: float = 4.0,
        rel_sd_floor: float = 1e-3,
        half_life: float = 4000.0,
        calib_every: int = 32,
        seed: int = 0,
    ) -> None:
        self.n_features = n_features
        self.alpha = alpha
        self.cov_alpha = cov_alpha
        self.var_explained = var_explained
        self.refit_every = refit_every
        self.warmup = warmup
        self.clip_z = clip_z
        self.rel_sd_floor = rel_sd_floor
        self.half_life = half_life
        self.calib_every = calib_every
        self.seed = seed
        metric_prior, row_prior = self._priors()
        self._metric_cal = TailCalibrator(
            n_features, metric_prior, METRIC_GRID, METRIC_BINS, half_life=half_life
        )
        self._calibrator = TailCalibrator(N_STATS, row_prior, half_life=half_life)
        self._mtab = TailTables(self._metric_cal, 0)
        self._rtab = TailTables(self._calibrator, 0)
        self._params = self._kernel_params()
        self._alloc(64)

    def _priors(self) -> tuple[np.ndarray, np.ndarray]:
        """Prior histograms under an i.i.d. Gaussian baseline: per metric, and per row."""
        f = max(self.n_features, 1)
        rng = np.random.default_rng(self.seed)
        z = rng.standard_normal((4000, f))
        per_metric = z[:, :1] ** 2
        mbits = -np.log2(rng.uniform(1e-12, 1.0, (4000, f)))
        peak = np.maximum(mbits.max(axis=1) - np.log2(f), 0.0)
        energy = mbits.mean(axis=1)
        k_res = max(1, f // 2)
        resid = (z[:, :k_res] ** 2).sum(axis=1) / k_res

        def hist(stats: np.ndarray, cal: TailCalibrator) -> np.ndarray:
            b = np.clip((stats / cal.width).astype(np.int64), 0, cal.n_bins - 1)
            h = np.stack([np.bincount(b[:, j], minlength=cal.n_bins) for j in range(b.shape[1])])
            return np.asarray(h / h.sum(axis=1, keepdims=True))

        metric_cal = TailCalibrator(1, np.ones((1, METRIC_BINS)), METRIC_GRID, METRIC_BINS)
        row_cal = TailCalibrator(N_STATS, np.ones((N_STATS, 64)))
        m = hist(per_metric, metric_cal)
        return np.repeat(m, f, axis=0), hist(np.stack([peak, energy, resid], axis=1), row_cal)

    def _alloc(self, capacity: int) -> None:
        f = self.n_features
        self.count_ = np.zeros(capacity, dtype=np.int64)
        self.mean_ = np.full((capacity, f), np.nan)
        self.var_ = np.zeros((capacity, f))
        self.slow_var_ = np.zeros((capacity, f))
        self.cov_ = np.zeros((capacity, f, f), dtype=np.float32)
        self.proj_ = np.zeros((capacity, f, f), dtype=np.float32)
        self.resid_ = np.zeros(capacity, dtype=np.float32)  # expected residual; 0 = no PCA yet
        # The rows not yet folded into ``cov_`` (see ``surprise_kernel.fold``).
        self.gbuf_ = np.zeros((capacity, FOLD_ROWS, f), dtype=np.float16)
        self.nbuf_ = np.zeros(capacity, dtype=np.int16)
        self._mtab = TailTables(self._metric_cal, capacity)
        self._rtab = TailTables(self._calibrator, capacity)

    def _ensure(self, capacity: int) -> None:
        if capacity <= len(self.count_):
            return
        old = {k: getattr(self, k) for k in _ARRAYS}
        mtab, rtab = self._mtab.snapshot(), self._rtab.snapshot()
        n = len(old["count_"])
        self._alloc(max(capacity, 2 * n))
        for k, arr in old.items():
            getattr(self, k)[:n] = arr
        for tab, snap in ((self._mtab, mtab), (self._rtab, rtab)):
            for k, arr in snap.items():
                getattr(tab, k)[:n] = arr

    def score_learn_many(self, keys: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Score then learn each row of ``x`` (entity ``keys[i]``), in order."""
        return score_from_bits(self.bits_learn_many(keys, x))

    def bits_learn_many(self, keys: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Like :meth:`score_learn_many`, in bits of surprise (0 before warm-up)."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(len(keys), self.n_features)
        out = np.zeros(len(keys))
        if len(keys) == 0:
            return out
        self._ensure(int(keys.max()) + 1)
        m, r = self._mtab, self._rtab
        surprise_rows(
            keys,
            x,
            out,
            self._params,
            self.count_,
            self.mean_,
            self.var_,
            self.slow_var_,
            self.cov_,
            self.proj_,
            self.resid_,
            self.gbuf_.view(np.uint16),
            self.nbuf_,
            m.hist,
            m.weight,
            m.surv,
            m.q,
            m.beta,
            m.cal.centers,
            r.hist,
            r.weight,
            r.surv,
            r.q,
            r.beta,
            r.cal.centers,
        )
        return out

    def _kernel_params(self) -> np.ndarray:
        """The kernel's scalar settings, in the order :func:`surprise_rows` reads them
        (built once: the settings do not change after construction)."""
        m, r = self._metric_cal, self._calibrator
        return np.array(
            [
                self.alpha,
                SLOW_SHARE,
                SLOW_SD_SHARE,
                self.clip_z,
                self.rel_sd_floor,
                Z_CAP,
                self.warmup,
                self.refit_every,
                self.calib_every,
                FOLD_ROWS,
                max(self.cov_alpha, 0.0),
                self.var_explained,
                m.width,
                m.n_bins,
                1.0 / m.decay,
                r.width,
                r.n_bins,
                1.0 / r.decay,
            ]
        )

    def clone(self) -> Self:
        return type(self)(**self.get_params())

    def get_params(self) -> dict[str, Any]:
        return {
            "n_features": self.n_features,
            "alpha": self.alpha,
            "cov_alpha": self.cov_alpha,
            "var_explained": self.var_explained,
            "refit_every": self.refit_every,
            "warmup": self.warmup,
            "clip_z": self.clip_z,
            "rel_sd_floor": self.rel_sd_floor,
            "half_life": self.half_life,
            "calib_every": self.calib_every,
            "seed": self.seed,
        }

    def snapshot(self) -> dict[str, Any]:
        # Flat, every array with the entity on its first axis (what-if copies take rows).
        snap: dict[str, Any] = {k: getattr(self, k).copy() for k in _ARRAYS}
        for prefix, tab in (("mcal_", self._mtab), ("rcal_", self._rtab)):
            snap.update({prefix + k: v for k, v in tab.snapshot().items()})
        return snap

    def restore(self, snap: dict[str, Any]) -> None:
        n = len(snap["count_"])
        f = self.n_features
        for k in _ARRAYS:
            if k in snap:
                setattr(self, k, snap[k].copy())
            elif k == "gbuf_":  # older snapshots: no rows waiting for the covariance
                self.gbuf_ = np.zeros((n, FOLD_ROWS, f), dtype=np.float16)
            else:
                self.nbuf_ = np.zeros(n, dtype=np.int16)
        self._mtab = TailTables(self._metric_cal, n)
        self._rtab = TailTables(self._calibrator, n)
        if "mcal_hist" in snap:
            for prefix, tab in (("mcal_", self._mtab), ("rcal_", self._rtab)):
                tab.restore({k: snap[prefix + k] for k in tab.ARRAYS})
        else:  # a snapshot from before the cached tables: histograms only, tables rebuilt
            self._mtab.hist[:] = snap["mhist_"]
            self._rtab.hist[:] = snap["hist_"]
            self._mtab.refresh(np.arange(n))
            self._rtab.refresh(np.arange(n))

    def nbytes_per_entity(self) -> float:
        arrays = sum(getattr(self, k).nbytes for k in _ARRAYS) / len(self.count_)
        return arrays + self._mtab.nbytes_per_slot() + self._rtab.nbytes_per_slot()
