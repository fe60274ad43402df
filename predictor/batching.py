"""Exact per-entity order inside a vectorised micro-batch.

A micro-batch may hold several events of the same entity. Stateful numpy updates with
fancy indexing are only correct when each entity appears at most once per update, so
the batch is split into *rounds*: round ``r`` holds the ``r``-th event of every entity
that has one. Within a round entities are unique, across rounds each entity's events
keep their order. With uniform entity ids most batches need one to three rounds.

>>> [r.tolist() for r in rounds(np.array([4, 7, 4, 4, 9]))]
[[0, 1, 4], [2], [3]]

A micro-batch is also cut at event-time ticks (:func:`tick_cuts`): the engine ingests
the rows before a tick boundary, decides at the boundary, then goes on.

>>> cuts = tick_cuts(np.array([5_000, 9_000, 12_000, 31_000]), 0, 10_000, 15_000)
>>> cuts.bounds, cuts.tick.tolist(), cuts.gaps.tolist()
([0, 2, 3, 4], [0, 0, 1, 3], [3])
"""

from __future__ import annotations

from dataclasses import dataclass

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


def last_per_key(keys: np.ndarray) -> np.ndarray:
    """Index of the last occurrence of each distinct key (in key order).

    >>> last_per_key(np.array([4, 7, 4, 9])).tolist()
    [2, 1, 3]
    """
    rev = keys[::-1]
    _, first_in_rev = np.unique(rev, return_index=True)
    return len(keys) - 1 - first_in_rev


@dataclass(frozen=True, slots=True)
class TickCuts:
    """A micro-batch cut where its watermark crosses a tick boundary."""

    #: The watermark before the batch (event ms).
    start_ms: int
    #: The watermark after each row (event ms).
    running: np.ndarray
    #: The tick each row's watermark is in.
    tick: np.ndarray
    #: Segments: rows ``bounds[j]:bounds[j + 1]``, each inside one tick.
    bounds: list[int]
    #: Rows where the whole feed resumes after a silence longer than the gap limit.
    gaps: np.ndarray

    def resumed_at(self, upto: int) -> int | None:
        """When the feed last resumed at or before row ``upto`` (None: not in this batch)."""
        k = int(np.searchsorted(self.gaps, upto, side="right"))
        return int(self.running[self.gaps[k - 1]]) if k else None


def tick_cuts(
    ts: np.ndarray, watermark_ms: int | None, tick_ms: int, gap_ms: int, decide: bool = True
) -> TickCuts:
    """Cut rows at event times ``ts`` (ms) at every ``tick_ms`` boundary their watermark
    crosses (``decide=False``: one segment); a watermark jump over ``gap_ms`` is a gap
    (none on the first batch, ``watermark_ms`` None)."""
    m = len(ts)
    wm0 = watermark_ms if watermark_ms is not None else (int(ts[0]) if m else 0)
    running = np.maximum.accumulate(np.maximum(ts, wm0)) if m else ts
    tick = running // tick_ms
    cuts = np.flatnonzero(np.diff(np.concatenate([[wm0 // tick_ms], tick])) > 0)
    bounds = [0, *cuts.tolist(), m] if decide else [0, m]
    gaps = (
        np.flatnonzero(np.diff(np.concatenate([[wm0], running])) > gap_ms)
        if m and watermark_ms is not None
        else np.zeros(0, dtype=np.int64)
    )
    return TickCuts(wm0, running, tick, bounds, gaps)
