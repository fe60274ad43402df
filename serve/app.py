"""The FastAPI service: the orchestrators' scoring endpoint, SRE views and metrics.

``create_app(backend)`` takes anything that offers the read side of the live state (see
:class:`~serve.backend.Backend`); the embedded default passes
:class:`pipelines.embedded.live.LiveState`, the tests may pass their own. Errors of
:mod:`predictor.errors` map to status codes in one handler (:mod:`serve.errors`); anything
unexpected becomes a JSON 500 with a request id (the traceback goes to the log at ERROR
with the same id). Every response carries ``X-Request-ID`` (:mod:`serve.context`).

This module is the wiring: middleware, error handlers, the route groups of
:mod:`serve.routes` in order, the static files and the OpenAPI document. Hot paths never
wait for the stream (:mod:`serve.routes.scoring`, :mod:`serve.sse`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from pipelines.records.feedback import FeedbackStore
from predictor import __version__
from serve import errors
from serve.auth import RateLimiter
from serve.backend import Backend
from serve.context import JSON, REQUEST_ID, RequestContext
from serve.errors import STATUS
from serve.gates import HostGate, KeyGate, Security
from serve.routes import admin, console, ops, scoring, sre
from serve.schemas import ErrorBody, ScoreRequest

__all__ = ["GUARDED", "REQUEST_ID", "STATUS", "Backend", "RequestContext", "create_app"]

#: Responses every guarded route may give (documented so a schema check accepts them).
GUARDED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No API key, or an unknown or revoked one"},
    403: {"model": ErrorBody, "description": "The key's role is below the route's"},
    429: {"model": ErrorBody, "description": "Over the key's request rate (Retry-After)"},
}


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
    errors.install(app)

    # No two groups' paths overlap, so the order only sets the OpenAPI document's (kept
    # as it was when every route lived in this module: /metrics last).
    ops.add_routes(app.router, backend)
    scoring.add_routes(app.router, backend, max_body_bytes, max_events_per_request, sse_keepalive_s)
    sre.add_routes(app.router, feedback, alerts, audit, approvals)
    admin.add_routes(app.router, sec)
    console.add_routes(app.router)
    ops.add_metrics_route(app.router, backend, alerts)

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
    for path, ops_ in spec.get("paths", {}).items():
        for method, op in ops_.items():
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
