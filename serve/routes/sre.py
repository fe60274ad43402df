"""What SREs read and do (tag ``sre``): open alerts, feedback on recommendations, the
audit trail, and approving or rejecting a failover that waits for a person.

Each store is optional: without one its routes answer 501 (feedback, audit, approvals)
or an empty list (alerts, ``source: none``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from pipelines.records.feedback import FeedbackStore
from serve.context import REQUEST_ID
from serve.gates import API_KEY
from serve.schemas import (
    Alerts,
    AuditKind,
    AuditPage,
    Decision,
    DecisionConflictBody,
    DecisionIn,
    ErrorBody,
    Feedback,
    FeedbackIn,
)


def add_routes(
    router: APIRouter,
    feedback: FeedbackStore | None = None,
    alerts: Any = None,
    audit: Any = None,
    approvals: Any = None,
) -> None:
    """The SRE routes over the stores :func:`serve.app.create_app` was given."""

    @router.get("/v1/alerts", response_model=Alerts, tags=["sre"])
    def open_alerts() -> dict[str, Any]:
        """The SRE alerts this process keeps firing in Alertmanager (docs/alerting.md)."""
        if alerts is None:
            return {"source": "none", "alerts": []}
        return {
            "source": "notifier",
            "alerts": [
                {"severity": a.severity, "labels": a.labels, "annotations": a.annotations}
                for a in alerts.firing()
            ],
        }

    @router.post(
        "/v1/feedback",
        response_model=Feedback,
        status_code=201,
        responses={
            422: {"model": ErrorBody},
            501: {"model": ErrorBody, "description": "No feedback store configured"},
        },
        tags=["sre"],
    )
    def add_feedback(body: FeedbackIn) -> dict[str, Any]:
        """Store an SRE's verdict on a recommendation (role ``operate``): acknowledged,
        false_alarm, confirmed or missed (with ``ts``, when the missed failure started). Stored
        durably; the verdicts become training labels."""
        store = _feedback_store()
        key = API_KEY.get()
        return store.add(
            body.recommendation_id,
            body.system,
            body.component,
            body.verdict,
            body.note,
            key.id if key is not None else None,
            ts=body.ts,
        )

    @router.get(
        "/v1/feedback",
        response_model=list[Feedback],
        responses={
            422: {"model": ErrorBody},
            501: {"model": ErrorBody, "description": "No feedback store configured"},
        },
        tags=["sre"],
    )
    def list_feedback(
        system: str | None = Query(None, max_length=128),
        after_id: int = Query(0, ge=0, le=2**62, description="Resume after this feedback id"),
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        """Stored verdicts, oldest first (the latest ``limit`` unless ``after_id``)."""
        return _feedback_store().list(system, after_id, limit)

    @router.get(
        "/v1/audit",
        response_model=AuditPage,
        responses={
            422: {"model": ErrorBody},
            501: {"model": ErrorBody, "description": "No audit store configured"},
        },
        tags=["sre"],
    )
    def audit_trail(
        kind: AuditKind | None = None,
        system: str | None = Query(None, max_length=200),
        subject: str | None = Query(
            None, max_length=200, description="A recommendation or decision id, a model version"
        ),
        since: str | None = Query(
            None, max_length=40, description="Recorded at or after, RFC 3339 (wall clock)"
        ),
        until: str | None = Query(None, max_length=40, description="Recorded before, RFC 3339"),
        cursor: str | None = Query(
            None,
            max_length=20,
            pattern=r"^[0-9]+$",
            description="next_cursor of the previous page (records after it)",
        ),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """The audit trail, oldest first: every recommendation (with the exposure and
        market behind it), delivery attempt and its outcome, approval or rejection, and
        model change (docs/audit.md). Page with ``cursor`` = the previous page's
        ``next_cursor``; ``precovery audit export`` writes it all to a file."""
        if audit is None:
            raise NotImplementedError("no audit store configured on this server")
        from pipelines.records.audit import parse_time

        rows = audit.query(
            kind=kind,
            system=system,
            subject=subject,
            since_ms=None if since is None else parse_time(since, "since"),
            until_ms=None if until is None else parse_time(until, "until"),
            # A cursor past the largest id SQLite holds (2**63 - 1) is past every record:
            # an empty page, not an OverflowError from the driver.
            after_id=min(int(cursor or 0), 2**63 - 1),
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return {"records": rows, "next_cursor": str(rows[-1]["id"]) if more else None}

    def _decide(rec_id: str, decision: str, body: DecisionIn) -> Any:
        if approvals is None:
            raise NotImplementedError("approvals are not configured on this server")
        from pipelines.records.approvals import DecisionConflict

        key = API_KEY.get()
        actor = f"{key.name} ({key.id})" if key is not None else "anonymous (open API)"
        try:
            return approvals.decide(rec_id, decision, body.reason, actor)
        except DecisionConflict as exc:
            return JSONResponse(
                {
                    "error": "conflict",
                    "reason": exc.reason,
                    "detail": exc.detail,
                    "decision": exc.decision,
                    "request_id": REQUEST_ID.get(),
                },
                status_code=409,
            )

    decide_responses: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorBody, "description": "No such recommendation in the kept log"},
        409: {
            "model": DecisionConflictBody,
            "description": "not_awaiting_approval, already_decided (the other way) or "
            "superseded (a newer recommendation for the component)",
        },
        422: {"model": ErrorBody},
        501: {"model": ErrorBody, "description": "No approvals configured on this server"},
    }

    @router.post(
        "/v1/recommendations/{recommendation_id}/approve",
        response_model=Decision,
        responses=decide_responses,
        tags=["sre"],
    )
    def approve(recommendation_id: str, body: DecisionIn) -> Any:
        """Approve a failover that waits for a person (``authority: approve``; role
        ``operate``). The system's active site flips at once (later recommendations
        name the new one), the decision is audited and sent to the orchestrator as a
        record of kind ``decision``. Approving twice answers the same."""
        return _decide(recommendation_id, "approved", body)

    @router.post(
        "/v1/recommendations/{recommendation_id}/reject",
        response_model=Decision,
        responses=decide_responses,
        tags=["sre"],
    )
    def reject(recommendation_id: str, body: DecisionIn) -> Any:
        """Reject a failover that waits for a person (role ``operate``): the site stays,
        the decision is audited and sent to the orchestrator. Rejecting twice answers the
        same."""
        return _decide(recommendation_id, "rejected", body)

    def _feedback_store() -> FeedbackStore:
        if feedback is None:
            raise NotImplementedError("no feedback store configured on this server")
        return feedback
