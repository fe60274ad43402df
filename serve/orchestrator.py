"""The reference orchestrator: the contract real orchestrators follow, runnable.

``precovery orchestrator --port P --log FILE`` serves ``POST /v1/recommendations``:

- the body is one recommendations.v1 record (JSON); ``Idempotency-Key`` must equal its
  ``recommendation_id`` and ``X-Precovery-Epoch`` its ``epoch`` (400 otherwise);
- with a shared secret, ``X-Precovery-Signature: sha256=<hex HMAC of the body>`` must
  match (401 otherwise);
- an id already accepted answers **200** ``{"status": "duplicate"}`` (idempotent: the
  sender stops retrying, nothing happens twice);
- an epoch not above the highest accepted for the system answers **409**
  ``{"error": "stale_epoch", "highest_epoch": N}`` (a stale writer is fenced off);
- otherwise **200** ``{"status": "accepted", "would": "..."}``: the record is appended to
  FILE as one JSON line (durable: state is rebuilt from it at start) and the action it
  would take is logged.

A person's decision on a recommendation that needed approval comes the same way, as a
record of ``"kind": "decision"`` (docs/audit.md): ``Idempotency-Key`` is its
``decision_id``, its ``epoch`` the recommendation's. It is a duplicate by ``decision_id``;
it is stale (409) only when a *newer* epoch was accepted for the system (the
recommendation it decides was superseded), since it carries the epoch it decides.

A situation report (``"kind": "situation_report"``, docs/contracts.md) is a duplicate by
``report_id`` and, like a decision, carries the system's current epoch: it is logged and
noted, never acted on.

``GET /v1/recommendations`` lists what was accepted (tests, demos); ``GET /healthz``.
"""

from __future__ import annotations

import hmac
import logging
import threading
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from predictor.contracts import ACTIONS

logger = logging.getLogger(__name__)

_WOULD = {
    "none": "stand down: {sys}/{comp} is back to normal",
    "watch": "keep an eye on {sys}/{comp}",
    "prepare_standby": "warm the standby of {sys}/{comp} (no market impact)",
    "failover_at_window": "fail {sys}/{comp} over to its standby at {nb}",
    "failover_now": "fail {sys}/{comp} over to its standby now",
}


class Ledger:
    """What the orchestrator accepted: ids seen and the highest epoch per system."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self._lock = threading.Lock()
        self.ids: set[str] = set()
        self.epochs: dict[str, int] = {}
        self.accepted: list[dict[str, Any]] = []
        if log.exists():
            for line in log.read_bytes().splitlines():
                if line.strip():
                    self._note(orjson.loads(line))

    def _note(self, rec: dict[str, Any]) -> None:
        self.ids.add(_id(rec))
        self.epochs[rec["system"]] = max(self.epochs.get(rec["system"], 0), int(rec["epoch"]))
        self.accepted.append(rec)

    def offer(self, rec: dict[str, Any], raw: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            rid, system, epoch = _id(rec), rec["system"], int(rec["epoch"])
            decision = rec.get("kind") in ("decision", "situation_report")  # no new epoch
            if rid in self.ids:
                return 200, {"status": "duplicate", "recommendation_id": rid}
            highest = self.epochs.get(system, 0)
            if epoch < highest or (epoch == highest and not decision):
                return 409, {
                    "error": "stale_epoch",
                    "detail": f"epoch {epoch} is not above {highest} for {system}",
                    "highest_epoch": highest,
                }
            with open(self.log, "ab") as fh:
                fh.write(raw.strip() + b"\n")
                fh.flush()
            self._note(rec)
        if rec.get("kind") == "situation_report":
            would = f"note the situation of {system}: {rec['action']}, {rec['risk_trend']}"
        elif decision:
            would = (
                f"act on {rec['recommendation_id']}: {rec['action']} of {system} to "
                f"{rec.get('active_site')} (approved by {rec.get('decided_by')})"
                if rec["decision"] == "approved"
                else f"not act on {rec['recommendation_id']} (rejected by {rec.get('decided_by')})"
            )
        else:
            would = _WOULD[rec["action"]].format(
                sys=system, comp=rec["component"], nb=rec.get("not_before")
            )
        logger.info("accepted %s (epoch %d): would %s", rid, epoch, would)
        return 200, {"status": "accepted", "recommendation_id": rid, "would": would}


def create_orchestrator(log: Path, secret: str | None = None) -> FastAPI:
    """The reference orchestrator's app, writing accepted recommendations to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(log)
    app = FastAPI(
        title="Precovery reference orchestrator",
        description="Receives recommendations.v1 pushes: idempotent by id, fenced by epoch.",
    )

    def error(status: int, reason: str, detail: str) -> JSONResponse:
        return JSONResponse({"error": reason, "detail": detail}, status_code=status)

    @app.post(
        "/v1/recommendations",
        responses={
            200: {"description": "accepted, or a duplicate of one accepted before"},
            400: {"description": "not a recommendation, or headers that do not match it"},
            401: {"description": "bad or missing signature"},
            409: {"description": "stale epoch: a newer one was accepted for the system"},
        },
    )
    async def receive(request: Request) -> JSONResponse:
        raw = await request.body()
        if secret is not None:
            given = request.headers.get("x-precovery-signature", "")
            want = "sha256=" + hmac.new(secret.encode(), raw, "sha256").hexdigest()
            if not hmac.compare_digest(given, want):
                return error(401, "bad_signature", "X-Precovery-Signature does not match")
        try:
            rec = orjson.loads(raw)
            rid, epoch = _id(rec), int(rec["epoch"])
            _system, action = rec["system"], rec["action"]
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r}")
            if rec.get("kind") == "decision" and rec["decision"] not in ("approved", "rejected"):
                raise ValueError(f"unknown decision {rec['decision']!r}")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            return error(400, "not_a_recommendation", str(exc)[:200])
        if request.headers.get("idempotency-key") != rid:
            return error(
                400,
                "idempotency_key",
                "Idempotency-Key must be the recommendation_id (a decision's decision_id)",
            )
        if request.headers.get("x-precovery-epoch") != str(epoch):
            return error(400, "epoch_header", "X-Precovery-Epoch must be the record's epoch")
        status, body = ledger.offer(rec, raw)
        return JSONResponse(body, status_code=status)

    @app.get("/v1/recommendations")
    def accepted() -> list[dict[str, Any]]:
        return list(ledger.accepted)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "accepted": len(ledger.accepted)}

    return app


def _id(rec: dict[str, Any]) -> str:
    """A record's identity: a decision's ``decision_id``, else its ``recommendation_id``."""
    if rec.get("kind") == "situation_report":
        return str(rec["report_id"])
    return str(rec["decision_id"] if rec.get("kind") == "decision" else rec["recommendation_id"])
