"""SurpriseHST: :class:`~predictor.detectors.surprise.Surprise` with river's HalfSpaceTrees.

The river detector we ship for live use. Each entity runs both the vectorised
``Surprise`` (calibrated bits from standardised metrics, the online PCA residual and the
per-metric tails) and river's :class:`~river.anomaly.HalfSpaceTrees` on the same metrics
(standardised and squashed into [0, 1] as in :class:`~predictor.detectors.hst.RiverHST`,
the tree mass calibrated to bits on the entity's own scores). The two surprises are
combined by Fisher's method (:func:`~predictor.detectors.surprise.fisher_bits`), so the
result is still calibrated bits: a threshold of ``S`` bits is crossed by about ``2**-S``
of an entity's normal rows, and the same false-alarm setting holds.

The trees add what the PCA residual does not see: a region of the metric space the
entity rarely visits, even when every metric and every correlation is ordinary. They cost
river's per-event Python loop and about 1 MiB of state per entity (river's trees), so
this detector is for fleets of tens to hundreds of hosts (``--detector surprise_hst``);
``surprise`` is the default across a 10,000-host fleet. Measured on the held-out services
in ``docs/detectors.md``.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(700, 3)); x[690:, 1] += 12.0
>>> s = SurpriseHST(n_features=3).score_learn_many(np.zeros(700, dtype=np.int64), x)
>>> float(np.quantile(s[300:680], 0.99)) < float(s[690])
True
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from predictor.detectors.calibration import score_from_bits
from predictor.detectors.hst import RiverHST
from predictor.detectors.surprise import Surprise, fisher_bits


class SurpriseHST:
    """Multi-entity ``Surprise`` and river ``HalfSpaceTrees``, Fisher-combined.

    Parameters
    ----------
    n_features
        Columns of the input matrix (NaN means "absent").
    seed
        Seed of the trees (and of ``Surprise``'s prior sample).
    """

    def __init__(self, n_features: int, seed: int = 0) -> None:
        self.n_features = n_features
        self.seed = seed
        self.surprise_ = Surprise(n_features=n_features, seed=seed)
        self.trees_ = RiverHST(n_features=n_features, seed=seed)

    def score_learn_many(self, keys: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Score then learn each row of ``x`` (entity ``keys[i]``), in order."""
        return score_from_bits(self.bits_learn_many(keys, x))

    def bits_learn_many(self, keys: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Like :meth:`score_learn_many`, in bits of surprise (0 before warm-up)."""
        keys = np.asarray(keys, dtype=np.int64)
        x = np.asarray(x, dtype=np.float64).reshape(len(keys), self.n_features)
        own = self.surprise_.bits_learn_many(keys, x)
        trees = self.trees_.tree_bits_learn_many(keys, x)
        return fisher_bits(np.stack([own, trees], axis=1))

    def clone(self) -> Self:
        return type(self)(**self.get_params())

    def get_params(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "seed": self.seed}

    def snapshot(self) -> dict[str, Any]:
        return {"surprise": self.surprise_.snapshot(), "trees": self.trees_.snapshot()}

    def restore(self, snap: dict[str, Any]) -> None:
        self.surprise_.restore(snap["surprise"])
        self.trees_.restore(snap["trees"])

    def nbytes_per_entity(self) -> float:
        return self.surprise_.nbytes_per_entity() + self.trees_.nbytes_per_entity()
