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

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine as SqlEngine

from predictor.errors import ConfigError, EdgeError, ValidationError

logger = logging.getLogger(__name__)

#: The kinds of record, in the order of the flow.
KINDS = ("recommendation", "delivery", "approval", "model_change")

_META = sa.MetaData()
#: The table. ``id`` is an autoincrementing 64-bit integer (a plain INTEGER on SQLite,
#: where only that autoincrements).
AUDIT = sa.Table(
    "audit_log",
    _META,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("system", sa.String(200), nullable=True),
    sa.Column("subject", sa.String(200), nullable=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Index("audit_kind_id", "kind", "id"),
    sa.Index("audit_system_id", "system", "id"),
    sa.Index("audit_at", "at_ms"),
)

_SQLITE_APPEND_ONLY = (
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
)

#: PostgreSQL (14 or later): the same refusal, by a trigger function.
_POSTGRES_APPEND_ONLY = (
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
    "CREATE OR REPLACE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
)
_APPEND_ONLY = {"sqlite": _SQLITE_APPEND_ONLY, "postgresql": _POSTGRES_APPEND_ONLY}


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path}"


def audit_url(state_dir: Path, url: str | None = None) -> str:
    """``url`` when given (``PRECOVERY_AUDIT_URL``), else ``<state_dir>/audit.sqlite``."""
    return url or sqlite_url(state_dir / "audit.sqlite")


def iso_ms(at_ms: int) -> str:
    """RFC 3339 UTC with milliseconds.

    >>> iso_ms(1767614400123)
    '2026-01-05T12:00:00.123Z'
    """
    dt = datetime.fromtimestamp(at_ms / 1000.0, UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str, field: str) -> int:
    """Epoch milliseconds of an RFC 3339 time (a date alone is its midnight UTC).

    >>> parse_time("2026-01-05T12:00:00Z", "since")
    1767614400000
    >>> parse_time("yesterday", "--since")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    predictor.errors.ValidationError: bad_time: --since: 'yesterday' is not an RFC 3339 time (...)
    """
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            "bad_time",
            f"{field}: {text[:60]!r} is not an RFC 3339 time (e.g. 2026-01-05T12:00:00Z)",
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Record:
    """One audit record before it is written (the payload still a Python value)."""

    at_ms: int
    kind: str
    actor: str
    system: str | None
    subject: str | None
    payload: Any


class AuditStore:
    """The table behind an SQLAlchemy engine: append and query, nothing else.

    Parameters
    ----------
    url
        Any SQLAlchemy URL; the table (and, on SQLite, the append-only triggers) is
        created when missing.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine: SqlEngine = sa.create_engine(url)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
            raise ConfigError(f"audit store URL {_safe(url)} cannot be used: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            _META.create_all(self.engine)
            with self.engine.begin() as conn:
                for ddl in _APPEND_ONLY.get(self.engine.dialect.name, ()):
                    conn.exec_driver_sql(ddl)
        except sa.exc.SQLAlchemyError as exc:
            raise EdgeError(f"audit store {_safe(url)}: {exc}") from exc

    def append(self, records: Iterable[Record]) -> int:
        """Insert records in one transaction, in order; returns how many."""
        rows = [
            {
                "at_ms": r.at_ms,
                "kind": r.kind,
                "actor": r.actor[:200],
                "system": r.system,
                "subject": r.subject,
                "payload": orjson.dumps(r.payload, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            }
            for r in records
        ]
        if not rows:
            return 0
        with self.engine.begin() as conn:
            conn.execute(AUDIT.insert(), rows)
        return len(rows)

    def query(
        self,
        kind: str | None = None,
        system: str | None = None,
        subject: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        after_id: int = 0,
        limit: int | None = 1000,
    ) -> list[dict[str, Any]]:
        """Records oldest first (by ``id``), after ``after_id``, filtered; ``until`` is
        exclusive and ``since`` inclusive."""
        return list(self.iter(kind, system, subject, since_ms, until_ms, after_id, limit))

    def iter(
        self,
        kind: str | None = None,
        system: str | None = None,
        subject: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        after_id: int = 0,
        limit: int | None = None,
        page: int = 5000,
    ) -> Iterator[dict[str, Any]]:
        """Like :meth:`query`, streamed page by page (an export of millions of rows
        holds one page in memory)."""
        conds = _conds(kind, system, subject, since_ms, until_ms)
        left = limit
        last = after_id
        while left is None or left > 0:
            n = page if left is None else min(page, left)
            stmt = sa.select(AUDIT).where(AUDIT.c.id > last, *conds).order_by(AUDIT.c.id).limit(n)
            with self.engine.connect() as conn:
                rows = conn.execute(stmt).mappings().all()
            for row in rows:
                yield _out(row)
            if len(rows) < n:
                return
            last = int(rows[-1]["id"])
            if left is not None:
                left -= len(rows)

    def count(
        self,
        kind: str | None = None,
        system: str | None = None,
        subject: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> int:
        """How many records match (the same filters as :meth:`query`)."""
        stmt = sa.select(sa.func.count()).select_from(AUDIT)
        stmt = stmt.where(*_conds(kind, system, subject, since_ms, until_ms))
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def close(self) -> None:
        self.engine.dispose()


def _conds(
    kind: str | None,
    system: str | None,
    subject: str | None,
    since_ms: int | None,
    until_ms: int | None,
) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = []
    if kind is not None:
        conds.append(AUDIT.c.kind == kind)
    if system is not None:
        conds.append(AUDIT.c.system == system)
    if subject is not None:
        conds.append(AUDIT.c.subject == subject)
    if since_ms is not None:
        conds.append(AUDIT.c.at_ms >= since_ms)
    if until_ms is not None:
        conds.append(AUDIT.c.at_ms < until_ms)
    return conds


def _out(row: sa.RowMapping) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "at": iso_ms(int(row["at_ms"])),
        "kind": row["kind"],
        "actor": row["actor"],
        "system": row["system"],
        "subject": row["subject"],
        "payload": orjson.loads(row["payload"]),
    }


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _safe(url: str) -> str:
    """The URL without its password (never in a message or a log)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"


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
                    _safe(self.store.url),
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
