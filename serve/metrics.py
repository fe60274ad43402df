"""Prometheus metrics of the API process, read from the backend at scrape time."""

from __future__ import annotations

import math
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from pipelines.embedded.live import CONDITIONS, LATENCY_BUCKETS


class StatusCollector(Collector):
    """Reads the backend's status (and the alert notifier's counts) at scrape time."""

    def __init__(self, backend: Any, alerts: Any = None) -> None:
        self.backend = backend
        self.alerts = alerts

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
        d = CounterMetricFamily(
            "precovery_input_drifts",
            "Input drifts detected (river ADWIN), per host with at least one",
            labels=["system", "component", "host"],
        )
        for key, n in sorted(st.get("input_drifts", {}).items()):
            d.add_metric(key.split("/", 2), n)
        yield d
        e = GaugeMetricFamily("precovery_entities", "Hosts tracked")
        e.add_metric([], st.get("entities", 0))
        yield e
        wm = st.get("watermark")
        if wm:
            w = GaugeMetricFamily("precovery_watermark_seconds", "Latest event time, epoch s")
            w.add_metric([], wm / 1000.0)
            yield w
        ready = GaugeMetricFamily("precovery_ready", "1 when /readyz answers 200")
        ready.add_metric([], 1.0 if st.get("ready") else 0.0)
        yield ready
        cond = GaugeMetricFamily(
            "precovery_condition", "1 while the condition is in force", labels=["condition"]
        )
        now = set(st.get("conditions", ()))
        for name in CONDITIONS:
            cond.add_metric([name], 1.0 if name in now else 0.0)
        yield cond
        idle = st.get("input_idle_s")
        if idle is not None:
            i = GaugeMetricFamily(
                "precovery_input_idle_seconds", "Wall-clock seconds since the last input record"
            )
            i.add_metric([], idle)
            yield i
        lag = st.get("consumer_lag")
        if lag is not None:
            lg = GaugeMetricFamily("precovery_consumer_lag_records", "Consumer lag, records")
            lg.add_metric([], lag)
            yield lg
        inp = CounterMetricFamily("precovery_input_records", "Input records polled, count")
        inp.add_metric([], st.get("input_records", 0))
        yield inp
        alive = GaugeMetricFamily("precovery_stream_worker_alive", "1 while the worker runs")
        alive.add_metric([], 1.0 if st.get("worker_alive") else 0.0)
        yield alive
        yield from self._extra(st)

    def _extra(self, st: dict[str, Any]) -> Any:
        risk = GaugeMetricFamily(
            "precovery_system_risk",
            "Highest component P(failure within the horizon), per system",
            labels=["system"],
        )
        for system, value in sorted((st.get("max_risk") or {}).items()):
            if value is not None:
                risk.add_metric([system], value)
        yield risk
        dlq = st.get("dlq_reasons")
        if dlq is not None:
            d = CounterMetricFamily(
                "precovery_dlq_records", "Records sent to the DLQ, by reason", labels=["reason"]
            )
            for reason, n in sorted(dlq.items()):
                d.add_metric([reason], n)
            yield d
        deliveries = st.get("deliveries")
        if deliveries is not None:
            dv = CounterMetricFamily(
                "precovery_deliveries",
                "Output records handed to the sink, by topic and outcome",
                labels=["topic", "outcome"],
            )
            for (topic, outcome), n in sorted(deliveries.items()):
                dv.add_metric([topic, outcome], n)
            yield dv
        latency = getattr(self.backend, "latency", None)
        if latency is not None:
            h = HistogramMetricFamily(
                "precovery_stage_seconds",
                "Worker stage latency per batch: decode, engine (features, detectors, risk "
                "model, decisions), publish",
                labels=["stage"],
            )
            for stage, (counts, total) in latency.snapshot().items():
                cumulative, buckets = 0, []
                for bound, n in zip((*LATENCY_BUCKETS, math.inf), counts, strict=True):
                    cumulative += n
                    buckets.append((_bound(bound), cumulative))
                h.add_metric([stage], buckets, total)
            yield h
        if self.alerts is not None:
            a = CounterMetricFamily(
                "precovery_alerts", "Alertmanager posts by outcome", labels=["outcome"]
            )
            counts = self.alerts.counts
            for outcome in ("posted", "resolved", "failed"):
                a.add_metric([outcome], counts.get(outcome, 0))
            yield a
            f = GaugeMetricFamily("precovery_alerts_firing", "Alerts firing now")
            f.add_metric([], len(self.alerts.firing()))
            yield f


def _bound(b: float) -> str:
    return "+Inf" if math.isinf(b) else repr(b)
