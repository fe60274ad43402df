"""The FastAPI service: the orchestrators' scoring endpoint, SRE views and metrics.

``create_app(backend)`` takes anything that offers the read side of the live state (see
:class:`Backend`); the embedded default passes :class:`pipelines.embedded.live.LiveState`, the
tests may pass their own. Errors of :mod:`predictor.errors` map to status codes in one
handler; anything unexpected becomes a JSON 500 with a request id (the traceback goes
to the log at ERROR with the same id). Every response carries ``X-Request-ID``.

Hot paths never wait for the stream: views come pre-serialised from the backend's
per-state cache, and the event stream waits on an asyncio event the worker sets, not in
a worker thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import orjson
from anyio import to_thread
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, generate_latest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipelines.embedded.live import CursorReset
from pipelines.records.feedback import FeedbackStore
from predictor import __version__
from predictor.errors import (
    ConfigError,
    EdgeError,
    ModelError,
    PayloadTooLarge,
    PrecoveryError,
    UnknownEntityError,
    ValidationError,
)
from predictor.events import loads, ms_to_iso
from serve.auth import RateLimiter
from serve.gates import API_KEY, HostGate, KeyGate, Security
from serve.metrics import StatusCollector
from serve.schemas import (
    Alerts,
    AuditKind,
    AuditPage,
    CursorResetBody,
    Decision,
    DecisionConflictBody,
    DecisionIn,
    ErrorBody,
    Feedback,
    FeedbackIn,
    Health,
    HistoryPoint,
    KeyOut,
    Readiness,
    Recommendation,
    ScoreRequest,
    ScoreResponse,
    SystemDetail,
    SystemSummary,
)

logger = logging.getLogger(__name__)

STATUS = {
    PayloadTooLarge: 413,
    ValidationError: 422,
    UnknownEntityError: 404,
    ModelError: 503,
    ConfigError: 500,
    EdgeError: 502,
}

#: The request id of the request being served (for error bodies and log lines).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_SANE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")

CURSOR_DOC = (
    "Resume after this cursor: the `cursor` of the last recommendation you have "
    "(`<stream_id>:<seq>`), or 0 / nothing for the start. A cursor of another stream "
    "(the service restarted) or one older than the kept log is refused with 409 "
    "`cursor_reset`: start over with after=0 and drop duplicates by recommendation_id."
)
JSON = "application/json"
STATIC = Path(__file__).resolve().parent / "static"
#: Responses every guarded route may give (documented so a schema check accepts them).
GUARDED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No API key, or an unknown or revoked one"},
    403: {"model": ErrorBody, "description": "The key's role is below the route's"},
    429: {"model": ErrorBody, "description": "Over the key's request rate (Retry-After)"},
}


class Backend(Protocol):
    """What the API reads (``pipelines.embedded.live.LiveState`` implements it; so does
    ``pipelines.kafka.backend.KafkaBackend`` for ``precovery serve``).

    A *position* in the recommendation feed is opaque to the API: ``parse_cursor`` makes
    one from a client's cursor, ``position_of`` from a row, ``newer_than`` says whether
    anything came after one. A backend that cannot do something raises
    ``NotImplementedError`` (501).
    """

    stream_id: str

    def view_json(self, system: str | None = None, wait: bool = True) -> bytes | None: ...
    def recommendations(
        self, system: str | None = None, after: Any = 0, limit: int = 100
    ) -> list[dict[str, Any]]: ...
    def parse_cursor(self, after: str | int | None) -> Any: ...
    def newer_than(self, position: Any) -> bool: ...
    def position_of(self, row: dict[str, Any]) -> Any: ...
    def gap(self, position: Any, rows: list[dict[str, Any]]) -> str | None: ...
    def history(self, system: str) -> list[dict[str, Any]]: ...
    def add_listener(self, fn: Callable[[], None]) -> None: ...
    def remove_listener(self, fn: Callable[[], None]) -> None: ...
    def health(self) -> dict[str, Any]: ...
    def readiness(self) -> list[str]: ...
    def status(self) -> dict[str, Any]: ...
    def score(self, events: list[Any], max_events: int) -> dict[str, Any]: ...


def create_app(
    backend: Backend,
    max_body_bytes: int = 1024 * 1024,
    max_events_per_request: int = 10_000,
    sse_keepalive_s: float = 15.0,
    *,
    security: Security | None = None,
    feedback: FeedbackStore | None = None,
    alerts: Any = None,
    audit: Any = None,
    approvals: Any = None,
) -> FastAPI:
    """Build the app around a backend.

    ``sse_keepalive_s``: an idle event stream sends a comment this often, so proxies and
    clients see the connection is alive. ``security``: keys, roles, rate limits, allowed
    hosts and CORS (None: open, any host). ``feedback``: where SREs' verdicts go (None:
    ``/v1/feedback`` answers 503). ``alerts``: the process's
    :class:`~pipelines.outbound.alertmanager.AlertNotifier`, for ``/v1/alerts`` and metrics.
    ``audit``: the :class:`~pipelines.records.audit.AuditStore` ``/v1/audit`` reads (None: 501).
    ``approvals``: :class:`~pipelines.records.approvals.Approvals` for ``/approve`` and
    ``/reject`` (None: 501).
    """
    sec = security or Security()
    app = FastAPI(
        title="Precovery",
        version=__version__,
        description="Predictive failover recommendations for trading infrastructure. "
        "Risks are P(failure within horizon_s); dollar figures are USD; times RFC 3339 UTC. "
        "Every response carries an X-Request-ID header (a sane client-supplied one is "
        "kept); error bodies repeat it. With API keys on, every route but the probes, the "
        "docs and the console page needs `Authorization: Bearer <key>`: role read for "
        "reads and scoring, operate for feedback and approvals, admin for keys.",
        docs_url=None,
        redoc_url=None,
    )
    # add_middleware stacks outwards: the last added runs first.
    if sec.keys is not None:
        app.add_middleware(
            KeyGate,
            keys=sec.keys,
            limiter=RateLimiter(sec.rate_per_s, sec.burst),
            request_id=REQUEST_ID.get,
        )
    app.add_middleware(RequestContext)
    if sec.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=sec.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "Last-Event-ID",
                "X-Request-ID",
            ],
            expose_headers=["X-Request-ID", "X-Stream-ID", "Retry-After"],
            max_age=600,
        )
    if sec.allowed_hosts is not None:
        app.add_middleware(HostGate, allowed=sec.allowed_hosts)
    registry = CollectorRegistry()
    registry.register(StatusCollector(backend, alerts))
    news = _News(backend)

    @app.exception_handler(PrecoveryError)
    async def _precovery_error(_request: Request, exc: PrecoveryError) -> JSONResponse:
        status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 500)
        body: dict[str, Any] = {"error": type(exc).__name__, "reason": str(exc)}
        if isinstance(exc, ValidationError):
            body = {"error": "validation", "reason": exc.reason, "detail": exc.detail}
            if exc.items:
                body["rejects"] = exc.items[:100]
        body["request_id"] = REQUEST_ID.get()
        return JSONResponse(body, status_code=status)

    @app.exception_handler(CursorReset)
    async def _cursor_reset(_request: Request, exc: CursorReset) -> JSONResponse:
        body = {
            "error": "cursor_reset",
            "reason": exc.why,
            "detail": exc.detail,
            "stream_id": exc.stream_id,
            "request_id": REQUEST_ID.get(),
        }
        return JSONResponse(body, status_code=409, headers={"X-Stream-ID": exc.stream_id})

    @app.exception_handler(NotImplementedError)
    async def _not_here(_request: Request, exc: NotImplementedError) -> JSONResponse:
        body = {
            "error": "not_implemented",
            "reason": "not_served_here",
            "detail": str(exc)[:300],
            "request_id": REQUEST_ID.get(),
        }
        return JSONResponse(body, status_code=501)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        rejects = [
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "reason": str(err.get("type", "invalid")),
                "detail": str(err.get("msg", ""))[:200],
            }
            for err in exc.errors()[:100]
        ]
        first = rejects[0] if rejects else {"loc": [], "detail": ""}
        body = {
            "error": "validation",
            "reason": "invalid_request",
            "detail": f"{'.'.join(first['loc'])}: {first['detail']}",
            "rejects": rejects,
            "request_id": REQUEST_ID.get(),
        }
        return JSONResponse(body, status_code=422)

    @app.get("/healthz", response_model=Health, tags=["ops"])
    async def healthz() -> dict[str, Any]:
        """Liveness: 200 whenever the process answers (never waits for the stream)."""
        h = backend.health()
        wm = h.get("watermark")
        return {
            "status": "ok",
            "model_version": h.get("model_version"),
            "entities": h.get("entities", 0),
            "watermark": ms_to_iso(wm) if wm else None,
        }

    @app.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready: every reason named"}},
        tags=["ops"],
    )
    async def readyz() -> JSONResponse:
        """Readiness: 200 only when the stream worker runs, a model is loaded, input is
        fresh (no ``telemetry_lost``) and the consumer lag is under its bound; otherwise
        503 with every failing reason."""
        reasons = backend.readiness()
        st = _feed_fields(backend)
        body = {"status": "not_ready" if reasons else "ready", "reasons": reasons, **st}
        return JSONResponse(body, status_code=503 if reasons else 200)

    @app.get("/v1/status", tags=["ops"])
    def status() -> dict[str, Any]:
        """Counters, reject reasons by cause, state size, readiness and conditions."""
        return backend.status()

    @app.get("/v1/systems", response_model=list[SystemSummary], tags=["scoring"])
    async def systems() -> Response:
        """Health, worst component and most urgent action of every system.

        Rendered at most once per engine state; while a batch is in progress the render
        of the state before it is served (``as_of`` in the detail view tells which)."""
        return Response(await _view(backend, None), media_type=JSON)

    @app.get(
        "/v1/systems/{system}",
        response_model=SystemDetail,
        responses={404: {"model": ErrorBody}},
        tags=["scoring"],
    )
    async def system(system: str) -> Response:
        """Components and hosts of one system, with health, risk and latest recommendation.

        Rendered at most once per engine state (see ``/v1/systems``); ``as_of`` is the
        watermark the view was rendered at."""
        return Response(await _view(backend, system), media_type=JSON)

    @app.get(
        "/v1/recommendations",
        response_model=list[Recommendation],
        responses={409: {"model": CursorResetBody}, 422: {"model": ErrorBody}},
        tags=["scoring"],
    )
    async def recommendations(
        system: str | None = None,
        after: str | None = Query(None, max_length=200, description=CURSOR_DOC),
        limit: int = Query(100, ge=1, le=1000),
    ) -> Response:
        """Recent recommendations, oldest first (the latest ``limit`` unless ``after``).

        Cursors survive restarts by refusing to be reused across them: sequence numbers
        restart at 1 in every process, so each process has a fresh ``stream_id`` (also in
        the ``X-Stream-ID`` header) and a cursor is ``<stream_id>:<seq>``. Resuming with a
        cursor of another stream answers 409 ``cursor_reset`` (reason
        ``stream_changed``); with one older than the kept log, 409 ``cursor_expired``.
        Nothing is ever skipped silently. A bare number other than 0 is refused (422)."""
        seq = backend.parse_cursor(after)
        rows = backend.recommendations(system, seq, limit)
        return Response(
            orjson.dumps(rows), media_type=JSON, headers={"X-Stream-ID": backend.stream_id}
        )

    @app.get(
        "/v1/recommendations/stream",
        responses={200: {"content": {"text/event-stream": {}}}, 422: {"model": ErrorBody}},
        tags=["scoring"],
    )
    async def stream(
        after: str | None = Query(None, max_length=200, description=CURSOR_DOC),
        max_s: float = Query(3600.0, gt=0, le=86_400, description="Close after, seconds"),
        last_event_id: str | None = Header(
            None,
            alias="Last-Event-ID",
            max_length=200,
            description="Standard SSE resume header; wins over ?after=",
        ),
    ) -> StreamingResponse:
        """Server-sent events: one ``recommendation`` event per recommendation.

        Each event's ``id:`` is its cursor ``<stream_id>:<seq>``, so a reconnecting
        ``EventSource`` resumes by itself (``Last-Event-ID``; ``?after=`` works too). A
        cursor of another stream (the service restarted) or one older than the kept log
        gets an ``event: reset`` first (data: reason, detail, the new ``stream_id``);
        the events after it are the current stream's from its oldest kept one: drop
        duplicates by ``recommendation_id``. While idle, a ``: keep-alive`` comment
        comes every ``sse_keepalive_s`` seconds."""
        reset: CursorReset | None = None
        last: Any
        try:
            last = backend.parse_cursor(last_event_id or after)
        except CursorReset as exc:
            reset, last = exc, backend.parse_cursor(None)
        news.attach()
        sid = backend.stream_id

        async def events() -> AsyncIterator[bytes]:
            nonlocal last
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max_s
            yield b"retry: 2000\n: precovery recommendations, stream %s\n\n" % sid.encode()
            if reset is not None:
                yield _reset_event(reset.why, reset.detail, sid)
            while (now := loop.time()) < deadline:
                tick = news.current()
                if backend.newer_than(last):
                    recs = backend.recommendations(after=last, limit=1000)
                    gone = backend.gap(last, recs)
                    if gone:
                        yield _reset_event("cursor_expired", gone, sid)
                    for rec in recs:
                        last = backend.position_of(rec)
                        yield b"event: recommendation\nid: %s\ndata: %s\n\n" % (
                            rec["cursor"].encode(),
                            orjson.dumps(rec),
                        )
                    if recs:
                        continue
                wait = min(sse_keepalive_s, deadline - now)
                if not await news.wait(tick, wait) and loop.time() < deadline:
                    yield b": keep-alive\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Stream-ID": sid},
        )

    @app.post(
        "/v1/score",
        response_model=ScoreResponse,
        responses={
            413: {"model": ErrorBody},
            415: {"model": ErrorBody, "description": "Body not sent as application/json"},
            422: {"model": ErrorBody},
            501: {"model": ErrorBody, "description": "This server has no engine (serve)"},
        },
        tags=["scoring"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {
                        "schema": {
                            "anyOf": [
                                {"$ref": "#/components/schemas/ScoreRequest"},
                                {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/TelemetryEvent"},
                                },
                            ]
                        }
                    }
                },
            }
        },
    )
    async def score(request: Request) -> Any:
        """Score a batch of telemetry.v1 events (a what-if: the live state is not changed).

        Body: ``{"events": [...]}`` (``ScoreRequest``) or a bare JSON array of events, at
        most ``max_body_bytes``. Any invalid event fails the whole request with 422 and
        every reason; so does a body that is not JSON, too deeply nested, or not of
        either shape.
        """
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        # A body with no type is read as JSON; any other declared type is refused (no
        # text/plain "simple requests" from a browser on another origin).
        if ctype and ctype != JSON and not ctype.endswith("+json"):
            return JSONResponse(
                {
                    "error": "unsupported_media_type",
                    "reason": "not_json",
                    "detail": f"Content-Type must be {JSON}, got {ctype[:60]!r}",
                    "request_id": REQUEST_ID.get(),
                },
                status_code=415,
            )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise PayloadTooLarge("too_large", f"{declared} bytes > {max_body_bytes} bytes")
        body = bytearray()
        async for part in request.stream():
            body.extend(part)
            if len(body) > max_body_bytes:
                raise PayloadTooLarge("too_large", f"body over {max_body_bytes} bytes")
        events = _score_events(bytes(body), max_body_bytes)
        return await to_thread.run_sync(backend.score, events, max_events_per_request)

    @app.get(
        "/v1/systems/{system}/history",
        response_model=list[HistoryPoint],
        responses={404: {"model": ErrorBody}},
        tags=["scoring"],
    )
    def history(system: str) -> Response:
        """A system's health, highest risk and action over the last hours, oldest first.

        One point per step of event time (the live state's ``history_step_s``, a minute
        by default), bounded (``history_points``); the console draws its charts from it."""
        return Response(orjson.dumps(backend.history(system)), media_type=JSON)

    @app.get("/v1/alerts", response_model=Alerts, tags=["sre"])
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

    @app.post(
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

    @app.get(
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

    @app.get(
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
            after_id=int(cursor or 0),
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return {"records": rows, "next_cursor": str(rows[-1]["id"]) if more else None}

    def _decide(rec_id: str, decision: str, body: DecisionIn) -> Any:
        if approvals is None:
            raise NotImplementedError("approvals are not served here (precovery demo serves them)")
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
        501: {"model": ErrorBody, "description": "This server takes no approvals (serve)"},
    }

    @app.post(
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

    @app.post(
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

    @app.get("/v1/keys", response_model=list[KeyOut], tags=["admin"])
    def keys() -> list[dict[str, Any]]:
        """API keys (role ``admin``): ids, names, roles, never secrets. Create and revoke
        them with ``precovery keys``. Empty when the API runs open."""
        if sec.keys is None:
            return []
        return [k.public() for k in sec.keys.keys()]

    @app.get("/console", include_in_schema=False)
    def console() -> FileResponse:
        return FileResponse(STATIC / "console.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Precovery API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def docs_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # The score body is parsed by hand (exact reasons, NaN, size limit), so FastAPI
        # cannot see its models: add them to the components the request body refers to.
        if app.openapi_schema is None:
            spec = base_openapi()
            schema = ScoreRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            comps = spec.setdefault("components", {}).setdefault("schemas", {})
            for name, sub in schema.pop("$defs", {}).items():
                comps.setdefault(name, sub)
            comps.setdefault("ScoreRequest", schema)
            if sec.keys is not None:
                _document_keys(spec)
            app.openapi_schema = spec
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _document_keys(spec: dict[str, Any]) -> None:
    """The key scheme, and 401/403/429 on every guarded operation."""
    from serve.gates import required_role

    comps = spec.setdefault("components", {})
    comps.setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `precovery keys create` (X-API-Key works too)",
    }
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            role = required_role(method.upper(), path)
            if role is None:
                continue
            op["security"] = [{"apiKey": []}]
            op["description"] = f"{op.get('description', '')}\n\nRole: `{role}`.".strip()
            for code, doc in GUARDED.items():
                op.setdefault("responses", {}).setdefault(
                    str(code),
                    {"description": doc["description"], "content": {JSON: {"schema": ref}}},
                )


async def _view(backend: Backend, system: str | None) -> bytes:
    """The cached render without leaving the event loop; a thread only to render."""
    data = backend.view_json(system, wait=False)
    if data is None:
        data = await to_thread.run_sync(backend.view_json, system)
    assert data is not None
    return data


def _score_events(body: bytes, max_body_bytes: int) -> list[Any]:
    """The events of a score body, or a :class:`ValidationError` (and nothing else)."""
    try:
        # events.loads tells a NaN/Infinity literal (non_finite) from malformed JSON.
        payload = loads(body, max_body_bytes)
    except ValidationError:
        raise
    except Exception as exc:  # a decoder's surprise (deep nesting...) is the body's fault
        raise ValidationError("malformed_json", f"{type(exc).__name__}"[:120]) from None
    events = payload.get("events") if isinstance(payload, dict) else payload
    if not isinstance(events, list):
        raise ValidationError("wrong_type", 'body must be {"events": [...]} or a JSON array')
    bad = [
        {"index": i, "reason": "not_an_object", "detail": type(ev).__name__}
        for i, ev in enumerate(events)
        if not isinstance(ev, dict)
    ]
    if bad:
        first = bad[0]
        raise ValidationError(
            "not_an_object", f"event {first['index']}: {first['detail']}", bad[:100]
        )
    return events


def _reset_event(why: str, detail: str, stream_id: str) -> bytes:
    data = orjson.dumps({"reason": why, "detail": detail, "stream_id": stream_id})
    return b"event: reset\ndata: %s\n\n" % data


def _feed_fields(backend: Backend) -> dict[str, Any]:
    feed = getattr(backend, "feed", None)
    if feed is None:
        return {"conditions": [], "input_idle_s": None, "consumer_lag": None}
    idle = feed.idle_s()
    return {
        "conditions": feed.conditions(),
        "input_idle_s": None if idle is None else round(idle, 3),
        "consumer_lag": feed.lag,
    }


class _News:
    """Wakes every event-stream generator when the backend logs recommendations.

    The worker thread calls the listener; it hands over to the event loop with
    ``call_soon_threadsafe``, which swaps in a fresh :class:`asyncio.Event` and sets the
    old one. Waiting costs no thread, so hundreds of idle streams cost no worker threads.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()
        self._listener: Callable[[], None] | None = None

    def attach(self) -> None:
        """Listen on behalf of the running loop (once per loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._listener is not None:
            self.backend.remove_listener(self._listener)
        self._loop, self._event = loop, asyncio.Event()

        def listener() -> None:
            loop.call_soon_threadsafe(self._fire)

        self._listener = listener
        self.backend.add_listener(listener)

    def _fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    def current(self) -> asyncio.Event:
        return self._event

    @staticmethod
    async def wait(event: asyncio.Event, timeout_s: float) -> bool:
        """Whether ``event`` was set within ``timeout_s``."""
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await event.wait()
        except TimeoutError:
            return False
        return True


class RequestContext:
    """Pure ASGI middleware: a request id on every response, and no plain-text 500s.

    The id is the client's ``X-Request-ID`` when it is sane (1-128 of ``A-Za-z0-9._:-``),
    else a fresh one. An exception that escapes a handler is logged at ERROR with the
    id and its traceback, and answered with a JSON 500 naming the id (when the response
    has not started; otherwise the connection is closed after logging).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or ()).get(b"x-request-id", b"")
        rid = given.decode() if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(rid)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            logger.error(
                "unhandled error [request_id=%s] %s %s",
                rid,
                scope.get("method"),
                scope.get("path"),
                exc_info=exc,
            )
            if started:
                return
            body = orjson.dumps(
                {
                    "error": "internal",
                    "reason": "internal_error",
                    "detail": f"{type(exc).__name__}; the log has the traceback under this id",
                    "request_id": rid,
                }
            )
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", JSON.encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            REQUEST_ID.reset(token)
