"""Online anomaly detectors, one module each, all behind :class:`Detector`.

- :class:`~predictor.detectors.surprise.Surprise` - ours, the default: calibrated surprise
  in bits from standardised metrics, an online PCA residual and level shifts (numpy);
- :class:`~predictor.detectors.ewmaz.EwmaZ` - the former default, per-metric EWMA z-scores;
- :class:`~predictor.detectors.hst.RiverHST` - river's HalfSpaceTrees, one per entity.

``RiverHST`` is imported on first use: river (and the scipy it pulls in) costs about a
second at start-up, and the default detector does not need it.
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

__all__ = ["DETECTORS", "Detector", "EwmaZ", "RiverHST", "Surprise", "make_detector"]

_WHERE = {
    "surprise": ("predictor.detectors.surprise", "Surprise"),
    "ewmaz": ("predictor.detectors.ewmaz", "EwmaZ"),
    "hst": ("predictor.detectors.hst", "RiverHST"),
}


class _Registry(Mapping[str, "type[Surprise] | type[EwmaZ] | type[RiverHST]"]):
    """Detector classes by short name, each module imported when first asked for."""

    def __getitem__(self, name: str) -> type[Surprise] | type[EwmaZ] | type[RiverHST]:
        module, attr = _WHERE[name]
        cls: type[Surprise] | type[EwmaZ] | type[RiverHST] = getattr(
            importlib.import_module(module), attr
        )
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(_WHERE)

    def __len__(self) -> int:
        return len(_WHERE)


DETECTORS = _Registry()


def __getattr__(name: str) -> Any:
    if name == "RiverHST":
        return DETECTORS["hst"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_detector(name: str, n_features: int, seed: int = 0) -> Detector:
    """Build a detector by its short name (``surprise``, ``ewmaz`` or ``hst``)."""
    if name not in _WHERE:
        raise ValueError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}")
    return DETECTORS[name](n_features=n_features, seed=seed)
