"""Operations (tag ``ops``): liveness, readiness, status counters and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry, generate_latest

from predictor.events import ms_to_iso
from serve.backend import Backend
from serve.metrics import StatusCollector
from serve.schemas import Health, Readiness


def feed_fields(backend: Backend) -> dict[str, Any]:
    """The input feed's conditions, idle seconds and consumer lag (nulls without a feed)."""
    feed = getattr(backend, "feed", None)
    if feed is None:
        return {"conditions": [], "input_idle_s": None, "consumer_lag": None}
    idle = feed.idle_s()
    return {
        "conditions": feed.conditions(),
        "input_idle_s": None if idle is None else round(idle, 3),
        "consumer_lag": feed.lag,
    }


def add_routes(router: APIRouter, backend: Backend) -> None:
    """``/healthz``, ``/readyz`` and ``/v1/status`` from ``backend``."""

    @router.get("/healthz", response_model=Health, tags=["ops"])
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

    @router.get(
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
        st = feed_fields(backend)
        body = {"status": "not_ready" if reasons else "ready", "reasons": reasons, **st}
        return JSONResponse(body, status_code=503 if reasons else 200)

    @router.get("/v1/status", tags=["ops"])
    def status() -> dict[str, Any]:
        """Counters, reject reasons by cause, state size, readiness and conditions."""
        return backend.status()


def add_metrics_route(router: APIRouter, backend: Backend, alerts: Any = None) -> None:
    """``/metrics``: the backend's status and, for the alert gauges, the process's alert
    notifier, in the Prometheus text format. Apart from :func:`add_routes` so that the app
    can add it last, where it has always been in the OpenAPI document."""
    registry = CollectorRegistry()
    registry.register(StatusCollector(backend, alerts))

    @router.get(
        "/metrics",
        tags=["ops"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
