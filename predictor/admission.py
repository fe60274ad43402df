"""Which events of a micro-batch are let in: time checks, vectorised, in input order.

- ``future_timestamp``: beyond the batch's median time by more than the skew (plus the
  batch's own spread below its median — one wide batch of history is fine), or beyond
  the watermark by more than the skew unless enough distinct entities of the batch are
  there too (a stream resuming after a gap moves as a whole; one bogus stamp does not);
- ``duplicate``: the same time as its entity's latest earlier event;
- ``out_of_order``: older than that by more than the tolerance.

"Earlier" spans the entity's state and the rows before it in the same batch.

:func:`admit` applies them all to a decoded batch, with ``entity_capacity`` for rows
over the engine's entity limit, and names every rejected row.
"""

from __future__ import annotations

import numpy as np

from predictor.events import Reject, TelemetryBatch

#: Reason per code returned by :func:`order_checks` (0: admitted).
ORDER_REASONS = ("", "future_timestamp", "duplicate", "out_of_order")
_NONE = np.iinfo(np.int64).min // 4


def batch_future_limit(ts: np.ndarray, skew_ms: int) -> int:
    """Latest believable time of a batch, from its own median and spread."""
    med = int(np.median(ts))
    spread = med - int(ts.min())
    return med + spread + skew_ms


def watermark_limit(
    watermark_ms: int,
    slots: np.ndarray,
    ts: np.ndarray,
    batch_limit: int,
    n_known: int,
    skew_ms: int,
) -> int:
    """Tighten the limit to the watermark unless the batch moves as a whole.

    Beyond ``watermark + skew`` an event is only believed when enough distinct entities
    of the batch are there too: three, or half of those known if fewer.
    """
    limit = watermark_ms + skew_ms
    beyond = ts > limit
    if not beyond.any():
        return batch_limit
    support = len(np.unique(slots[beyond]))
    needed = max(1, min(3, (n_known + 1) // 2))
    return batch_limit if support >= needed else min(batch_limit, limit)


def order_checks(
    slots: np.ndarray,
    ts: np.ndarray,
    ok: np.ndarray,
    future_limit: int,
    seen: np.ndarray,
    last_ts: np.ndarray,
    tolerance_ms: int,
) -> np.ndarray:
    """Per row: 0 admitted, else a code of :data:`ORDER_REASONS`.

    ``seen``/``last_ts`` are the entities' state (has it an event, and the time of its
    latest), indexed by slot; ``ok`` marks rows still in the running.
    """
    n = len(slots)
    reason = np.zeros(n, dtype=np.int8)
    if n == 0:
        return reason
    future = ok & (ts > future_limit)
    reason[future] = 1
    valid = ok & ~future
    state_prev = np.where(seen[slots], last_ts[slots], _NONE)
    order = np.lexsort((np.arange(n), slots))
    s_sorted = slots[order]
    first = np.ones(n, dtype=bool)
    first[1:] = s_sorted[1:] != s_sorted[:-1]
    gid = np.cumsum(first) - 1
    t0 = int(ts[valid].min()) - 1 if valid.any() else 0
    rel = np.where(valid[order], ts[order] - t0, 0)  # 0: "nothing", valid rows ≥ 1
    big = np.int64(1) << np.int64(41)
    running = np.maximum.accumulate(gid * big + rel) - gid * big
    prev_rel = np.empty(n, dtype=np.int64)
    prev_rel[0] = 0
    prev_rel[1:] = running[:-1]
    prev_rel[first] = 0
    prev_batch = np.where(prev_rel > 0, prev_rel + t0, _NONE)
    prev = np.empty(n, dtype=np.int64)
    prev[order] = prev_batch
    prev = np.maximum(prev, state_prev)
    has = valid & (prev > _NONE)
    reason[has & (ts == prev)] = 2
    reason[has & (ts < prev - tolerance_ms)] = 3
    return reason


def admit(
    batch: TelemetryBatch,
    slots: np.ndarray,
    ok: np.ndarray,
    watermark_ms: int | None,
    n_known: int,
    seen: np.ndarray,
    last_ts: np.ndarray,
    skew_ms: int,
    tolerance_ms: int,
) -> tuple[np.ndarray, list[Reject]]:
    """The rows of ``batch`` let in, and every row rejected (the decoder's first).

    ``slots`` are the rows' entity slots, ``ok`` False where there was no room for the
    entity; ``n_known``, ``seen`` and ``last_ts`` the entities' state after registering
    the batch's new ones (see :func:`watermark_limit` and :func:`order_checks`).
    """
    rejects = list(batch.rejects)
    ts = batch.ts_ms
    future_limit = batch_future_limit(ts, skew_ms) if len(batch) else 0
    if len(batch) and watermark_ms is not None:
        future_limit = watermark_limit(watermark_ms, slots, ts, future_limit, n_known, skew_ms)
    for i in np.flatnonzero(~ok).tolist():
        rejects.append(Reject(int(batch.index[i]), "entity_capacity", "/".join(batch.keys[i])))
    reason = order_checks(slots, ts, ok, future_limit, seen, last_ts, tolerance_ms)
    for i in np.flatnonzero(reason > 0).tolist():
        key = "/".join(batch.keys[i])
        why = ORDER_REASONS[int(reason[i])]
        rejects.append(Reject(int(batch.index[i]), why, f"{key} ts={int(ts[i])}"))
    return ok & (reason == 0), rejects
