"""The audit log's writer: records queued by any thread, written in batches by one.

Writes never block the stream loop: :class:`AuditLog` queues records (a cheap
``queue.put``; JSON is encoded on the writer thread) and one writer thread inserts them
into an :class:`~pipelines.records.audit_store.AuditStore` in batches, one transaction
each, retrying a failing store rather than dropping. :meth:`AuditLog.close` writes
everything still queued before it returns; ``record(..., wait=True)`` returns only once
the record is committed. :func:`model_changed` is the one call for whoever changes the
risk model.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pipelines.records.audit_store import KINDS, AuditStore, Record, safe_url
from predictor.errors import EdgeError

__all__ = ["AuditLog", "model_changed"]

# The name the audit trail has always logged under (log filters and alerts select it).
logger = logging.getLogger("pipelines.records.audit")

_STOP = object()


class AuditLog:
    """Queues records and writes them in batches on one thread; never loses a queued one
    on :meth:`close`.

    Parameters
    ----------
    store
        Where records go.
    batch
        Records per transaction, at most.
    max_queue
        Records waiting, at most; beyond it ``record`` waits for the writer (back-pressure
        rather than loss).
    clock
        Wall-clock seconds (tests pass a fake one).
    """

    def __init__(
        self,
        store: AuditStore,
        batch: int = 1000,
        max_queue: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.batch = batch
        self._clock = clock
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self.written = 0
        self.failed_batches = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    # -- producers (any thread) --------------------------------------------------------
    def record(
        self,
        kind: str,
        actor: str,
        *,
        system: str | None = None,
        subject: str | None = None,
        payload: Any = None,
        wait: bool = False,
    ) -> None:
        """Queue one record; with ``wait``, return once it is committed."""
        if kind not in KINDS:
            raise ValueError(f"audit kind must be one of {KINDS}: {kind!r}")
        rec = Record(int(self._clock() * 1000), kind, actor, system, subject, payload)
        if not wait:
            self._put(rec)
            return
        done = threading.Event()
        self._put((rec, done))
        if not done.wait(30.0):
            raise EdgeError("audit store: a record was not committed within 30 s")

    def recommendations(self, recs: Iterable[Mapping[str, Any]], actor: str = "stream") -> None:
        """Queue one ``recommendation`` record per recommendations.v1 record."""
        at = int(self._clock() * 1000)
        for r in recs:
            self._put(Record(at, "recommendation", actor, r["system"], r["recommendation_id"], r))

    def delivery(
        self, subject: str, system: str, epoch: int, attempt: int, outcome: str, detail: str
    ) -> None:
        """Queue one ``delivery`` record: an attempt to push ``subject`` and its outcome
        (``delivered``, ``duplicates``, ``rejected_stale``, ``rejected``, ``retry``)."""
        self._put(
            Record(
                int(self._clock() * 1000),
                "delivery",
                "delivery",
                system,
                subject,
                {"outcome": outcome, "attempt": attempt, "epoch": epoch, "detail": detail[:300]},
            )
        )

    def _put(self, item: Any) -> None:
        if self._closed:
            raise EdgeError("audit log is closed")
        self._queue.put(item)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Return once everything queued so far is committed."""
        done = threading.Event()
        self._put((None, done))
        if not done.wait(timeout_s):
            raise EdgeError(f"audit store: queued records not committed within {timeout_s} s")

    def close(self, timeout_s: float = 60.0) -> None:
        """Write everything still queued, then stop the writer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.error("audit writer still busy after %.0f s at close", timeout_s)
        self.store.close()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # -- the writer thread -------------------------------------------------------------
    def _run(self) -> None:
        stop = False
        while not stop:
            items = [self._queue.get()]
            while len(items) < self.batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            recs: list[Record] = []
            events: list[threading.Event] = []
            for item in items:
                if item is _STOP:
                    stop = True
                elif isinstance(item, tuple):
                    rec, done = item
                    if rec is not None:
                        recs.append(rec)
                    events.append(done)
                else:
                    recs.append(item)
            if stop:  # drain what came after the stop marker too
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(item, tuple):
                        if item[0] is not None:
                            recs.append(item[0])
                        events.append(item[1])
                    elif item is not _STOP:
                        recs.append(item)
            self._write(recs)
            for ev in events:
                ev.set()

    def _write(self, recs: list[Record]) -> None:
        """Insert, retrying a failing store (a database restart) rather than dropping."""
        delay = 0.1
        while recs:
            try:
                self.written += self.store.append(recs)
                return
            except Exception:
                self.failed_batches += 1
                logger.exception(
                    "audit store %s: writing %d records failed; retrying in %.1f s",
                    safe_url(self.store.url),
                    len(recs),
                    delay,
                )
                if self._closed and delay > 5.0:
                    logger.error("audit: giving up on %d records at shutdown", len(recs))
                    return
                time.sleep(delay)
                delay = min(delay * 2, 10.0)


def model_changed(
    log: AuditLog | None,
    actor: str,
    new_version: str | None,
    old_version: str | None = None,
    reason: str = "",
    **details: Any,
) -> None:
    """Audit a model change (loaded, promoted, hot-swapped, rolled back).

    Anyone who changes the risk model calls it: ``subject`` is the new version, the
    payload has ``from``, ``to``, ``reason`` and any ``details`` (metrics, the MLflow
    run id). A None ``log`` does nothing, so callers need no audit of their own.
    """
    if log is None:
        return
    log.record(
        "model_change",
        actor,
        subject=new_version,
        payload={"from": old_version, "to": new_version, "reason": reason, **details},
    )
