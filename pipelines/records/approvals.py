"""A person's approval or rejection of a failover that needs one (authority ``approve``).

A recommendation *awaits approval* when its ``authority`` is ``approve`` (the system's
declared authority, or ``auto`` with a limit exceeded; see the topology) and its action
is a failover (``failover_now``, ``failover_at_window``). ``prepare_standby`` warms the
standby without market impact and needs nobody's word; ``none`` and ``watch`` are not
actions to approve.

:meth:`Approvals.decide` (``POST /v1/recommendations/{id}/approve`` or ``/reject``, role
``operate``):

1. 404 (:class:`~predictor.errors.UnknownEntityError`) for an id not in the live log;
2. the same decision again answers what it answered the first time (idempotent, even if
   the recommendation has been superseded since);
3. 409 (:class:`DecisionConflict`) when the recommendation does not await approval
   (``not_awaiting_approval``), was decided the other way (``already_decided``), or a
   newer recommendation for the same component has been issued (``superseded``: the
   person would be approving a picture that no longer holds);
4. otherwise the decision is audited (committed before the answer), an approved
   failover flips the system's active site through the live state, under its lock
   (``Engine.fail_over``: later recommendations refer to the new primary), and the
   decision is forwarded to the orchestrator channel as a record of ``kind: decision``
   (docs/audit.md) through ``forward`` (the demo's durable outbox).

Where the flip happens depends on where the engine lives:

- in the demo (one process) the engine is in ``live`` and is flipped there, under its
  lock;
- on a Kafka deployment the engines live in the stream workers, so ``precovery serve``
  passes ``fail_over``, which publishes a failover command (commands.v1,
  :mod:`pipelines.kafka.commands`); the worker that owns the system applies it between
  batches, and the site travels in that partition's checkpoints.

Either way the flip carries the approved recommendation's ``epoch``: the engine flips a
system's site once per epoch (:meth:`~predictor.engine.Engine.fail_over`), so a decision
taken twice (two API replicas, a command read again after a restart) flips it once.

Decisions are remembered in memory (bounded) and, durably, in the audit trail: a
decision asked again after a restart, or of another replica on the same audit database,
is found there and answered the same way.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pipelines.records.audit import AuditLog
from predictor.errors import PrecoveryError, UnknownEntityError

logger = logging.getLogger(__name__)

DECISIONS = ("approved", "rejected")
FAILOVERS = ("failover_now", "failover_at_window")


class DecisionConflict(PrecoveryError):
    """A decision that cannot be taken (HTTP 409); ``reason`` is machine-friendly and
    ``decision`` the one already taken, if any."""

    def __init__(self, reason: str, detail: str, decision: dict[str, Any] | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.decision = decision


def authority_of(rec: dict[str, Any]) -> str:
    """The recommendation's authority mode (``auto`` or ``approve``; the field may be the
    mode itself or an object with a ``mode``). Absent means ``auto``: a recommendation
    that names no authority is the orchestrator's to act on, as before authority existed.

    >>> authority_of({"authority": "approve"}), authority_of({"authority": {"mode": "auto"}})
    ('approve', 'auto')
    """
    auth = rec.get("authority")
    if isinstance(auth, dict):
        auth = auth.get("mode")
    return str(auth) if auth else "auto"


def awaits_approval(rec: dict[str, Any]) -> bool:
    """Whether a person must approve ``rec`` before the orchestrator acts on it."""
    return authority_of(rec) == "approve" and rec.get("action") in FAILOVERS


class Approvals:
    """Decisions on recommendations of one live state.

    Parameters
    ----------
    live
        The log of recommendations (``recommendations(system, limit=...)``, oldest
        first): the demo's live state (with its engine and lock), or the Kafka backend
        of ``precovery serve``.
    audit
        Where decisions are recorded (None: not audited; tests of other things).
    forward
        Called with ``[decision record]`` to send it to the orchestrator channel (the
        outbox's ``add``); None: not forwarded (said in the answer).
    fail_over
        Called with an approved recommendation, who approved it and when (ISO 8601);
        carries the failover out and returns the system's new active site. None: the
        engine in ``live`` is flipped (the demo).
    keep
        Decisions remembered for idempotent answers, at most.
    """

    def __init__(
        self,
        live: Any,
        audit: AuditLog | None = None,
        forward: Callable[[list[dict[str, Any]]], object] | None = None,
        keep: int = 10_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        fail_over: Callable[[dict[str, Any], str, str], str] | None = None,
    ) -> None:
        self.live = live
        self.audit = audit
        self.forward = forward
        self.fail_over = fail_over
        self.keep = keep
        self._clock = clock
        self._lock = threading.Lock()
        self._decided: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def find(self, rec_id: str) -> dict[str, Any]:
        """The recommendation of an id in the live log; 404 when it is not there."""
        for row in reversed(self.live.recommendations(limit=1_000_000)):
            if row.get("recommendation_id") == rec_id and not row.get("kind"):
                return dict(row)
        raise UnknownEntityError(
            f"no recommendation {rec_id!r} in this process's log (unknown, or older than "
            "the kept log)"
        )

    def _newer(self, rec: dict[str, Any]) -> list[dict[str, Any]]:
        """Recommendations for ``rec``'s component issued after it (a system's records are
        in order in both logs: one sequence, or one partition)."""
        rows = self.live.recommendations(rec["system"], limit=1_000_000)
        ids = [r.get("recommendation_id") for r in rows]
        at = len(ids) - 1 - ids[::-1].index(rec["recommendation_id"])
        comp = rec["component"]
        return [r for r in rows[at + 1 :] if r.get("component") == comp and not r.get("kind")]

    def _recorded(self, rec_id: str) -> dict[str, Any] | None:
        """A decision on ``rec_id`` already in the audit trail (durable; shared by the
        replicas of one audit database), else None."""
        if self.audit is None:
            return None
        for row in self.audit.store.query(kind="approval", subject=rec_id, limit=10):
            payload = row.get("payload")
            if isinstance(payload, dict) and payload.get("decision") in DECISIONS:
                return payload
        return None

    def decide(self, rec_id: str, decision: str, reason: str, actor: str) -> dict[str, Any]:
        """Take ``decision`` (``approved`` or ``rejected``) on ``rec_id``; see the module
        docstring for the answers."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}: {decision!r}")
        with self._lock:  # one decision at a time: no two people flip a site twice
            rec = self.find(rec_id)
            done = self._decided.get(rec_id) or self._recorded(rec_id)
            if done is not None:
                if done["decision"] == decision:
                    return done
                raise DecisionConflict(
                    "already_decided",
                    f"{rec_id} was {done['decision']} by {done['decided_by']} at "
                    f"{done['decided_at']}",
                    done,
                )
            if not awaits_approval(rec):
                raise DecisionConflict(
                    "not_awaiting_approval",
                    f"{rec_id} is {rec['action']} with authority {authority_of(rec)}: only a "
                    f"failover with authority approve waits for a person",
                )
            newer = self._newer(rec)
            if newer:
                raise DecisionConflict(
                    "superseded",
                    f"{rec_id} was superseded by {newer[-1]['recommendation_id']} "
                    f"({newer[-1]['action']}, epoch {newer[-1]['epoch']}) for "
                    f"{rec['system']}/{rec['component']}",
                )
            return self._take(rec, decision, reason, actor)

    def _take(self, rec: dict[str, Any], decision: str, reason: str, actor: str) -> dict[str, Any]:
        system = rec["system"]
        previous = _site_of(rec)
        site = previous
        decided_at = self._clock().isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if decision == "approved":
            site = self._fail_over(rec, actor, decided_at)
        out: dict[str, Any] = {
            "kind": "decision",
            "decision_id": f"{rec['recommendation_id']}.{decision}",
            "recommendation_id": rec["recommendation_id"],
            "epoch": rec["epoch"],
            "system": system,
            "component": rec["component"],
            "action": rec["action"],
            "not_before": rec.get("not_before"),
            "decision": decision,
            "reason": reason,
            "decided_by": actor,
            "decided_at": decided_at,
            "previous_site": previous,
            "active_site": site,
            "forwarded": self.forward is not None,
        }
        if self.audit is not None:
            self.audit.record(
                "approval",
                actor,
                system=system,
                subject=rec["recommendation_id"],
                payload=out,
                wait=True,
            )
        if self.forward is not None:
            self.forward([out])
        self._decided[rec["recommendation_id"]] = out
        while len(self._decided) > self.keep:
            self._decided.popitem(last=False)
        logger.info(
            "%s %s (%s of %s/%s) by %s: %s; active site %s",
            rec["recommendation_id"],
            decision,
            rec["action"],
            system,
            rec["component"],
            actor,
            reason,
            site,
        )
        return out

    def _fail_over(self, rec: dict[str, Any], actor: str, decided_at: str) -> str:
        """Carry the failover out: ``fail_over`` when given, else flip the engine in the
        live state under its lock (views re-render)."""
        if self.fail_over is not None:
            return self.fail_over(rec, actor, decided_at)
        live = self.live
        with live.lock:
            site = live.engine.fail_over(rec["system"], epoch=int(rec["epoch"]))
            live.batches += 1  # the cached views are of the state before the flip
        return str(site)


def _site_of(rec: dict[str, Any]) -> str | None:
    site = rec.get("active_site", rec.get("site"))
    return None if site is None else str(site)
