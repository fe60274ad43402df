"""Exact per-entity order inside a vectorised micro-batch.

A micro-batch may hold several events of the same entity. Stateful numpy updates with
fancy indexing are only correct when each entity appears at most once per update, so
the batch is split into *rounds*: round ``r`` holds the ``r``-th event of every entity
that has one. Within a round entities are unique, across rounds each entity's events
keep their order. With uniform entity ids most batches need one to three rounds.

>>> [r.tolist() for r in rounds(np.array([4, 7, 4, 4, 9]))]
[[0, 1, 4], [2], [3]]
"""

from __future__ import annotations

import numpy as np


def rounds(slots: np.ndarray) -> list[np.ndarray]:
    """Split row indices into rounds with unique ``slots`` each, preserving order."""
    n = len(slots)
    if n == 0:
        return []
    order = np.argsort(slots, kind="stable")
    s = slots[order]
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    np.not_equal(s[1:], s[:-1], out=new_group[1:])
    starts = np.flatnonzero(new_group)
    if len(starts) == n:  # every entity once: a single round, the common case
        return [np.arange(n)]
    group_start = np.repeat(starts, np.diff(np.append(starts, n)))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    by_rank = np.argsort(rank, kind="stable")
    counts = np.bincount(rank)
    return np.split(by_rank, np.cumsum(counts)[:-1])
