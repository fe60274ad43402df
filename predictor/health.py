"""Health, 0-100, per host, component and system. 100 means nothing unusual.

- host: ``100 · (1 - max(risk_term, anomaly_term))``; 0 once the heartbeat rule fires.

  - ``anomaly_term = anomaly_weight · clip((S - TAIL_BITS) / (FULL_BITS - TAIL_BITS), 0, 1)``
    where ``S`` is the anomaly's surprise in bits (:mod:`predictor.detectors.calibration`):
    nothing below 16 bits (one normal row in 65,536: at one event per 10 s, a host crosses
    it by chance about once a week), falling linearly to ``100 · (1 - anomaly_weight)``
    = 50 at 48 bits and beyond.
  - ``risk_term = clip((risk - RISK_FLOOR) / (1 - RISK_FLOOR), 0, 1)``: a forecast
    probability of failure within the horizon below ``RISK_FLOOR`` (0.2, the policy's
    ``watch`` threshold: below it the recommendation is ``none``) is background and costs
    nothing; above, health falls linearly to 0 at certainty. Without a model (NaN risk)
    the term is left out.
- component: the worst of its hosts (a component is as healthy as its sickest host: the
  orchestrator fails the component over, not one host).
- system: the worst of its *critical* components, but never above the mean of all of
  them, so a pile of sick non-critical parts still shows.

>>> import numpy as np
>>> from predictor.detectors.calibration import score_from_bits
>>> a = score_from_bits(np.array([5.0, 32.0, 60.0]))  # ordinary, in the tail, far out
>>> host_health(np.array([0.1, np.nan, 0.6]), a, np.zeros(3, dtype=bool)).round(1).tolist()
[100.0, 75.0, 50.0]
"""

from __future__ import annotations

import math

import numpy as np

from predictor.detectors.calibration import HALF_BITS, bits_from_score
from predictor.jit import kernel

ANOMALY_WEIGHT = 0.5
#: Surprise (bits) below which an anomaly costs no health.
TAIL_BITS = HALF_BITS
#: Surprise (bits) at which the anomaly term reaches its full weight.
FULL_BITS = 48.0
#: Risk below this is background, not evidence (the policy's ``watch`` threshold).
RISK_FLOOR = 0.2


def anomaly_term(anomaly: np.ndarray, anomaly_weight: float = ANOMALY_WEIGHT) -> np.ndarray:
    """The anomaly's share of lost health: 0 below :data:`TAIL_BITS` of surprise."""
    bits = bits_from_score(np.nan_to_num(np.asarray(anomaly, dtype=np.float64)))
    return np.asarray(
        anomaly_weight * np.clip((bits - TAIL_BITS) / (FULL_BITS - TAIL_BITS), 0.0, 1.0)
    )


def risk_term(risk: np.ndarray) -> np.ndarray:
    """The forecast's share of lost health: 0 below :data:`RISK_FLOOR`."""
    r = np.nan_to_num(np.asarray(risk, dtype=np.float64), nan=0.0)
    return np.asarray(np.clip((r - RISK_FLOOR) / (1.0 - RISK_FLOOR), 0.0, 1.0))


def host_health(
    risk: np.ndarray, anomaly: np.ndarray, dead: np.ndarray, anomaly_weight: float = ANOMALY_WEIGHT
) -> np.ndarray:
    """Per-host health in [0, 100] (formula in the module docstring; one compiled pass,
    pinned to :func:`risk_term` and :func:`anomaly_term` by ``tests/unit/test_health.py``)."""
    out = np.empty(len(risk))
    _host_health(
        np.ascontiguousarray(risk, dtype=np.float64),
        np.ascontiguousarray(anomaly, dtype=np.float64),
        np.ascontiguousarray(dead, dtype=np.bool_),
        float(anomaly_weight),
        out,
    )
    return out


@kernel
def _host_health(risk, anomaly, dead, anomaly_weight, out):  # type: ignore[no-untyped-def]
    for i in range(risk.shape[0]):
        if dead[i]:
            out[i] = 0.0
            continue
        r = risk[i]  # risk_term: NaN (no model) counts 0; ±inf clip to 1 and 0
        r = 0.0 if math.isnan(r) else r
        r_term = min(max((r - RISK_FLOOR) / (1.0 - RISK_FLOOR), 0.0), 1.0)
        a = anomaly[i]  # anomaly_term: the score back to bits (bits_from_score)
        a = 0.0 if math.isnan(a) else min(max(a, 0.0), 1.0)
        bits = HALF_BITS * a / max(1.0 - a, 1e-300) if a < 1.0 else math.inf
        a_term = anomaly_weight * min(max((bits - TAIL_BITS) / (FULL_BITS - TAIL_BITS), 0.0), 1.0)
        badness = max(r_term, a_term)
        out[i] = 100.0 * (1.0 - min(max(badness, 0.0), 1.0))


def roll_up_min(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Minimum of ``values`` per group; groups without members get 100.

    >>> roll_up_min(np.array([80.0, 30.0, 95.0]), np.array([0, 0, 1]), 3).tolist()
    [30.0, 95.0, 100.0]
    """
    out = np.full(n_groups, 100.0)
    np.minimum.at(out, groups, values)
    return out


def roll_up_risk(
    risk: np.ndarray, dead: np.ndarray, groups: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the riskiest live member's risk (NaN: none scored), and whether any
    member is dead (the heartbeat rule).

    >>> r, d = roll_up_risk(np.array([0.3, 0.9, np.nan]), np.array([False, True, False]),
    ...                     np.array([0, 0, 1]), 3)
    >>> r.tolist(), d.tolist()
    ([0.3, nan, nan], [True, False, False])
    """
    out = np.full(n_groups, -np.inf)
    live = ~dead & ~np.isnan(risk)
    np.maximum.at(out, groups[live], risk[live])
    out[np.isinf(out)] = np.nan
    any_dead = np.zeros(n_groups, dtype=bool)
    any_dead[groups[dead]] = True
    return out, any_dead


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
