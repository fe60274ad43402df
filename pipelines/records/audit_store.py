"""The audit table and its store: the schema, append and query, nothing else.

One row per record in an append-only table (``audit_log``, :data:`AUDIT`) behind any
SQLAlchemy URL; on SQLite and PostgreSQL, triggers created with the table refuse any
``UPDATE`` or ``DELETE``. :class:`AuditStore` appends batches in one transaction and
reads them back oldest first, filtered and paged; the times it takes and gives
(:func:`parse_time`, :func:`iso_ms`) are RFC 3339 UTC. The queue and writer thread in
front of it are :mod:`pipelines.records.audit_log`; the overview is
:mod:`pipelines.records.audit`.

>>> import tempfile, pathlib
>>> store = AuditStore(sqlite_url(pathlib.Path(tempfile.mkdtemp()) / "audit.sqlite"))
>>> store.append([Record(1767614400000, "approval", "ops", "eq-oms", "d-1", {"ok": 1})])
1
>>> [(r["at"], r["kind"], r["payload"]) for r in store.query(system="eq-oms")]
[('2026-01-05T12:00:00.000Z', 'approval', {'ok': 1})]
>>> store.close()
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine as SqlEngine

from predictor.errors import ConfigError, EdgeError, ValidationError

__all__ = [
    "AUDIT",
    "KINDS",
    "AuditStore",
    "Record",
    "audit_url",
    "iso_ms",
    "parse_time",
    "safe_url",
    "sqlite_url",
]

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
            raise ConfigError(f"audit store URL {safe_url(url)} cannot be used: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            _META.create_all(self.engine)
            with self.engine.begin() as conn:
                for ddl in _APPEND_ONLY.get(self.engine.dialect.name, ()):
                    conn.exec_driver_sql(ddl)
        except sa.exc.SQLAlchemyError as exc:
            raise EdgeError(f"audit store {safe_url(url)}: {exc}") from exc

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


def safe_url(url: str) -> str:
    """The URL without its password (never in a message or a log)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"
