"""Recommendations pushed to an orchestrator: durable, ordered per system, fenced, retried.

Every recommendation goes into a durable :class:`Outbox` (SQLite, WAL) before anything is
sent, keyed by its deterministic id (a replay adds nothing new). A :class:`Pusher` POSTs
the head of each system's queue to the orchestrator's URL as JSON with:

- ``Idempotency-Key``: the recommendation id (a retry is recognisable as one);
- ``X-Precovery-Epoch``: the fencing epoch (the orchestrator refuses a lower one);
- ``X-Precovery-Signature: sha256=<hex>``: HMAC-SHA256 of the body with a shared secret,
  when one is configured.

Outcomes: 2xx is delivered (a ``{"status": "duplicate"}`` answer too: the orchestrator had
it); 409 means a newer epoch was seen, so this one is stale and dropped (never retried);
another 4xx is a permanent refusal (dropped, logged); a timeout, connection error or 5xx
is retried with exponential backoff and full jitter. Delivery is strictly in order per
system: a system's next recommendation waits until the one before it is settled. After
``breaker_failures`` consecutive failures the circuit opens for ``breaker_cooldown_s``
(no request at all), then one request probes it.

Nothing is lost while the orchestrator is down or Precovery restarts: the outbox is on
disk and delivery resumes from it (tested with the orchestrator down, then back, and with
a kill -9 of the delivering process).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rec_id TEXT NOT NULL UNIQUE,
    system TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at REAL NOT NULL,
    settled_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, system, seq);
"""


@dataclass(frozen=True, slots=True)
class Item:
    """One recommendation waiting in the outbox."""

    seq: int
    rec_id: str
    system: str
    epoch: int
    body: bytes
    attempts: int


class Outbox:
    """The durable queue of recommendations to deliver (one SQLite file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def add(self, recs: Iterable[Mapping[str, Any]], now: float | None = None) -> int:
        """Queue recommendations (an id already queued is ignored); returns how many new."""
        t = time.time() if now is None else now
        rows = [(record_id(r), r["system"], int(r["epoch"]), orjson.dumps(r), t) for r in recs]
        if not rows:
            return 0
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO outbox (rec_id, system, epoch, body, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            self._db.execute("COMMIT")
            return self._db.total_changes - before

    def max_epochs(self) -> dict[str, int]:
        """The highest epoch queued per system (a restarted producer continues above it)."""
        with self._lock:
            rows = self._db.execute("SELECT system, MAX(epoch) FROM outbox GROUP BY system")
            return {str(system): int(epoch) for system, epoch in rows.fetchall()}

    def due(self, now: float, limit: int = 100) -> list[Item]:
        """The head of each system's queue, if its retry time has come."""
        with self._lock:
            cur = self._db.execute(
                "SELECT o.seq, o.rec_id, o.system, o.epoch, o.body, o.attempts FROM outbox o "
                "JOIN (SELECT system, MIN(seq) AS head FROM outbox WHERE state = 'pending' "
                "GROUP BY system) h ON o.seq = h.head WHERE o.next_at <= ? ORDER BY o.seq "
                "LIMIT ?",
                (now, limit),
            )
            return [Item(*row) for row in cur.fetchall()]

    def next_due_at(self) -> float | None:
        """When the earliest pending head becomes due (None: nothing pending)."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(o.next_at) FROM outbox o JOIN (SELECT system, MIN(seq) AS head "
                "FROM outbox WHERE state = 'pending' GROUP BY system) h ON o.seq = h.head"
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def settle(self, seq: int, state: str, error: str | None = None) -> None:
        """Mark an item ``delivered`` or ``rejected`` (it leaves the queue)."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET state = ?, last_error = ?, settled_at = ?, "
                "attempts = attempts + 1 WHERE seq = ?",
                (state, error, time.time(), seq),
            )

    def retry_later(self, seq: int, at: float, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? "
                "WHERE seq = ?",
                (at, error[:300], seq),
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")
            return {str(state): int(n) for state, n in rows.fetchall()}

    def pending(self) -> int:
        return self.counts().get("pending", 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """Settings of the push to the orchestrator.

    Attributes
    ----------
    url
        Where recommendations are POSTed (the orchestrator's ``/v1/recommendations``).
    secret
        Shared secret of the HMAC-SHA256 body signature (None: unsigned).
    timeout_s
        Per request, seconds.
    backoff_base_s, backoff_max_s
        Retry n waits a uniform random time in ``[0, min(max, base · 2^n)]`` (full jitter).
    breaker_failures, breaker_cooldown_s
        Consecutive failures that open the circuit, and how long it stays open.
    """

    url: str
    secret: str | None = None
    timeout_s: float = 5.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0


def record_id(rec: Mapping[str, Any]) -> str:
    """The outbox key and ``Idempotency-Key`` of a record: its ``decision_id`` for an
    approval decision (``kind: decision``, docs/audit.md), else its ``recommendation_id``."""
    return str(rec.get("decision_id") or rec.get("report_id") or rec["recommendation_id"])


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``body`` with ``secret``.

    >>> signature("s3cret", b"{}")
    'sha256=adbde1ce40c89c14215687d5d762a47df6dfaefcfad61e2e86718ffc8498571b'
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Pusher:
    """Delivers the outbox to the orchestrator: ordered per system, retried, fenced."""

    def __init__(
        self,
        outbox: Outbox,
        config: DeliveryConfig,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_attempt: Callable[[Item, str, str], None] | None = None,
    ) -> None:
        self.outbox = outbox
        #: Called after every attempt with the item, its outcome and the detail (the audit).
        self.on_attempt = on_attempt
        self.config = config
        self._http = httpx.Client(timeout=config.timeout_s, transport=transport)
        self._clock = clock
        self._rng = rng or random.Random()
        self.counts: Counter[str] = Counter()
        self._failures = 0
        self._open_until = 0.0

    def run_once(self) -> int:
        """Try every due head once; returns how many requests were made."""
        now = self._clock()
        if now < self._open_until:
            return 0
        items = self.outbox.due(now)
        if self._failures >= self.config.breaker_failures:
            items = items[:1]  # half-open: one probe
        sent = 0
        for item in items:
            sent += 1
            if not self._deliver(item):
                if self._failures >= self.config.breaker_failures:
                    self._open_until = self._clock() + self.config.breaker_cooldown_s
                    self.counts["breaker_opened"] += 1
                    logger.warning(
                        "orchestrator unreachable %d times in a row: circuit open for %.0f s",
                        self._failures,
                        self.config.breaker_cooldown_s,
                    )
                    break
        return sent

    def _deliver(self, item: Item) -> bool:
        self.counts["attempts"] += 1
        if item.attempts:
            self.counts["retries"] += 1
        outcome, detail = push_one(self._http, self.config, item.rec_id, item.epoch, item.body)
        if self.on_attempt is not None:
            try:
                self.on_attempt(item, outcome, detail)
            except Exception:  # the audit must not stop the item being settled
                logger.exception("delivery listener failed on %s", item.rec_id)
        if outcome == "retry":
            return self._failed(item, detail)
        self.counts[outcome] += 1
        self.outbox.settle(
            item.seq,
            "rejected" if outcome.startswith("rejected") else "delivered",
            None if outcome in ("delivered", "duplicates") else detail,
        )
        self._failures = 0
        return True

    def _failed(self, item: Item, error: str) -> bool:
        cfg = self.config
        self._failures += 1
        self.counts["failures"] += 1
        wait = backoff_s(cfg, item.attempts, self._rng)
        self.outbox.retry_later(item.seq, self._clock() + wait, error)
        logger.info("delivery of %s failed (%s): retry in %.1f s", item.rec_id, error, wait)
        return False

    def run(self, stop: threading.Event, idle_s: float = 0.2) -> None:
        """Deliver until ``stop``; sleeps until the next item is due (or ``idle_s``)."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # the pusher must not die of one bad round
                logger.exception("delivery round failed")
            nxt = self.outbox.next_due_at()
            wait = idle_s if nxt is None else min(idle_s, max(0.0, nxt - self._clock()))
            wait = max(wait, max(0.0, self._open_until - self._clock()) if self._open_until else 0)
            stop.wait(min(max(wait, 0.01), 5.0))

    def close(self) -> None:
        self._http.close()


def push_one(
    http: httpx.Client, cfg: DeliveryConfig, rec_id: str, epoch: int, body: bytes
) -> tuple[str, str]:
    """POST one recommendation; ``(outcome, detail)`` with outcome one of ``delivered``,
    ``duplicates`` (the orchestrator had it), ``rejected_stale`` (409: a newer epoch was
    seen), ``rejected`` (another 4xx: permanent) or ``retry`` (timeout, connection, 5xx,
    408, 429)."""
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": rec_id,
        "X-Precovery-Epoch": str(epoch),
    }
    if cfg.secret:
        headers["X-Precovery-Signature"] = signature(cfg.secret, body)
    try:
        resp = http.post(cfg.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return "retry", f"{type(exc).__name__}: {exc}"
    if resp.status_code < 300:
        return ("duplicates" if _status_of(resp) == "duplicate" else "delivered"), ""
    detail = f"{resp.status_code}: {resp.text[:200]}"
    if resp.status_code == 409:
        logger.warning("orchestrator refused %s as stale: %s", rec_id, detail)
        return "rejected_stale", detail
    if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
        logger.error("orchestrator refused %s: %s", rec_id, detail)
        return "rejected", detail
    return "retry", detail


def backoff_s(cfg: DeliveryConfig, attempts: int, rng: random.Random) -> float:
    """Full jitter: uniform in ``[0, min(max, base · 2^attempts)]``."""
    return rng.uniform(0.0, min(cfg.backoff_max_s, cfg.backoff_base_s * 2**attempts))


def _status_of(resp: httpx.Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get("status") if isinstance(body, dict) else None
