"""A deterministic, seeded simulated trading fleet.

Pure numpy/pandas, a subpackage of the core that shares its contracts
(:mod:`predictor.contracts`: metric and session names): the :class:`Simulator` yields
telemetry, positions and market state in chunks, plus ground truth (episodes and
incidents), as a function of its seed and of event time — no clock, no files. Writing a
simulated history to files is an edge: :func:`pipelines.files.ports.write_dataset`.

Why a subpackage and not a package of its own: the simulator is the embedded default's
input and the tests' fixture, it must speak exactly the wire formats the core decodes,
and it has no dependency the core lacks; a separate distribution would only add a
version to keep in step.

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
]
