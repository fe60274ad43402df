"""The engine's snapshot: one explicit, versioned part per concept, never a ``__dict__``.

Layout (:data:`SNAPSHOT_VERSION` 2), each part written and read by its owner:

=================  ===========================================================
``registry``       :class:`~predictor.registry.Registry` (who is tracked)
``context``        :class:`~predictor.context.Context` (positions, market, and the
                   records not yet due)
``escalation``     :class:`~predictor.escalation.Escalation` (current actions)
``features``       :class:`~predictor.features.FeatureState`
``detector``       the anomaly detector (:mod:`predictor.detectors`)
``drift``          :class:`~predictor.detectors.drift.DriftWatch`
``sites``          :class:`~predictor.sites.Sites` (active site, failover epochs,
                   the topology)
``reports``        :class:`~predictor.sitrep.Reports` (situation report clocks)
``hosts``          the loop's per-host arrays (:data:`HOST_FILL`)
``components``,    health per component; health and fencing epoch per system
``systems``
``latest_rec``     the latest recommendation per component
``clock``          watermark, last tick, last resumption (event ms)
``counters``,      what went through, and why input was rejected
``reject_reasons``
=================  ===========================================================

Older snapshots of the same version still load: without ``drift`` the drift counts
start at zero, without ``sites`` every system is on its primary site, without
``sites.epoch`` no failover was applied by epoch, without ``reports`` no report clock
runs. A snapshot of another version is refused by name (:func:`opened`).
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

import numpy as np

from predictor.context import Context
from predictor.detectors import Detector
from predictor.detectors.drift import DriftWatch
from predictor.errors import ConfigError
from predictor.escalation import Escalation
from predictor.features import FeatureState
from predictor.registry import Registry, grow
from predictor.sites import Sites
from predictor.sitrep import Reports

#: Version of the engine snapshot's layout (2: one part per concept).
SNAPSHOT_VERSION = 2
#: Event time before any event (ms): a host never scored, a feed never resumed.
NEVER = int(np.iinfo(np.int64).min // 4)
#: The loop's per-host arrays and the value of a new host's row in each.
HOST_FILL: dict[str, float | int | bool] = {
    "risk": np.nan,
    "risk_ts": NEVER,
    "anomaly": 0.0,
    "dead": False,
    "latest": 0.0,
    "host_health": 100.0,
}


class EngineParts(Protocol):
    """What a snapshot holds of the engine (written back by :func:`restore`)."""

    registry: Registry
    context: Context
    escalation: Escalation
    features: FeatureState
    detector: Detector
    drift: DriftWatch
    sites: Sites
    sitreps: Reports
    comp_health: np.ndarray
    sys_health: np.ndarray
    sys_epoch: np.ndarray
    latest_rec: dict[int, dict[str, Any]]
    watermark_ms: int | None
    last_tick_ms: int | None
    resumed_ms: int
    counters: dict[str, int]
    reject_reasons: dict[str, int]


def compose(eng: EngineParts) -> dict[str, Any]:
    """The snapshot of ``eng``: a deep copy, picklable, sharing nothing with it."""
    reg = eng.registry
    n, nc, ns = reg.n_entities, reg.n_components, reg.n_systems
    return copy.deepcopy(
        {
            "version": SNAPSHOT_VERSION,
            "registry": reg.snapshot(),
            "context": eng.context.snapshot(),
            "escalation": eng.escalation.snapshot(nc),
            "features": eng.features.snapshot(),
            "detector": eng.detector.snapshot(),
            "drift": eng.drift.snapshot(),
            "hosts": {name: getattr(eng, name)[:n] for name in HOST_FILL},
            "components": {"health": eng.comp_health[:nc]},
            "systems": {"health": eng.sys_health[:ns], "epoch": eng.sys_epoch[:ns]},
            "sites": eng.sites.snapshot(ns),
            "reports": eng.sitreps.snapshot(ns),
            "latest_rec": eng.latest_rec,
            "clock": {
                "watermark_ms": eng.watermark_ms,
                "last_tick_ms": eng.last_tick_ms,
                "resumed_ms": eng.resumed_ms,
            },
            "counters": eng.counters,
            "reject_reasons": eng.reject_reasons,
        }
    )


def opened(snap: dict[str, Any]) -> dict[str, Any]:
    """A private copy of ``snap`` to restore from; refuses another layout by name.

    >>> opened({"version": 1})
    Traceback (most recent call last):
    ...
    predictor.errors.ConfigError: engine snapshot version 1 is not 2: a checkpoint from \
another release; remove the checkpoint directory to start afresh
    """
    version = snap.get("version")
    if version != SNAPSHOT_VERSION:
        raise ConfigError(
            f"engine snapshot version {version!r} is not {SNAPSHOT_VERSION}: a checkpoint "
            "from another release; remove the checkpoint directory to start afresh"
        )
    return copy.deepcopy(snap)


def restore(eng: EngineParts, reg: Registry, state: dict[str, Any]) -> None:
    """Put every part of ``state`` (:func:`opened`) into ``eng``, tracking ``reg``.

    ``eng`` is freshly built with the topology that names its sites; the caller grows
    its per-system arrays to the registry afterwards.
    """
    eng.registry = reg
    eng.context = Context(reg)
    eng.context.restore(state["context"])
    eng.sites = Sites(reg, eng.sites.topology)
    eng.sites.restore(state.get("sites"))
    eng.sitreps.restore(state.get("reports"))
    eng.escalation.restore(state["escalation"])
    eng.features = FeatureState.from_snapshot(state["features"])
    eng.detector.restore(state["detector"])
    if "drift" in state:  # older snapshots have none: the drift counts start at zero
        eng.drift.restore(state["drift"])
    for name, arr in state["hosts"].items():
        setattr(eng, name, grow(np.asarray(arr), 64, HOST_FILL[name]))
    eng.comp_health = grow(np.asarray(state["components"]["health"]), 16, 100.0)
    eng.sys_health = grow(np.asarray(state["systems"]["health"]), 8, 100.0)
    eng.sys_epoch = grow(np.asarray(state["systems"]["epoch"], dtype=np.int64), 8, 0)
    eng.latest_rec = {int(k): v for k, v in state["latest_rec"].items()}
    clock = state["clock"]
    eng.watermark_ms = clock["watermark_ms"]
    eng.last_tick_ms = clock["last_tick_ms"]
    eng.resumed_ms = clock["resumed_ms"]
    eng.counters = state["counters"]
    eng.reject_reasons = state["reject_reasons"]
