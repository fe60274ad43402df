"""Factories for the tests: events, incidents, market states, positions, simulated streams.

Everything here is plain data built from a few keyword arguments with sensible defaults,
so a test states only what matters to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from predictor.events import TelemetryBatch, decode_telemetry, ms_to_iso
from predictor.labels import Incident
from predictor.market import Exposure, MarketArrays
from predictor.sim import ScheduledFailure, SimConfig, Simulator, telemetry_events

#: Monday 2026-01-05 00:00:00 UTC, epoch ms (the simulator's default origin).
T0_MS = 1_767_571_200_000
INTERVAL_MS = 10_000

Key = tuple[str, str, str]


# -- telemetry.v1 ------------------------------------------------------------------------
def telemetry_event(
    ts: int | str = T0_MS,
    system: str = "sys-a",
    component: str = "comp-a",
    host: str = "host-a",
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One telemetry.v1 object."""
    return {
        "ts": ts,
        "system": system,
        "component": component,
        "host": host,
        "metrics": {"cpu_pct": 20.0, "mem_pct": 40.0} if metrics is None else metrics,
    }


def telemetry_bytes(**kw: Any) -> bytes:
    """One telemetry.v1 message as JSON bytes."""
    return orjson.dumps(telemetry_event(**kw))


def steady_stream(
    keys: Sequence[Key],
    steps: int,
    start_ms: int = T0_MS,
    interval_ms: int = INTERVAL_MS,
    seed: int = 0,
    metrics: Sequence[str] = ("cpu_pct", "mem_pct"),
    level: float = 30.0,
    noise: float = 1.0,
) -> list[dict[str, Any]]:
    """Healthy telemetry of ``keys``, one event per key per step, time-ordered."""
    rng = np.random.default_rng(seed)
    out = []
    for step in range(steps):
        ts = start_ms + step * interval_ms
        for system, component, host in keys:
            values = {m: float(level + noise * rng.standard_normal()) for m in metrics}
            out.append(telemetry_event(ts, system, component, host, values))
    return out


def decode(events: Sequence[dict[str, Any] | bytes], metric_names: Sequence[str]) -> TelemetryBatch:
    """``decode_telemetry`` with the arguments the tests use."""
    return decode_telemetry(list(events), tuple(metric_names))


# -- market.v1 / positions.v1 ------------------------------------------------------------
def market_state(
    venue: str = "XNYS",
    ts: int | str = T0_MS,
    session: str = "continuous",
    event_risk: bool = False,
    volatility_bps_per_min: float = 2.0,
    spread_bps: float = 1.0,
    depth_usd: float = 5e6,
) -> dict[str, Any]:
    """One market.v1 object."""
    return {
        "ts": ts,
        "venue": venue,
        "volatility_bps_per_min": volatility_bps_per_min,
        "spread_bps": spread_bps,
        "depth_usd": depth_usd,
        "session": session,
        "event_risk": event_risk,
    }


def position(
    system: str = "sys-a",
    venue: str = "XNYS",
    ts: int | str = T0_MS,
    net_notional_usd: float = 10e6,
    gross_notional_usd: float = 40e6,
    open_orders: int = 100,
) -> dict[str, Any]:
    """One positions.v1 object."""
    return {
        "ts": ts,
        "system": system,
        "venue": venue,
        "net_notional_usd": net_notional_usd,
        "gross_notional_usd": gross_notional_usd,
        "open_orders": open_orders,
    }


def market_arrays(
    volatility_bps_per_min: float = 2.0,
    spread_bps: float = 1.0,
    depth_usd: float = 5e6,
    session: str = "continuous",
    event_risk: bool = False,
) -> MarketArrays:
    """A one-row :class:`MarketArrays`."""
    return MarketArrays.single(volatility_bps_per_min, spread_bps, depth_usd, session, event_risk)


def exposure(net_usd: float = 10e6, gross_usd: float = 40e6, open_orders: float = 100) -> Exposure:
    """A one-row :class:`Exposure`."""
    return Exposure.single(net_usd, gross_usd, open_orders)


# -- incidents ---------------------------------------------------------------------------
def incident(
    system: str = "sys-a",
    component: str = "comp-a",
    host: str | None = None,
    started_ms: int = T0_MS + 3_600_000,
    resolved_ms: int | None = T0_MS + 3_600_000 + 1_200_000,
    kind: str = "crash",
    incident_id: str = "INC-1",
) -> Incident:
    """One :class:`Incident`."""
    return Incident(system, component, host, started_ms, resolved_ms, kind, incident_id)


def incident_record(
    system: str = "sys-a",
    component: str = "comp-a",
    host: str | None = None,
    started_ms: int = T0_MS + 3_600_000,
    resolved_ms: int | None = T0_MS + 3_600_000 + 1_200_000,
    severity: str = "P1",
    kind: str = "crash",
    incident_id: str = "INC-1",
) -> dict[str, Any]:
    """One incident as in the history contract (RFC 3339 strings)."""
    return {
        "incident_id": incident_id,
        "system": system,
        "component": component,
        "host": host or "",
        "started_at": ms_to_iso(started_ms),
        "resolved_at": ms_to_iso(resolved_ms) if resolved_ms is not None else "",
        "severity": severity,
        "kind": kind,
        "summary": f"{kind} on {system}/{component}",
    }


# -- simulated streams -------------------------------------------------------------------
@dataclass(slots=True)
class SimStream:
    """A short simulated stream with its context and ground truth."""

    sim: Simulator
    events: list[dict[str, Any]]
    market: list[dict[str, Any]] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def critical(self) -> dict[tuple[str, str], bool]:
        return {(s.name, c.name): c.critical for s in self.sim.fleet.systems for c in s.components}


def sim_stream(
    hours: float,
    seed: int = 5,
    scheduled: Iterable[ScheduledFailure] = (),
    hosts_per_component: int | None = 1,
    failures_per_day: float = 0.0,
    benign_per_day: float = 0.0,
) -> SimStream:
    """``hours`` of a (small) simulated fleet as telemetry.v1 dicts, plus context."""
    sim = Simulator(
        SimConfig(
            seed=seed,
            failures_per_day=failures_per_day,
            benign_per_day=benign_per_day,
            hosts_per_component=hosts_per_component,
            scheduled=tuple(scheduled),
        )
    )
    out = SimStream(sim, [])
    for chunk in sim.iter_chunks(hours, chunk_s=600.0):
        out.events.extend(telemetry_events(chunk.telemetry))
        out.market.extend(chunk.market)
        out.positions.extend(chunk.positions)
    return out


def failure_at(
    seconds: float,
    system: str = "eq-oms",
    component: str = "order-gateway",
    mode: str = "cpu_runaway",
    lead_s: float = 600.0,
) -> ScheduledFailure:
    """A scheduled failure whose host goes silent ``seconds`` after the simulation start."""
    return ScheduledFailure(mode, system, component, None, seconds, lead_s)


# -- poison: bytes that once stopped a worker ------------------------------------------------
#: Messages every input topic must dead-letter (never raise): name -> bytes. Each is under
#: the 64 KiB message limit, so it reaches the decoder.
POISON: dict[str, bytes] = {
    "nesting_bomb": b"[" * 1100 + b"]" * 1100,
    "object_bomb": b'{"a":' * 1100 + b"1" + b"}" * 1100,
    "nan_in_bomb": b"[" * 1100 + b"NaN" + b"]" * 1100,
    "invalid_utf8": b'{"ts": "\xff\xfe", "system": "\xc3\x28"}',
    "junk_60k": b"x" * (60 * 1024),
    "array": b"[1, 2, 3]",
    "null": b"null",
    "string": b'"telemetry"',
    "empty": b"",
}
