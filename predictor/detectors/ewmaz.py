"""EwmaZ: vectorised per-entity EWMA z-scores, calibrated by the max over metrics.

Each entity keeps, per metric, an EWMA of the level and of the variance (16 B per
metric). A row's statistic is the largest absolute z-score over its present metrics;
under a Gaussian baseline it is at least ``z0`` with probability
``p = 1 - (1 - 2 Φ(-z0)) ** k`` (Šidák over ``k`` metrics). The surprise ``-log2 p`` is
computed in log space (no saturation: 20 sd outranks 9 sd) and mapped to [0, 1) by
:func:`~predictor.detectors.calibration.score_from_bits`. The calibration is Gaussian,
not the entity's own (see :class:`~predictor.detectors.surprise.Surprise` for that).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(600, 3)); x[550:, 1] += 6.0
>>> s = EwmaZ(n_features=3).score_learn_many(np.zeros(600, dtype=np.int64), x)
>>> float(s[:500].mean()) < 0.2 < float(s[550:560].mean())
True
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from scipy.special import log_ndtr

from predictor.batching import rounds
from predictor.detectors.calibration import score_from_bits


class EwmaZ:
    """Multi-entity EWMA z-score detector.

    Parameters
    ----------
    n_features
        Columns of the input matrix (NaN means "absent" and is skipped).
    alpha
        EWMA weight of a new row, per row (0.005 ≈ a 200-row memory: 33 min at 10 s;
        faster memories chase a sustained anomaly and lose it, measured on JumpStarter).
    warmup
        Rows an entity needs before it is scored; earlier rows score 0.
    clip_z
        Readings beyond this many sd are winsorised before they update the baseline.
    min_sd
        Floor of the baseline sd, relative to its level (and 1e-12 absolute: scale-free).
    seed
        Unused (the detector is deterministic); accepted so all detectors build alike.
    """

    def __init__(
        self,
        n_features: int,
        alpha: float = 0.005,
        warmup: int = 20,
        clip_z: float = 5.0,
        min_sd: float = 0.02,
        seed: int = 0,
    ) -> None:
        self.n_features = n_features
        self.alpha = alpha
        self.warmup = warmup
        self.clip_z = clip_z
        self.min_sd = min_sd
        self.seed = seed
        self._alloc(256)

    def _alloc(self, capacity: int) -> None:
        self.count_ = np.zeros(capacity, dtype=np.int64)
        self.mean_ = np.full((capacity, self.n_features), np.nan)
        self.var_ = np.zeros((capacity, self.n_features))

    def _ensure(self, capacity: int) -> None:
        if capacity <= len(self.count_):
            return
        old = (self.count_, self.mean_, self.var_)
        self._alloc(max(capacity, 2 * len(old[0])))
        self.count_[: len(old[0])] = old[0]
        self.mean_[: len(old[0])] = old[1]
        self.var_[: len(old[0])] = old[2]

    def score_learn_many(self, keys: np.ndarray, x: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64)
        x = np.asarray(x, dtype=np.float64).reshape(len(keys), self.n_features)
        out = np.zeros(len(keys))
        if len(keys) == 0:
            return out
        self._ensure(int(keys.max()) + 1)
        for idx in rounds(keys):
            out[idx] = self._round(keys[idx], x[idx])
        return out

    def _round(self, e: np.ndarray, x: np.ndarray) -> np.ndarray:
        mean, var, count = self.mean_[e], self.var_[e], self.count_[e]
        present = ~np.isnan(x)
        seed = present & np.isnan(mean)
        mean = np.where(seed, x, mean)
        # Bias-corrected: the variance EWMA starts at 0 and has gathered 1 - (1-a)^(n-1)
        # of its weight after n rows (otherwise early z-scores are far too large).
        gathered = -np.expm1((count - 1).clip(min=0) * np.log1p(-self.alpha))[:, None]
        sd = np.sqrt(var / np.maximum(gathered, 1e-3))
        sd = np.maximum(sd, np.maximum(1e-12, self.min_sd * np.abs(mean)))
        z = np.where(present, np.abs(x - mean) / sd, 0.0)
        k = np.maximum(present.sum(axis=1), 1)
        # ln p1 = ln(2 Φ(-z)); p = 1 - (1 - p1)^k = -expm1(k log1p(-p1)), all in logs.
        ln_p1 = np.log(2.0) + log_ndtr(-z.max(axis=1))
        p1 = np.exp(ln_p1)
        exact = -np.expm1(k * np.log1p(-np.minimum(p1, 1.0 - 1e-16)))
        ln_p = np.where(p1 < 1e-8, ln_p1 + np.log(k), np.log(np.maximum(exact, 1e-300)))
        score = score_from_bits(-ln_p / np.log(2.0))
        score = np.where(count >= self.warmup, score, 0.0)

        lim = self.clip_z * sd
        xb = np.where(count[:, None] >= self.warmup, np.clip(x, mean - lim, mean + lim), x)
        diff = xb - mean
        upd = present & ~seed
        a = self.alpha
        self.mean_[e] = np.where(upd, mean + a * diff, mean)
        self.var_[e] = np.where(upd, (1 - a) * (var + a * diff * diff), var)
        self.count_[e] = count + 1
        return np.asarray(score)

    def clone(self) -> Self:
        return type(self)(**self.get_params())

    def get_params(self) -> dict[str, Any]:
        return {
            "n_features": self.n_features,
            "alpha": self.alpha,
            "warmup": self.warmup,
            "clip_z": self.clip_z,
            "min_sd": self.min_sd,
            "seed": self.seed,
        }

    def snapshot(self) -> dict[str, Any]:
        return {"count": self.count_.copy(), "mean": self.mean_.copy(), "var": self.var_.copy()}

    def restore(self, snap: dict[str, Any]) -> None:
        self.count_ = snap["count"].copy()
        self.mean_ = snap["mean"].copy()
        self.var_ = snap["var"].copy()

    def nbytes_per_entity(self) -> float:
        return (self.count_.nbytes + self.mean_.nbytes + self.var_.nbytes) / len(self.count_)
