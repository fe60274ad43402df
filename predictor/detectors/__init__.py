"""Online anomaly detectors, one module each, all behind :class:`Detector`.

Shipped (``--detector``, ``PRECOVERY_DETECTOR``; :data:`SHIPPED`), each measured ahead of
river's HalfSpaceTrees, IsolationForest and PCA on held-out real services
(``docs/detectors.md``):

- :class:`~predictor.detectors.surprise.Surprise` (``surprise``) - ours, the default:
  calibrated surprise in bits from standardised metrics, an online PCA residual and the
  metrics' own tails (numpy, vectorised over entities);
- :class:`~predictor.detectors.surprise_hst.SurpriseHST` (``surprise_hst``) - the same
  with river's HalfSpaceTrees as a second opinion, Fisher-combined: the river detector for
  live use on small fleets (river's per-event loop and ~1 MiB of state per entity).

Kept for comparison only (:data:`COMPARISON`: ``precovery evaluate-detectors --methods``,
the detectors notebook), because they do not lead the baselines on held-out services:

- :class:`~predictor.detectors.ewmaz.EwmaZ` (``ewmaz``) - the former default, per-metric
  EWMA z-scores with a Gaussian calibration;
- :class:`~predictor.detectors.hst.RiverHST` (``hst``) - river's HalfSpaceTrees alone on
  standardised, squashed metrics, calibrated.

The river modules are imported on first use: river (and the scipy it pulls in) costs
about a second at start-up, and the default detector does not need it.

>>> make_detector("ewmaz", 3)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: detector 'ewmaz' is kept for comparison only (...); choose from ['surprise', ...]
>>> type(make_detector("ewmaz", 3, comparison=True)).__name__
'EwmaZ'
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from predictor.detectors.base import Detector
from predictor.detectors.ewmaz import EwmaZ
from predictor.detectors.surprise import Surprise

if TYPE_CHECKING:
    from predictor.detectors.hst import RiverHST
    from predictor.detectors.surprise_hst import SurpriseHST

__all__ = [
    "COMPARISON",
    "DETECTORS",
    "SHIPPED",
    "Detector",
    "EwmaZ",
    "RiverHST",
    "Surprise",
    "SurpriseHST",
    "make_detector",
]

_WHERE = {
    "surprise": ("predictor.detectors.surprise", "Surprise"),
    "surprise_hst": ("predictor.detectors.surprise_hst", "SurpriseHST"),
    "ewmaz": ("predictor.detectors.ewmaz", "EwmaZ"),
    "hst": ("predictor.detectors.hst", "RiverHST"),
}
#: Detectors the loop runs (``--detector``): they lead the baselines on held-out services.
SHIPPED = ("surprise", "surprise_hst")
#: Detectors kept to be measured against, not to be run live.
COMPARISON = ("ewmaz", "hst")


class _Registry(Mapping[str, Any]):
    """Detector classes by short name (shipped and comparison), imported when asked for."""

    def __getitem__(self, name: str) -> Any:
        module, attr = _WHERE[name]
        return getattr(importlib.import_module(module), attr)

    def __iter__(self) -> Iterator[str]:
        return iter(_WHERE)

    def __len__(self) -> int:
        return len(_WHERE)


DETECTORS = _Registry()


def __getattr__(name: str) -> Any:
    if name == "RiverHST":
        return DETECTORS["hst"]
    if name == "SurpriseHST":
        return DETECTORS["surprise_hst"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_detector(name: str, n_features: int, seed: int = 0, comparison: bool = False) -> Detector:
    """Build a detector by its short name: one of :data:`SHIPPED`, or with ``comparison``
    also one of :data:`COMPARISON` (evaluation and notebooks only)."""
    allowed = SHIPPED + COMPARISON if comparison else SHIPPED
    if name not in allowed:
        if name in COMPARISON:
            raise ValueError(
                f"detector {name!r} is kept for comparison only (it does not lead the baselines "
                f"on held-out services, docs/detectors.md); choose from {list(SHIPPED)}"
            )
        raise ValueError(f"unknown detector {name!r}; choose from {list(allowed)}")
    det: Detector = DETECTORS[name](n_features=n_features, seed=seed)
    return det
