"""The FastAPI service: the orchestrators' scoring endpoint, SRE views and metrics.

``create_app(backend)`` takes anything that offers the read side of the live state (see
:class:`Backend`); the embedded default passes :class:`pipelines.live.LiveState`, the
tests may pass their own. Errors of :mod:`predictor.errors` map to status codes in one
handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson
from anyio import to_thread
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

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
from serve.schemas import (
    ErrorBody,
    Health,
    Recommendation,
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


class Backend(Protocol):
    """What the API reads (``pipelines.live.LiveState`` implements it)."""

    def systems(self) -> list[dict[str, Any]]: ...
    def system(self, name: str) -> dict[str, Any]: ...
    def recommendations(
        self, system: str | None = None, after: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]: ...
    def wait_recommendations(self, after: int, timeout_s: float) -> list[dict[str, Any]]: ...
    def status(self) -> dict[str, Any]: ...
    def score(self, events: list[Any], max_events: int) -> dict[str, Any]: ...


def create_app(
    backend: Backend,
    max_body_bytes: int = 1024 * 1024,
    max_events_per_request: int = 10_000,
) -> FastAPI:
    """Build the app around a backend."""
    app = FastAPI(
        title="Precovery",
        version=__version__,
        description="Predictive failover recommendations for trading infrastructure. "
        "Risks are P(failure within horizon_s); dollar figures are USD; times RFC 3339 UTC.",
    )
    registry = CollectorRegistry()
    registry.register(_StatusCollector(backend))

    @app.exception_handler(PrecoveryError)
    async def _precovery_error(_request: Request, exc: PrecoveryError) -> JSONResponse:
        status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 500)
        body: dict[str, Any] = {"error": type(exc).__name__, "reason": str(exc)}
        if isinstance(exc, ValidationError):
            body = {"error": "validation", "reason": exc.reason, "detail": exc.detail}
            if exc.items:
                body["rejects"] = exc.items[:100]
        return JSONResponse(body, status_code=status)

    @app.get("/healthz", response_model=Health, tags=["ops"])
    def healthz() -> dict[str, Any]:
        """Liveness and what the service is running."""
        st = backend.status()
        wm = st.get("watermark")
        return {
            "status": "ok",
            "model_version": st.get("model_version"),
            "entities": st.get("entities", 0),
            "watermark": ms_to_iso(wm) if wm else None,
        }

    @app.get("/v1/status", tags=["ops"])
    def status() -> dict[str, Any]:
        """Counters, reject reasons by cause, state size."""
        return backend.status()

    @app.get("/v1/systems", response_model=list[SystemSummary], tags=["scoring"])
    def systems() -> list[dict[str, Any]]:
        """Health, worst component and most urgent action of every system."""
        return backend.systems()

    @app.get(
        "/v1/systems/{system}",
        response_model=SystemDetail,
        responses={404: {"model": ErrorBody}},
        tags=["scoring"],
    )
    def system(system: str) -> dict[str, Any]:
        """Components and hosts of one system, with health, risk and latest recommendation."""
        return backend.system(system)

    @app.get("/v1/recommendations", response_model=list[Recommendation], tags=["scoring"])
    def recommendations(
        system: str | None = None,
        after: int = Query(0, ge=0, description="Only those with seq > after"),
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        """Recent recommendations, oldest first (the latest ``limit`` unless ``after``)."""
        return backend.recommendations(system, after, limit)

    @app.get("/v1/recommendations/stream", tags=["scoring"])
    async def stream(
        request: Request,
        after: int = Query(0, ge=0),
        max_s: float = Query(3600.0, gt=0, le=86_400, description="Close after, seconds"),
    ) -> StreamingResponse:
        """Server-sent events: one ``recommendation`` event per recommendation."""

        async def events() -> AsyncIterator[bytes]:
            last = after
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max_s
            yield b": precovery recommendations\n\n"
            while loop.time() < deadline and not await request.is_disconnected():
                wait = min(1.0, max(0.0, deadline - loop.time()))
                recs = await to_thread.run_sync(backend.wait_recommendations, last, wait)
                for rec in recs:
                    last = max(last, int(rec["seq"]))
                    yield b"event: recommendation\nid: %d\ndata: %s\n\n" % (
                        rec["seq"],
                        orjson.dumps(rec),
                    )

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post(
        "/v1/score",
        response_model=ScoreResponse,
        responses={413: {"model": ErrorBody}, 422: {"model": ErrorBody}},
        tags=["scoring"],
    )
    async def score(request: Request) -> dict[str, Any]:
        """Score a batch of telemetry.v1 events (a what-if: the live state is not changed).

        Body: ``{"events": [...]}`` or a bare JSON array, at most ``max_body_bytes``.
        Any invalid event fails the whole request with 422 and every reason.
        """
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise PayloadTooLarge("too_large", f"{declared} bytes > {max_body_bytes} bytes")
        body = bytearray()
        async for part in request.stream():
            body.extend(part)
            if len(body) > max_body_bytes:
                raise PayloadTooLarge("too_large", f"body over {max_body_bytes} bytes")
        # events.loads tells a NaN/Infinity literal (non_finite) from malformed JSON.
        payload = loads(bytes(body), max_body_bytes)
        events = payload.get("events") if isinstance(payload, dict) else payload
        if not isinstance(events, list):
            raise ValidationError("wrong_type", 'body must be {"events": [...]} or a JSON array')
        return await to_thread.run_sync(backend.score, events, max_events_per_request)

    @app.get("/metrics", tags=["ops"])
    def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    return app


class _StatusCollector(Collector):
    """Reads the backend's status at scrape time."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def collect(self) -> Any:
        st = self.backend.status()
        counters = st.get("counters", {})
        c = CounterMetricFamily(
            "precovery_events", "Telemetry events processed", labels=["outcome"]
        )
        c.add_metric(["accepted"], counters.get("events", 0))
        c.add_metric(["rejected"], counters.get("rejected", 0))
        yield c
        r = CounterMetricFamily("precovery_rejects", "Rejected inputs by reason", labels=["reason"])
        for reason, n in sorted(st.get("reject_reasons", {}).items()):
            r.add_metric([reason], n)
        yield r
        rec = CounterMetricFamily("precovery_recommendations", "Recommendations emitted")
        rec.add_metric([], counters.get("recommendations", 0))
        yield rec
        scored = CounterMetricFamily("precovery_risk_scored", "Risk model rows scored")
        scored.add_metric([], counters.get("risk_scored", 0))
        yield scored
        h = GaugeMetricFamily("precovery_system_health", "System health, 0-100", labels=["system"])
        for system, value in sorted(st.get("health", {}).items()):
            h.add_metric([system], value)
        yield h
        e = GaugeMetricFamily("precovery_entities", "Hosts tracked")
        e.add_metric([], st.get("entities", 0))
        yield e
        wm = st.get("watermark")
        if wm:
            w = GaugeMetricFamily("precovery_watermark_seconds", "Latest event time, epoch s")
            w.add_metric([], wm / 1000.0)
            yield w
