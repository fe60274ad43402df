"""The audit trail: what Precovery recommended, delivered, was told and changed, durably.

Every record is one row of an append-only table (``audit_log``) with

- ``id``: grows with every record (the order records were written; the API's cursor);
- ``at``: when Precovery recorded it, wall clock, UTC (milliseconds);
- ``kind``: ``recommendation``, ``delivery``, ``approval``, ``model_change``
  (:data:`KINDS`);
- ``actor``: who did it: ``stream`` (the engine), ``delivery`` (the pusher), the API
  key's name and id for a person's approval, whoever calls :func:`model_changed`;
- ``system`` and ``subject``: the system, and what the record is about (a
  recommendation id, a decision id, a model version);
- ``payload``: JSON. A recommendation's payload is the recommendations.v1 record itself,
  which carries the exposure (``exposure_usd``) and market snapshot (``market``) and
  every dollar term it was decided on; a delivery's is the outcome, the attempt number
  and the orchestrator's answer; an approval's the decision, reason and active site.

Where: any SQLAlchemy URL (``PRECOVERY_AUDIT_URL``, e.g.
``postgresql+psycopg://precovery@db/precovery``); by default a SQLite file in the state
dir, ``<state_dir>/audit.sqlite`` (WAL, ``synchronous=FULL``). On SQLite and
PostgreSQL, triggers refuse any ``UPDATE`` or ``DELETE`` of the table (append-only is
enforced by the database, not only by this module, which has no verb for either);
elsewhere grant the service ``INSERT`` and ``SELECT`` only (docs/audit.md).

One module per concept; this one re-exports every name, so callers import from
``pipelines.records.audit`` whichever module holds the code:
:mod:`~pipelines.records.audit_store` (the table, :class:`AuditStore`, URLs and times)
and :mod:`~pipelines.records.audit_log` (:class:`AuditLog`, the queue and writer
thread, and :func:`model_changed`).

Writes never block the stream loop: :class:`AuditLog` queues records (a cheap
``queue.put``; JSON is encoded on the writer thread) and one writer thread inserts them in
batches, one transaction each. :meth:`AuditLog.close` writes everything still queued
before it returns, so a clean shutdown loses nothing; ``record(..., wait=True)`` returns
only once the record is committed (approvals: a person is told "done" only when it is
on disk).

>>> import tempfile, pathlib
>>> store = AuditStore(sqlite_url(pathlib.Path(tempfile.mkdtemp()) / "audit.sqlite"))
>>> log = AuditLog(store)
>>> log.record("model_change", "ops", subject="risk-v2", payload={"from": "risk-v1"}, wait=True)
>>> [(r["kind"], r["actor"], r["subject"], r["payload"]) for r in store.query()]
[('model_change', 'ops', 'risk-v2', {'from': 'risk-v1'})]
>>> log.close()
"""

from __future__ import annotations

from pipelines.records.audit_log import AuditLog, model_changed
from pipelines.records.audit_store import (
    AUDIT,
    KINDS,
    AuditStore,
    Record,
    audit_url,
    iso_ms,
    parse_time,
    safe_url,
    sqlite_url,
)

__all__ = [
    "AUDIT",
    "KINDS",
    "AuditLog",
    "AuditStore",
    "Record",
    "audit_url",
    "iso_ms",
    "model_changed",
    "parse_time",
    "safe_url",
    "sqlite_url",
]
