"""The loop's settings and what one step of it returns (:mod:`predictor.engine`).

Kept apart from the engine so that a reader of the knobs need not read the loop, and the
edges can build a configuration without importing the loop's machinery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from predictor.contracts import DEFAULT_METRICS
from predictor.events import Reject
from predictor.features import FeatureState
from predictor.market import CostConfig
from predictor.policy import PolicyConfig
from predictor.topology import Topology

#: Engine-level features after the per-entity ones. Market context (session, volatility)
#: is deliberately *not* a model feature: training files carry telemetry only, and a
#: feature the stream has but training lacks would break train/serve parity.
EXTRA_FEATURES = ("anomaly_score",)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Knobs of the loop; every duration in seconds.

    Attributes
    ----------
    metric_names
        Metrics tracked per entity (the model declares the ones it was trained on).
    detector
        Online detector: ``surprise`` (vectorised, calibrated bits; default) or
        ``surprise_hst`` (with river's HalfSpaceTrees); the model records the one it was
        trained with.
    heartbeat_interval_s, heartbeat_misses
        Expected telemetry interval and how many missed ones mean failure now.
    risk_cadence_s
        Event time between two risk scorings of an entity (0: every event).
    risk_on_anomaly
        An anomaly score at or above this re-scores risk at once (0.4286 = 12 bits of
        surprise, ``score_from_bits(ALARM_BITS)``: about one normal row in 4,096).
    tick_s
        Event time between two decision rounds.
    late_tolerance_s
        An event older than its entity's last one by more than this is ``out_of_order``.
    max_future_skew_s
        An event newer than the batch's median time by more than this (plus the batch's
        own spread below its median) is rejected as ``future_timestamp``; so is one
        beyond the watermark by more than this unless at least three entities of its
        batch (or half of those known, if fewer) are there too.
    max_entities
        Hosts tracked at most; more are rejected with ``entity_capacity``.
    hold_s
        A lower action must hold this long before a recommendation de-escalates; after a
        failover, only ``none`` or ``watch`` (the risk has cleared) de-escalates.
    confirm_s
        A forecast failover must be proposed this long (two risk scorings at the default
        cadence) before it is recommended; until then it is ``prepare_standby``. The
        heartbeat rule is never delayed.
    default_horizon_s
        Horizon H used when no model is loaded.
    top_reasons
        Reasons given per recommendation.
    report_every_s
        Event time between two situation reports of a system at ``prepare_standby`` or
        worse (:mod:`predictor.sitrep`); 0: none.
    policy, costs
        Risk thresholds and stale-context bounds; the dollar cost model's parameters
        (docs/decisions.md lists every one with its unit and default).
    topology
        Declared systems: criticality, venues, sites, authority (empty: the defaults).
    """

    metric_names: tuple[str, ...] = DEFAULT_METRICS
    detector: str = "surprise"
    heartbeat_interval_s: float = 10.0
    heartbeat_misses: int = 3
    risk_cadence_s: float = 60.0
    risk_on_anomaly: float = 12.0 / 28.0
    tick_s: float = 10.0
    late_tolerance_s: float = 60.0
    max_future_skew_s: float = 300.0
    max_entities: int = 200_000
    hold_s: float = 300.0
    confirm_s: float = 60.0
    default_horizon_s: float = 1800.0
    top_reasons: int = 3
    report_every_s: float = 300.0
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    costs: CostConfig = field(default_factory=CostConfig)
    topology: Topology = field(default_factory=Topology)


@dataclass(slots=True)
class StepResult:
    """What one call of :meth:`Engine.process` produced.

    ``anomaly``, ``risk`` and ``health`` have one value per *accepted* row, aligned with
    ``index`` (positions in the input batch); ``features`` too when collected.
    """

    index: np.ndarray
    anomaly: np.ndarray
    risk: np.ndarray
    health: np.ndarray
    rejects: list[Reject]
    recommendations: list[dict[str, Any]]
    features: np.ndarray | None = None
    keys: list[tuple[str, str, str]] = field(default_factory=list)
    ts_ms: np.ndarray | None = None


def feature_names(metric_names: Sequence[str] = DEFAULT_METRICS) -> list[str]:
    """Columns the risk model sees, in order (the stream's and training's alike)."""
    return FeatureState(metric_names, capacity=1).feature_names + list(EXTRA_FEATURES)
