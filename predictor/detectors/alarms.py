"""Alarms are episodes, not points.

An episode opens on the first row whose surprise reaches the threshold and stays open
while it persists; runs separated by at most ``merge_gap`` rows below the threshold are
one episode (a flapping score around the threshold is one alarm, not many). The
threshold is one setting for the whole fleet, in expected false alarms per entity-day:
:func:`~predictor.detectors.calibration.bits_for_rate` turns it into bits for the rows a
day an entity sends.
"""

from __future__ import annotations

import numpy as np

#: Rows below the threshold that still belong to the open episode.
MERGE_GAP = 3


def runs(mask: np.ndarray) -> np.ndarray:
    """Contiguous runs of true rows as an ``(n, 2)`` array of half-open bounds.

    >>> runs(np.array([0, 1, 1, 0, 1])).tolist()
    [[1, 3], [4, 5]]
    """
    padded = np.concatenate(([0], (np.asarray(mask) != 0).astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return edges.reshape(-1, 2)


def episodes(alarm: np.ndarray, merge_gap: int = MERGE_GAP) -> np.ndarray:
    """Alarm episodes of a boolean row vector, gaps of at most ``merge_gap`` rows merged.

    >>> episodes(np.array([1, 0, 1, 0, 0, 0, 0, 1], dtype=bool), merge_gap=1).tolist()
    [[0, 3], [7, 8]]
    """
    r = runs(alarm)
    if len(r) <= 1:
        return r
    gap = r[1:, 0] - r[:-1, 1]
    first = np.flatnonzero(np.concatenate(([True], gap > merge_gap)))
    last = np.concatenate((first[1:] - 1, [len(r) - 1]))
    return np.stack([r[first, 0], r[last, 1]], axis=1)
