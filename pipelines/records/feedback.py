"""SREs' verdicts on recommendations, stored durably (SQLite) as future training labels.

``POST /v1/feedback`` (role ``operate``) writes one row per verdict: ``acknowledged``
(seen, acting on it), ``false_alarm`` (nothing was wrong), ``confirmed`` (a real
problem) or ``missed`` (an incident Precovery did not foresee; ``ts`` is when it
started). Rows are never updated: the latest verdict per recommendation wins when labels
are made (:meth:`FeedbackStore.export_labels`, read by ``precovery train --feedback``),
and the history stays for audit. The file lives under the state dir
(``<state_dir>/feedback.sqlite`` by default), in WAL mode so readers never block the
writer.

>>> import tempfile, pathlib
>>> store = FeedbackStore(pathlib.Path(tempfile.mkdtemp()) / "fb.sqlite")
>>> row = store.add("r1", "pay", "gw", "false_alarm", "", "ops-key", "2026-01-01T00:00:00Z")
>>> [(r["recommendation_id"], r["verdict"]) for r in store.list()]
[('r1', 'false_alarm')]
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

VERDICTS = ("acknowledged", "false_alarm", "confirmed", "missed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    recommendation_id TEXT NOT NULL,
    system TEXT NOT NULL,
    component TEXT,
    verdict TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    key_id TEXT
);
CREATE INDEX IF NOT EXISTS feedback_rec ON feedback (recommendation_id);
"""
_COLS = ("id", "at", "recommendation_id", "system", "component", "verdict", "note", "key_id", "ts")
#: Columns of the exported labels (``precovery feedback-export``).
LABEL_COLUMNS = ("system", "component", "verdict", "ts", "recommendation_id", "note")


class FeedbackStore:
    """Append-only verdicts in one SQLite file (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(feedback)")}
        if "ts" not in cols:  # stores written before verdicts carried an event time
            self._db.execute("ALTER TABLE feedback ADD COLUMN ts TEXT")

    def add(
        self,
        recommendation_id: str,
        system: str,
        component: str | None,
        verdict: str,
        note: str = "",
        key_id: str | None = None,
        at: str | None = None,
        ts: str | None = None,
    ) -> dict[str, Any]:
        """Store one verdict; returns the stored row. ``ts``: the event time it is about
        (a missed incident's start); None: the time it is stored."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}: {verdict!r}")
        when = at or datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO feedback (at, recommendation_id, system, component, verdict, note,"
                " key_id, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (when, recommendation_id, system, component, verdict, note, key_id, ts),
            )
            row_id = cur.lastrowid
        return dict(
            zip(
                _COLS,
                (row_id, when, recommendation_id, system, component, verdict, note, key_id, ts),
                strict=True,
            )
        )

    def list(
        self, system: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Verdicts oldest first (the latest ``limit`` when ``after_id`` is 0)."""
        where, args = "WHERE id > ?", [after_id]
        if system is not None:
            where += " AND system = ?"
            args.append(system)  # type: ignore[arg-type]
        order = "ASC" if after_id else "DESC"
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLS)} FROM feedback {where} ORDER BY id {order} LIMIT ?",
                (*args, limit),
            ).fetchall()
        out = [dict(zip(_COLS, r, strict=True)) for r in rows]
        return out if after_id else out[::-1]

    def export_labels(self, path: Path) -> int:
        """Write the labels ``precovery train --feedback`` reads (CSV, ``LABEL_COLUMNS``):
        the latest verdict per recommendation (every ``missed`` row counts), ``ts`` the
        verdict's event time or, without one, when it was stored. Returns the row count."""
        import csv

        with self._lock:
            rows = self._db.execute(
                "SELECT system, component, verdict, COALESCE(ts, at), recommendation_id, note "
                "FROM feedback f WHERE verdict = 'missed' OR id = (SELECT MAX(id) FROM feedback "
                "g WHERE g.recommendation_id = f.recommendation_id) ORDER BY id"
            ).fetchall()
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(LABEL_COLUMNS)
            w.writerows(rows)
        return len(rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
