"""The stream worker's ops port: ``/metrics``, ``/healthz`` and ``/readyz`` (no API).

``precovery stream --ops-port PORT`` (or ``PRECOVERY_STREAM__OPS_PORT``) serves this small
app from a thread of its own. What it shows comes from three places, none of which makes
the poll loop wait:

- the worker's :class:`~pipelines.embedded.feed.FeedMonitor` (readiness, input freshness, lag) and
  ``counters``;
- a :class:`MeteredSink` around the worker's sink: every output record on its way out
  (per-system health and risk from health.v1, DLQ records by reason, deliveries by topic
  and outcome, publish latency);
- the alert notifier's counts, when there is one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from pipelines.embedded.live import StageLatency
from predictor.ports import OutRecord, Sink

logger = logging.getLogger(__name__)


class _Publish:
    def __init__(self, publish_s: float) -> None:
        self.publish_s = publish_s


class MeteredSink:
    """A sink that counts and times what passes through it on the way to ``inner``."""

    def __init__(self, inner: Sink, health_topic: str, dlq_topic: str) -> None:
        self.inner = inner
        self.health_topic = health_topic
        self.dlq_topic = dlq_topic
        self.latency = StageLatency()
        self.deliveries: Counter[tuple[str, str]] = Counter()
        self.dlq: Counter[str] = Counter()
        self.health: dict[str, tuple[float, float | None]] = {}
        self._lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        """Health and risk per system, dead letters by reason, deliveries: a consistent copy."""
        with self._lock:
            return {
                "health": {s: h for s, (h, _r) in self.health.items()},
                "max_risk": {s: r for s, (_h, r) in self.health.items()},
                "dlq_reasons": dict(self.dlq),
                "deliveries": dict(self.deliveries),
            }

    def publish(self, records: Sequence[OutRecord]) -> None:
        t0 = time.perf_counter()
        try:
            self.inner.publish(records)
        except Exception:
            with self._lock:
                for r in records:
                    self.deliveries[(r.topic, "failed")] += 1
            raise
        took = time.perf_counter() - t0
        self.latency.observe(_Publish(took))
        with self._lock:
            for r in records:
                self.deliveries[(r.topic, "ok")] += 1
                if r.topic == self.dlq_topic:
                    reason = dict(r.headers).get("dlq.reason", b"unknown").decode(errors="replace")
                    self.dlq[reason] += 1
                elif r.topic == self.health_topic:
                    try:
                        view = orjson.loads(r.value)
                        self.health[view["system"]] = (view["health"], view.get("max_risk"))
                    except (ValueError, TypeError, KeyError):
                        pass

    def close(self, timeout_s: float = 10.0) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close(timeout_s)


class WorkerCollector(Collector):
    """The worker's metrics at scrape time (names shared with the API's ``/metrics``)."""

    def __init__(self, worker: Any, sink: MeteredSink | None) -> None:
        self.worker = worker
        self.sink = sink

    def collect(self) -> Any:
        from serve.metrics import StatusCollector

        worker, sink = self.worker, self.sink
        feed = worker.feed
        idle = feed.idle_s()
        reasons = feed.not_ready()
        status: dict[str, Any] = {
            "ready": not reasons,
            "conditions": feed.conditions(),
            "input_idle_s": idle,
            "consumer_lag": feed.lag,
            "input_records": feed.records,
            "worker_alive": feed.worker_alive,
        }
        if sink is not None:
            status.update(sink.status())
        c = CounterMetricFamily(
            "precovery_worker_records", "Stream worker counters", labels=["counter"]
        )
        for name, value in sorted(worker.counters.items()):
            c.add_metric([name], value)
        yield c
        backend = _Status(status, sink.latency if sink is not None else None)
        for family in StatusCollector(backend, getattr(worker, "notifier", None)).collect():
            if family.name in _SKIP:
                continue
            yield family


#: The API's families that mean nothing for a worker (they need the engine's counters).
_SKIP = {
    "precovery_events",
    "precovery_rejects",
    "precovery_recommendations",
    "precovery_risk_scored",
    "precovery_entities",
}


class _Status:
    def __init__(self, status: dict[str, Any], latency: StageLatency | None) -> None:
        self._status = status
        if latency is not None:
            self.latency = latency

    def status(self) -> dict[str, Any]:
        return self._status


def create_ops_app(worker: Any, sink: MeteredSink | None = None) -> FastAPI:
    """``/healthz``, ``/readyz`` and ``/metrics`` of a :class:`KafkaStreamWorker`."""
    app = FastAPI(title="Precovery stream worker (ops)", docs_url=None, redoc_url=None)
    registry = CollectorRegistry()
    registry.register(WorkerCollector(worker, sink))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok", "worker_alive": worker.feed.worker_alive}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Readiness from the worker's feed monitor, every failing reason named."""
        feed = worker.feed
        reasons = feed.not_ready()
        idle = feed.idle_s()
        body = {
            "status": "not_ready" if reasons else "ready",
            "reasons": reasons,
            "conditions": feed.conditions(),
            "input_idle_s": None if idle is None else round(idle, 3),
            "consumer_lag": feed.lag,
        }
        return JSONResponse(body, status_code=503 if reasons else 200)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    return app


class OpsServer:
    """The ops app under uvicorn in a daemon thread."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, name="ops-http", daemon=True)
        self.sink: MeteredSink | None = None

    def start(self, timeout_s: float = 10.0) -> OpsServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        logger.info("ops port: /metrics /healthz /readyz on %s", self.port)
        return self

    @property
    def port(self) -> int | None:
        for srv in getattr(self.server, "servers", []) or []:
            for sock in srv.sockets:
                return int(sock.getsockname()[1])
        return None

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5.0)
        if self.sink is not None:
            self.sink.close()


def start_ops(worker: Any, host: str, port: int) -> OpsServer:
    """Meter ``worker``'s sink and serve its ops app on ``host:port`` (0: any free port).

    Wraps ``worker.sink`` in a :class:`MeteredSink` (the worker still owns and closes
    the inner sink).
    """
    topics = worker.topics
    sink = MeteredSink(worker.sink, topics.health, topics.dlq)
    worker.sink = sink
    ops = OpsServer(create_ops_app(worker, sink), host, port)
    ops.sink = sink if worker.owns_sink else None  # the worker closes only its own
    return ops.start()
