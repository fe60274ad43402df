"""The demo's script and what a run saw: settings, scripted failures, the tally.

:class:`DemoConfig` is ``precovery demo``'s settings; :func:`demo_schedule` places the
failures inside the live window so that a one-minute run shows some; :class:`DemoRun`
keeps what the views and the summary need (bounded tails, the ground truth), and
:func:`summarize` compares the failovers recommended with the simulator's ground truth.

>>> plan = demo_schedule(warmup_s=7200.0, live_sim_s=3600.0)
>>> [(f.mode, f.failure_at_s) for f in plan][:2]
[('cpu_runaway', 7920.0), ('disk_filling', 8460.0)]
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from pipelines.embedded.live import LiveState
from pipelines.embedded.memory import MemorySink, MemorySource
from predictor.engine import EngineConfig
from predictor.events import ms_to_iso, parse_ts
from predictor.sim import ScheduledFailure, Simulator

__all__ = ["DEMO_START", "DemoConfig", "DemoRun", "demo_schedule", "summarize"]

DEMO_START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday; live from 14:00, the NYSE open


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """Settings of ``precovery demo``.

    Attributes
    ----------
    duration_s
        Wall-clock seconds of the live part; 0 runs until interrupted (Ctrl-C).
    speed
        Simulated seconds per wall second in the live part.
    seed
        Simulator seed.
    warmup_s
        Simulated history replayed first, as fast as possible (baselines need it).
    host, port
        Where the API listens (port 0: pick a free one).
    bad_every
        Every ``bad_every``-th message is replaced by a malformed one (0: never).
    engine
        The loop's settings (heartbeat, ticks, cadence; ``Settings`` in the CLI).
    failover_on_feed_loss
        See :class:`pipelines.embedded.stream.StreamWorker`.
    alert_interval_s
        With a notifier: how often (wall s) alerts are synced with Alertmanager.
    json
        Print each recommendation as a recommendations.v1 JSON line on stdout instead of
        the live view.
    """

    duration_s: float = 60.0
    speed: float = 60.0
    seed: int = 7
    warmup_s: float = 7200.0
    host: str = "127.0.0.1"
    port: int = 8000
    bad_every: int = 997
    json: bool = False
    engine: EngineConfig = field(default_factory=EngineConfig)
    failover_on_feed_loss: bool = False
    alert_interval_s: float = 5.0
    #: API guard and feedback store (serve.gates.Security, pipelines.records.feedback); mode line
    security: Any = None
    feedback: Any = None
    api_mode: str = "open on loopback"


def demo_schedule(warmup_s: float, live_sim_s: float) -> tuple[ScheduledFailure, ...]:
    """Failures placed inside the live window: (mode, where, when as a share, precursor s).

    A mix of slow precursors the model foresees well (disk filling, a memory leak, DB
    lock contention) and fast ones it often sees late or not at all (CPU runaway, feed
    lag): the demo shows both, with their lead times against the ground truth.
    """
    plan = [
        ("cpu_runaway", "eq-oms", "matching-engine", 0.2, 480.0),
        ("disk_filling", "eq-oms", "database", 0.35, 4200.0),
        ("db_lock_contention", "fx-pricing", "database", 0.5, 1200.0),
        ("feed_lag", "md-feed", "feed-handler", 0.65, 600.0),
        ("memory_leak", "eq-oms", "order-gateway", 0.85, 2700.0),
    ]
    return tuple(
        ScheduledFailure(
            mode, system, component, None, failure_at_s=warmup_s + at * live_sim_s, lead_s=lead
        )
        for mode, system, component, at, lead in plan
    )


@dataclass
class DemoRun:
    """What a demo run saw; :func:`summarize` compares it with the ground truth."""

    sim: Simulator
    live: LiveState
    source: MemorySource
    sink: MemorySink
    started_wall: float = field(default_factory=time.monotonic)
    #: The newest recommendations, for the live view (bounded: the demo can run for days).
    recommendations: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=200))
    #: Recommendations not yet printed (off a terminal); bounded like the rest.
    to_print: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))
    #: Failover recommendations, for the summary against the ground truth.
    failovers: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))
    n_recommendations: int = 0
    fed: int = 0
    bad_fed: int = 0
    done_feeding: threading.Event = field(default_factory=threading.Event)

    def lead_time_s(self, rec: dict[str, Any]) -> float | None:
        """Seconds from the recommendation to the failure it foresaw (ground truth)."""
        issued = parse_ts(rec["issued_at"])
        for ep in self.failures:
            if (
                ep.failure
                and ep.failure_at_ms is not None
                and ep.system == rec["system"]
                and ep.component == rec["component"]
                and ep.onset_at_ms - 600_000 <= issued <= (ep.resolved_at_ms or ep.failure_at_ms)
            ):
                return (ep.failure_at_ms - issued) / 1000.0
        return None

    hours: float = 1.0

    def note(self, recs: list[dict[str, Any]]) -> None:
        """Keep what the views and the summary need of a batch's recommendations."""
        self.n_recommendations += len(recs)
        self.recommendations.extend(recs)
        for rec in recs:
            if rec["action"] in ("prepare_standby", "failover_at_window", "failover_now"):
                self.to_print.append(rec)
            if rec["action"] in ("failover_at_window", "failover_now"):
                self.failovers.append(rec)

    @cached_property
    def failures(self) -> list[Any]:
        """Ground-truth failure episodes of the whole run (computed once)."""
        return [ep for ep in self.sim.episodes(self.hours) if ep.failure]


def summarize(run: DemoRun) -> dict[str, Any]:
    status = run.live.status()
    acts = list(run.failovers)
    now_ms = status["watermark"] or run.sim.start_ms
    failures = [
        ep
        for ep in run.failures
        if ep.failure_at_ms is not None
        and ep.failure_at_ms <= now_ms
        and ep.failure_at_ms >= run.sim.start_ms + 1_800_000
    ]
    leads: list[float] = []
    for ep in failures:
        before = [
            parse_ts(r["issued_at"])
            for r in acts
            if r["system"] == ep.system
            and r["component"] == ep.component
            and ep.onset_at_ms - 600_000 <= parse_ts(r["issued_at"]) < ep.failure_at_ms
        ]
        if before:
            leads.append((ep.failure_at_ms - min(before)) / 1000.0)
    false = sum(1 for r in acts if run.lead_time_s(r) is None)
    return {
        "events": status["counters"]["events"],
        "rejected": status["counters"]["rejected"],
        "reject_reasons": status["reject_reasons"],
        "recommendations": run.n_recommendations,
        "failovers_recommended": len(acts),
        "failures_in_run": len(failures),
        "failures_foreseen": len(leads),
        "lead_times_s": sorted(leads),
        "false_failovers": false,
        "sim_until": ms_to_iso(now_ms),
    }
