"""Online anomaly detectors, one module each, all behind :class:`Detector`.

- :class:`~predictor.detectors.ewmaz.EwmaZ` - ours, vectorised over entities (numpy);
- :class:`~predictor.detectors.hst.RiverHST` - river's HalfSpaceTrees, one per entity.
"""

from __future__ import annotations

from predictor.detectors.base import Detector
from predictor.detectors.ewmaz import EwmaZ
from predictor.detectors.hst import RiverHST

__all__ = ["Detector", "EwmaZ", "RiverHST", "make_detector"]

DETECTORS: dict[str, type[EwmaZ] | type[RiverHST]] = {"ewmaz": EwmaZ, "hst": RiverHST}


def make_detector(name: str, n_features: int, seed: int = 0) -> Detector:
    """Build a detector by its short name (``ewmaz`` or ``hst``)."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}") from None
    return cls(n_features=n_features, seed=seed)
