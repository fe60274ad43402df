"""The contract every detector meets (checked by ``tests/contract``).

A detector scores many entities at once. ``score_learn_many(keys, X)`` is
*prequential*: each row is scored against the state built from the rows before it
(earlier in the batch included) and then learnt, so a score never sees its own row.
Scores are in [0, 1], higher is more anomalous, and 0 means "no evidence yet".
"""

from __future__ import annotations

from typing import Any, Protocol, Self

import numpy as np


class Detector(Protocol):
    """Online, multi-entity anomaly detector."""

    n_features: int

    def score_learn_many(self, keys: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Score then learn each row of ``x`` (entity ``keys[i]``), in order."""
        ...

    def clone(self) -> Self:
        """A fresh, unfitted detector with the same parameters."""
        ...

    def snapshot(self) -> Any:
        """A picklable value that :meth:`restore` turns back into this state."""
        ...

    def restore(self, snap: Any) -> None:
        """Replace the state by a snapshot's."""
        ...

    def nbytes_per_entity(self) -> float:
        """Approximate state bytes per tracked entity."""
        ...
