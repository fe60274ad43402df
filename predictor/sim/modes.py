"""What can happen to a simulated host: failure modes, benign anomalies, and an episode.

A :class:`ModeSpec` names a failure mode's outcome, whether the host goes silent and its
precursor's lead-time range; a :class:`BenignSpec` a benign anomaly's duration and the
component kinds it hits. An :class:`Episode` is the ground truth of one occurrence, a
:class:`ScheduledFailure` an explicit injection. The schedule that draws episodes is
:mod:`predictor.sim.schedule`, their effect on telemetry :mod:`predictor.sim.effects`.

>>> FAILURE_MODES["disk_filling"].lead_s
(3600.0, 10800.0)
>>> Episode("spike", False, "eq-oms", "database", "db-1", 0, None, 60_000).end_at_ms
60000
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BENIGN_KINDS",
    "FAILURE_MODES",
    "OPEN_BURST_KINDS",
    "BenignSpec",
    "Episode",
    "ModeSpec",
    "ScheduledFailure",
]


@dataclass(frozen=True)
class ModeSpec:
    """A failure mode: its outcome, whether the host goes silent, its lead-time range."""

    name: str
    outcome: str
    silent: bool
    lead_s: tuple[float, float]
    kinds: tuple[str, ...]


@dataclass(frozen=True)
class BenignSpec:
    """A benign anomaly: its duration range, the kinds it hits, its relative weight."""

    name: str
    duration_s: tuple[float, float]
    kinds: tuple[str, ...]
    weight: float


_ALL = (
    "order-gateway",
    "risk-engine",
    "matching-engine",
    "pricing-engine",
    "feed-handler",
    "normalizer",
    "publisher",
    "database",
    "reporting",
)
_APPS = tuple(k for k in _ALL if k != "database")

#: Failure modes by name.
FAILURE_MODES: dict[str, ModeSpec] = {
    m.name: m
    for m in (
        ModeSpec("memory_leak", "crash", True, (1800.0, 5400.0), _APPS),
        ModeSpec("db_lock_contention", "stall", False, (600.0, 1500.0), ("database",)),
        ModeSpec("network_degradation", "partition", True, (300.0, 1200.0), _ALL),
        ModeSpec("feed_lag", "stale", False, (300.0, 900.0), ("feed-handler", "normalizer")),
        ModeSpec("disk_filling", "crash", True, (3600.0, 10800.0), _ALL),
        ModeSpec("cpu_runaway", "unresponsive", True, (180.0, 720.0), _ALL),
    )
}

#: Benign anomalies drawn at random (``market_open_burst`` is seasonal, see below).
BENIGN_KINDS: dict[str, BenignSpec] = {
    b.name: b
    for b in (
        BenignSpec("deploy", (240.0, 480.0), _APPS, 0.25),
        BenignSpec("batch_job", (900.0, 2400.0), ("database", "risk-engine"), 0.2),
        BenignSpec("cache_warmup", (600.0, 1800.0), _APPS, 0.15),
        BenignSpec("network_blip", (60.0, 240.0), _ALL, 0.15),
        BenignSpec("spike", (0.0, 0.0), _ALL, 0.25),
    )
}

#: Component kinds whose load rises at the venue's open (``market_open_burst``).
OPEN_BURST_KINDS: tuple[str, ...] = (
    "order-gateway",
    "matching-engine",
    "risk-engine",
    "pricing-engine",
    "feed-handler",
    "normalizer",
    "publisher",
)


@dataclass(frozen=True)
class Episode:
    """Ground truth for one failure or benign anomaly.

    Parameters
    ----------
    kind : str
        Failure mode (:data:`FAILURE_MODES`) or benign kind (:data:`BENIGN_KINDS`,
        ``market_open_burst``).
    failure : bool
        Whether it ends in an outage (an incident).
    system, component : str
        Where it happens.
    host : str or None
        The host; None for component-wide seasonal episodes (``market_open_burst``).
    onset_at_ms : int
        When the precursor (or the benign disturbance) starts, epoch ms.
    failure_at_ms : int or None
        When the outage starts (failures only).
    resolved_at_ms : int or None
        When the outage ends (failures) or the disturbance ends (benign).
    outcome : str or None
        ``crash``, ``stall``, ``partition``, ``stale`` or ``unresponsive`` (failures).
    silent : bool
        Whether the host stops emitting during the outage.
    magnitude : float
        Intensity factor around 1.
    metric : str or None
        The metric a ``spike`` hits.
    missed_at_ms : int or None
        The one sample a ``deploy`` restart skips, if any.
    """

    kind: str
    failure: bool
    system: str
    component: str
    host: str | None
    onset_at_ms: int
    failure_at_ms: int | None
    resolved_at_ms: int | None
    outcome: str | None = None
    silent: bool = False
    magnitude: float = 1.0
    metric: str | None = None
    missed_at_ms: int | None = None

    @property
    def lead_s(self) -> float | None:
        """Seconds from onset to failure, for failures."""
        if self.failure_at_ms is None:
            return None
        return (self.failure_at_ms - self.onset_at_ms) / 1000.0

    @property
    def end_at_ms(self) -> int:
        """When the episode stops affecting telemetry."""
        return self.resolved_at_ms if self.resolved_at_ms is not None else self.onset_at_ms


@dataclass(frozen=True)
class ScheduledFailure:
    """An explicit failure injection (the demo uses it to force a failure soon).

    Parameters
    ----------
    mode : str
        One of :data:`FAILURE_MODES`.
    system, component : str
        Where to inject it.
    host : str or None
        Which host; None lets the simulator pick one (deterministically).
    failure_at_s : float
        When the outage starts, seconds after the simulation start.
    lead_s : float or None
        Precursor length; None uses the middle of the mode's range.
    recovery_s : float or None
        Outage length; None draws 18-32 min like random failures.
    """

    mode: str
    system: str
    component: str
    host: str | None = None
    failure_at_s: float = 1800.0
    lead_s: float | None = None
    recovery_s: float | None = None
