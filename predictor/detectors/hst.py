"""RiverHST: river's HalfSpaceTrees, one model per entity, behind the detector contract.

HalfSpaceTrees expects features in [0, 1], so each entity's model is river's
``MinMaxScaler | HalfSpaceTrees``. It is accurate on sudden shifts but costs about
1 MiB of state per entity and runs a Python loop per event: use it where an entity
earns that (few entities, offline scoring), not across a 10,000-host fleet.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(size=(400, 2)); x[390:] = 5.0
>>> s = RiverHST(n_features=2, seed=1).score_learn_many(np.zeros(400, dtype=np.int64), x)
>>> float(s[300:380].mean()) < float(s[391:].mean())
True
"""

from __future__ import annotations

import math
import pickle
from typing import Any, Self

import numpy as np
from river import anomaly, preprocessing


class RiverHST:
    """Per-entity ``MinMaxScaler | HalfSpaceTrees``.

    Parameters
    ----------
    n_features
        Columns of the input matrix (NaN cells are left out of the row's dict).
    n_trees, height, window_size
        Passed to :class:`river.anomaly.HalfSpaceTrees`.
    warmup
        Rows an entity needs before it is scored; earlier rows score 0.
    seed
        Seed of every entity's trees.
    """

    def __init__(
        self,
        n_features: int,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        warmup: int = 20,
        seed: int = 0,
    ) -> None:
        self.n_features = n_features
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.warmup = warmup
        self.seed = seed
        self.models_: dict[int, Any] = {}
        self.counts_: dict[int, int] = {}

    def _new_model(self) -> Any:
        return preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(
            n_trees=self.n_trees, height=self.height, window_size=self.window_size, seed=self.seed
        )

    def score_learn_many(self, keys: np.ndarray, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(len(keys), self.n_features)
        out = np.zeros(len(keys))
        models, counts = self.models_, self.counts_
        for i, (k, row) in enumerate(zip(np.asarray(keys).tolist(), x.tolist(), strict=True)):
            model = models.get(k)
            if model is None:
                model = models[k] = self._new_model()
                counts[k] = 0
            xd = {j: v for j, v in enumerate(row) if not math.isnan(v)}
            if counts[k] >= self.warmup:
                out[i] = model.score_one(xd)
            model.learn_one(xd)
            counts[k] += 1
        return out

    def clone(self) -> Self:
        return type(self)(**self.get_params())

    def get_params(self) -> dict[str, Any]:
        return {
            "n_features": self.n_features,
            "n_trees": self.n_trees,
            "height": self.height,
            "window_size": self.window_size,
            "warmup": self.warmup,
            "seed": self.seed,
        }

    def snapshot(self) -> bytes:
        return pickle.dumps((self.models_, self.counts_), protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, snap: bytes) -> None:
        self.models_, self.counts_ = pickle.loads(snap)

    def nbytes_per_entity(self) -> float:
        if not self.models_:
            return 0.0
        return len(self.snapshot()) / len(self.models_)
