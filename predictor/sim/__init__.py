"""A deterministic, seeded simulated trading fleet.

Pure numpy/pandas: the :class:`Simulator` yields telemetry, positions and market state
in chunks, plus ground truth (episodes and incidents); :func:`write_dataset` is the one
function here that touches files.

>>> sim = Simulator(SimConfig(seed=3))
>>> len(sim.fleet.entities)
38
"""

from __future__ import annotations

from predictor.sim.episodes import (
    BENIGN_KINDS,
    FAILURE_MODES,
    Episode,
    ScheduledFailure,
)
from predictor.sim.fleet import ComponentSpec, Entity, Fleet, SystemSpec, build_fleet
from predictor.sim.generator import (
    METRICS,
    SimChunk,
    SimConfig,
    Simulator,
    telemetry_events,
    write_dataset,
)
from predictor.sim.market import SESSIONS, next_session_change, session_at

__all__ = [
    "BENIGN_KINDS",
    "FAILURE_MODES",
    "METRICS",
    "SESSIONS",
    "ComponentSpec",
    "Entity",
    "Episode",
    "Fleet",
    "ScheduledFailure",
    "SimChunk",
    "SimConfig",
    "Simulator",
    "SystemSpec",
    "build_fleet",
    "next_session_change",
    "session_at",
    "telemetry_events",
    "write_dataset",
]
