"""Failure modes, benign anomalies and the episode schedule of the simulated fleet.

A *failure* episode has a precursor that builds up from ``onset_at_ms`` to
``failure_at_ms``, then an outage until ``resolved_at_ms``: the host either goes silent
(``crash``, ``partition``, ``unresponsive``) or keeps emitting extreme values (``stall``,
``stale``). Every outage is an incident. A *benign* episode disturbs some of the same
metrics but never ends in failure; precursors differ from it in persistence and trend.

One module per concept; this one re-exports every name, so callers import from
``predictor.sim.episodes`` whichever module holds the code:

- :mod:`~predictor.sim.modes`: the failure modes and benign kinds, :class:`Episode`
  (ground truth) and :class:`ScheduledFailure` (an explicit injection);
- :mod:`~predictor.sim.schedule`: :class:`Schedule`, the episodes drawn one simulated
  day at a time;
- :mod:`~predictor.sim.effects`: :func:`apply_episode`, what an episode does to the
  noise-free metric levels.

>>> sorted(FAILURE_MODES)[:3]
['cpu_runaway', 'db_lock_contention', 'disk_filling']
>>> FAILURE_MODES["memory_leak"].outcome
'crash'
"""

from __future__ import annotations

from predictor.sim.effects import apply_episode
from predictor.sim.modes import (
    BENIGN_KINDS,
    FAILURE_MODES,
    OPEN_BURST_KINDS,
    BenignSpec,
    Episode,
    ModeSpec,
    ScheduledFailure,
)
from predictor.sim.schedule import Schedule

__all__ = [
    "BENIGN_KINDS",
    "FAILURE_MODES",
    "OPEN_BURST_KINDS",
    "BenignSpec",
    "Episode",
    "ModeSpec",
    "Schedule",
    "ScheduledFailure",
    "apply_episode",
]
