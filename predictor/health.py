"""Health, 0-100, per host, component and system.

- host: ``100 · (1 - max(risk, anomaly_weight · anomaly))``; 0 once the heartbeat rule
  fires. Without a model the risk term is left out.
- component: the worst of its hosts (a component is as healthy as its sickest host: the
  orchestrator fails the component over, not one host).
- system: the worst of its *critical* components, but never above the mean of all of
  them, so a pile of sick non-critical parts still shows.

>>> import numpy as np
>>> host_health(np.array([0.1, np.nan]), np.array([0.2, 0.9]), np.array([False, False]))
array([90., 55.])
"""

from __future__ import annotations

import numpy as np

ANOMALY_WEIGHT = 0.5


def host_health(
    risk: np.ndarray, anomaly: np.ndarray, dead: np.ndarray, anomaly_weight: float = ANOMALY_WEIGHT
) -> np.ndarray:
    """Per-host health in [0, 100]."""
    badness = np.fmax(np.nan_to_num(risk, nan=0.0), anomaly_weight * np.nan_to_num(anomaly))
    h = 100.0 * (1.0 - np.clip(badness, 0.0, 1.0))
    return np.where(dead, 0.0, h)


def roll_up_min(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Minimum of ``values`` per group; groups without members get 100.

    >>> roll_up_min(np.array([80.0, 30.0, 95.0]), np.array([0, 0, 1]), 3).tolist()
    [30.0, 95.0, 100.0]
    """
    out = np.full(n_groups, 100.0)
    np.minimum.at(out, groups, values)
    return out


def system_health(
    comp_health: np.ndarray, comp_system: np.ndarray, critical: np.ndarray, n_systems: int
) -> np.ndarray:
    """Roll components up to systems: min over critical ones, capped by the mean of all.

    >>> system_health(np.array([90.0, 20.0, 100.0]), np.array([0, 0, 0]),
    ...               np.array([True, False, False]), 1).tolist()
    [70.0]
    """
    worst_critical = np.full(n_systems, 100.0)
    np.minimum.at(worst_critical, comp_system[critical], comp_health[critical])
    total = np.bincount(comp_system, weights=comp_health, minlength=n_systems)
    count = np.bincount(comp_system, minlength=n_systems)
    mean = np.where(count > 0, total / np.maximum(count, 1), 100.0)
    return np.minimum(worst_critical, mean)
