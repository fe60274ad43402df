"""RiverHST: river's HalfSpaceTrees, one model per entity, behind the detector contract.

HalfSpaceTrees expects features in [0, 1]. A min-max scaler is ruined by one outlier
(every later row then sits in a corner of the unit cube, and at river's defaults nearly
every row of a simple series scored ~0.99), so each metric is first standardised by its
own running mean and sd (river's ``StandardScaler``) and squashed,
``0.5 + 0.5 tanh(z / squash)``: normal noise spreads over the middle of [0, 1], an
excursion goes to an edge.

The tree score is a mass, flat beyond the last split: two excursions in the same leaf
tie. So the detector's surprise (bits) is Fisher's combination of the tree's score,
calibrated on the entity's own scores, and the Gaussian tail of the largest ``|z|`` (as
in :class:`~predictor.detectors.ewmaz.EwmaZ`): the trees find the unusual *region*, the
tail term keeps 20 sd above 9 sd. It costs about 1 MiB of state per entity and a
Python loop per event: use it where an entity earns that (tens to hundreds of entities,
offline scoring), not across a 10,000-host fleet.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(600, 2)); x[590:] = 8.0
>>> s = RiverHST(n_features=2, seed=1).score_learn_many(np.zeros(600, dtype=np.int64), x)
>>> float(np.quantile(s[300:580], 0.99)) < float(s[590:].min())
True
"""

from __future__ import annotations

import math
import pickle
from typing import Any, Self

import numpy as np
from river import anomaly, preprocessing
from scipy.special import log_ndtr

from predictor.detectors.calibration import TailCalibrator, score_from_bits
from predictor.detectors.surprise import fisher_bits

_GRID, _BINS = 24.0, 48


class RiverHST:
    """Per-entity ``MinMaxScaler | HalfSpaceTrees``.

    Parameters
    ----------
    n_features
        Columns of the input matrix (NaN cells are left out of the row's dict).
    n_trees, height, window_size
        Passed to :class:`river.anomaly.HalfSpaceTrees`.
    squash
        Scale, in sd, of the ``tanh`` that maps a standardised metric into [0, 1].
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
        squash: float = 3.0,
        warmup: int = 20,
        seed: int = 0,
    ) -> None:
        self.n_features = n_features
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.squash = squash
        self.warmup = warmup
        self.seed = seed
        self.models_: dict[int, Any] = {}
        self.counts_: dict[int, int] = {}
        self.hists_: dict[int, np.ndarray] = {}
        prior = np.exp(-np.arange(_BINS) / 4.0)[None, :]
        self._cal = TailCalibrator(1, prior / prior.sum(), _GRID, _BINS, half_life=4000.0)

    def _new_model(self) -> Any:
        return preprocessing.StandardScaler(), anomaly.HalfSpaceTrees(
            n_trees=self.n_trees,
            height=self.height,
            window_size=self.window_size,
            limits=dict.fromkeys(range(self.n_features), (0.0, 1.0)),
            seed=self.seed,
        )

    def score_learn_many(self, keys: np.ndarray, x: np.ndarray) -> np.ndarray:
        return score_from_bits(self.bits_learn_many(keys, x))

    def tree_bits_learn_many(self, keys: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The trees' calibrated surprise alone (bits), without the ``|z|`` tail term."""
        return self.bits_learn_many(keys, x, tail=False)

    def bits_learn_many(self, keys: np.ndarray, x: np.ndarray, tail: bool = True) -> np.ndarray:
        """Surprise in bits: the trees' and (``tail``) the largest ``|z|``'s, combined."""
        x = np.asarray(x, dtype=np.float64).reshape(len(keys), self.n_features)
        out = np.zeros(len(keys))
        models, counts, hists = self.models_, self.counts_, self.hists_
        c = 1.0 / self.squash
        for i, (k, row) in enumerate(zip(np.asarray(keys).tolist(), x.tolist(), strict=True)):
            model = models.get(k)
            if model is None:
                model = models[k] = self._new_model()
                counts[k] = 0
                hists[k] = self._cal.fresh(1)[0]
            scaler, trees = model
            xd = {j: v for j, v in enumerate(row) if math.isfinite(v)}
            z = scaler.transform_one(xd) if counts[k] >= 2 else dict.fromkeys(xd, 0.0)
            u = {j: 0.5 + 0.5 * math.tanh(c * v) for j, v in z.items()}
            if counts[k] >= self.warmup:
                raw = trees.score_one(u)
                t = np.array([[-math.log2(max(1.0 - raw, 1e-12))]])
                h = hists[k][None]
                tree_bits = float(self._cal.bits(h, t)[0, 0])
                hists[k] = self._cal.learn(h, t, np.ones((1, 1), dtype=bool))[0]
                if tail:
                    zmax = max((abs(v) for v in z.values()), default=0.0)
                    n = max(len(z), 1)
                    tail_bits = -(math.log(2.0) + float(log_ndtr(-zmax)) + math.log(n))
                    tail_bits = max(0.0, tail_bits) / math.log(2.0)
                    out[i] = float(fisher_bits(np.array([[tree_bits, tail_bits]]))[0])
                else:
                    out[i] = tree_bits
            scaler.learn_one(xd)
            trees.learn_one(u)
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
            "squash": self.squash,
            "warmup": self.warmup,
            "seed": self.seed,
        }

    def snapshot(self) -> bytes:
        state = (self.models_, self.counts_, self.hists_)
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, snap: bytes) -> None:
        self.models_, self.counts_, self.hists_ = pickle.loads(snap)

    def nbytes_per_entity(self) -> float:
        if not self.models_:
            return 0.0
        return len(self.snapshot()) / len(self.models_)
