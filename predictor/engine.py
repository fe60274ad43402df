"""The full loop over a micro-batch: features → detectors → risk → health → decision.

One :class:`Engine` owns the state of a set of systems (in production, of the Kafka
partitions a worker holds). It is pure: event time comes from the events, never from a
clock, so the same input sequence gives the same outputs, whatever the batch sizes.

Time and ticks
    The *watermark* is the largest event time accepted so far. Decisions are taken at
    event-time *ticks* (every ``tick_s``): when the watermark crosses a tick boundary
    ``T``, the batch is split there, the events before it are ingested, and every
    component is decided at ``T``. Recommendations carry ``issued_at = T``, which makes
    their ids independent of how the input was cut into micro-batches.

Risk cadence
    An entity's risk is re-scored when ``risk_cadence_s`` of event time has passed since
    its last scoring, or at once when its anomaly score reaches ``risk_on_anomaly``;
    scoring is batched into one LightGBM call per segment.

Heartbeat rule
    An entity silent for ``heartbeat_misses × heartbeat_interval_s`` of event time
    (against the watermark) is failing *now*: health 0 and ``failover_now``.

Silence
    Silence only counts while the feed as a whole is alive. When the watermark jumps by
    more than the heartbeat limit (every input stopped, then came back), nobody is
    blamed for the gap: each entity's silence is counted from the resumption
    (``resumed_ms``). A driver that knows the fleet still reports while this engine's
    share is quiet (a Kafka partition holding only a dark system) moves event time on
    with :meth:`Engine.advance_to`, and the heartbeat rule fires there too.

Emission
    A component's recommendation is emitted when its action escalates, at once, or
    de-escalates after the lower action has held for ``hold_s`` (no flapping). Every
    emission bumps the system's fencing ``epoch``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from predictor import views
from predictor.batching import rounds
from predictor.detectors import Detector, make_detector
from predictor.errors import ModelError, ValidationError
from predictor.events import (
    SESSIONS,
    MarketState,
    Position,
    Reject,
    TelemetryBatch,
    parse_market,
    parse_position,
    validated,
)
from predictor.features import DEFAULT_METRICS, FeatureState
from predictor.health import host_health, roll_up_min, system_health
from predictor.market import (
    CLOSING_AUCTION,
    CONTINUOUS,
    OPENING_AUCTION,
    CostConfig,
    Exposure,
    MarketArrays,
)
from predictor.policy import AT_WINDOW, PREPARE, WATCH, PolicyConfig, decide
from predictor.recommend import build_recommendation
from predictor.risk import RiskModel

logger = logging.getLogger(__name__)

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
        Online detector: ``ewmaz`` (vectorised, default) or ``hst`` (river).
    heartbeat_interval_s, heartbeat_misses
        Expected telemetry interval and how many missed ones mean failure now.
    risk_cadence_s
        Event time between two risk scorings of an entity (0: every event).
    risk_on_anomaly
        An anomaly score at or above this re-scores risk at once.
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
    """

    metric_names: tuple[str, ...] = DEFAULT_METRICS
    detector: str = "ewmaz"
    heartbeat_interval_s: float = 10.0
    heartbeat_misses: int = 3
    risk_cadence_s: float = 60.0
    risk_on_anomaly: float = 0.999
    tick_s: float = 10.0
    late_tolerance_s: float = 60.0
    max_future_skew_s: float = 300.0
    max_entities: int = 200_000
    hold_s: float = 300.0
    confirm_s: float = 60.0
    default_horizon_s: float = 1800.0
    top_reasons: int = 3
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    costs: CostConfig = field(default_factory=CostConfig)


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


class _Grow:
    """Capacity bookkeeping for per-slot arrays."""

    @staticmethod
    def grow(arr: np.ndarray, size: int, fill: float | int | bool) -> np.ndarray:
        if size <= len(arr):
            return arr
        new = np.full((max(size, 2 * len(arr)), *arr.shape[1:]), fill, dtype=arr.dtype)
        new[: len(arr)] = arr
        return new


class Engine:
    """The stateful loop for a set of systems.

    Parameters
    ----------
    config
        Loop settings.
    model
        The failure-risk model, or None (anomaly and health only, no decisions but the
        heartbeat rule).
    critical
        ``(system, component) -> critical?`` for the system roll-up; unknown ones are
        critical.
    system_venue
        ``system -> venue`` where known before positions arrive.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        model: RiskModel | None = None,
        critical: Mapping[tuple[str, str], bool] | None = None,
        system_venue: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        cfg = self.config
        self.features = FeatureState(cfg.metric_names)
        self.detector: Detector = make_detector(cfg.detector, len(cfg.metric_names))
        self.feature_names = self.features.feature_names + list(EXTRA_FEATURES)
        self._critical = dict(critical or {})
        self._system_venue_cfg = dict(system_venue or {})
        self.model: RiskModel | None = None
        self.set_model(model)

        self._slot: dict[tuple[str, str, str], int] = {}
        self._keys: list[tuple[str, str, str]] = []
        self._comp: dict[tuple[str, str], int] = {}
        self._comp_keys: list[tuple[str, str]] = []
        self._comp_slots: list[list[int]] = []
        self._system: dict[str, int] = {}
        self._system_names: list[str] = []
        self._venue: dict[str, int] = {}
        self._venue_names: list[str] = []

        self.slot_comp = np.zeros(64, dtype=np.int64)
        self.risk = np.full(64, np.nan)
        self.risk_ts = np.full(64, np.iinfo(np.int64).min // 2, dtype=np.int64)
        self.anomaly = np.zeros(64)
        self.dead = np.zeros(64, dtype=bool)
        self.latest = np.zeros((64, len(self.feature_names)), dtype=np.float32)

        self.comp_system = np.zeros(16, dtype=np.int64)
        self.comp_critical = np.ones(16, dtype=bool)
        self.comp_action = np.zeros(16, dtype=np.int8)
        self.comp_lower_since = np.full(16, -1, dtype=np.int64)
        self.comp_fail_since = np.full(16, -1, dtype=np.int64)

        self.sys_venue = np.full(8, -1, dtype=np.int64)
        self.sys_net = np.zeros(8)
        self.sys_gross = np.zeros(8)
        self.sys_orders = np.zeros(8)
        self.sys_epoch = np.zeros(8, dtype=np.int64)
        self.sys_positions_ts = np.zeros(8, dtype=np.int64)

        self.v_vol = np.zeros(4)
        self.v_spread = np.zeros(4)
        self.v_depth = np.zeros(4)
        self.v_session = np.zeros(4, dtype=np.int64)
        self.v_event = np.zeros(4, dtype=bool)
        self.v_ts = np.zeros(4, dtype=np.int64)
        self.v_session_since = np.zeros(4, dtype=np.int64)
        self.v_event_since = np.zeros(4, dtype=np.int64)

        self.watermark_ms: int | None = None
        self.last_tick_ms: int | None = None
        #: Event time the feed last resumed after a global gap; silence counts from here.
        self.resumed_ms: int = np.iinfo(np.int64).min // 4
        self.host_health = np.full(64, 100.0)
        self.comp_health = np.full(16, 100.0)
        self.sys_health = np.full(8, 100.0)
        self.latest_rec: dict[int, dict[str, Any]] = {}
        self.counters: dict[str, int] = {
            "events": 0,
            "rejected": 0,
            "risk_scored": 0,
            "recommendations": 0,
            "ticks": 0,
        }
        self.reject_reasons: dict[str, int] = {}

    # -- model ------------------------------------------------------------------------
    def set_model(self, model: RiskModel | None) -> None:
        """Swap the risk model (hot reload); its features must match the stream's."""
        if model is not None and list(model.feature_names_) != self.feature_names:
            missing = set(model.feature_names_) - set(self.feature_names)
            raise ModelError(
                f"model features do not match the stream's ({len(model.feature_names_)} vs "
                f"{len(self.feature_names)}; missing here: {sorted(missing)[:5]})"
            )
        self.model = model

    @property
    def horizon_s(self) -> float:
        return self.model.horizon_s if self.model else self.config.default_horizon_s

    @property
    def model_version(self) -> str | None:
        return self.model.version if self.model else None

    # -- registries -------------------------------------------------------------------
    def _register(self, key: tuple[str, str, str]) -> int:
        slot = len(self._keys)
        self._slot[key] = slot
        self._keys.append(key)
        system, component, _host = key
        sidx = self._system_index(system)
        ckey = (system, component)
        cidx = self._comp.get(ckey)
        if cidx is None:
            cidx = len(self._comp_keys)
            self._comp[ckey] = cidx
            self._comp_keys.append(ckey)
            self._comp_slots.append([])
            n = cidx + 1
            self.comp_system = _Grow.grow(self.comp_system, n, 0)
            self.comp_critical = _Grow.grow(self.comp_critical, n, True)
            self.comp_action = _Grow.grow(self.comp_action, n, 0)
            self.comp_lower_since = _Grow.grow(self.comp_lower_since, n, -1)
            self.comp_fail_since = _Grow.grow(self.comp_fail_since, n, -1)
            self.comp_health = _Grow.grow(self.comp_health, n, 100.0)
            self.comp_system[cidx] = sidx
            self.comp_critical[cidx] = self._critical.get(ckey, True)
        self._comp_slots[cidx].append(slot)
        n = slot + 1
        self.slot_comp = _Grow.grow(self.slot_comp, n, 0)
        self.risk = _Grow.grow(self.risk, n, np.nan)
        self.risk_ts = _Grow.grow(self.risk_ts, n, np.iinfo(np.int64).min // 2)
        self.anomaly = _Grow.grow(self.anomaly, n, 0.0)
        self.dead = _Grow.grow(self.dead, n, False)
        self.latest = _Grow.grow(self.latest, n, 0.0)
        self.host_health = _Grow.grow(self.host_health, n, 100.0)
        self.slot_comp[slot] = cidx
        return slot

    def _system_index(self, system: str) -> int:
        sidx = self._system.get(system)
        if sidx is None:
            sidx = len(self._system_names)
            self._system[system] = sidx
            self._system_names.append(system)
            n = sidx + 1
            for name, fill in (
                ("sys_venue", -1),
                ("sys_net", 0.0),
                ("sys_gross", 0.0),
                ("sys_orders", 0.0),
                ("sys_epoch", 0),
                ("sys_positions_ts", 0),
                ("sys_health", 100.0),
            ):
                setattr(self, name, _Grow.grow(getattr(self, name), n, fill))
            venue = self._system_venue_cfg.get(system)
            if venue is not None:
                self.sys_venue[sidx] = self._venue_index(venue)
        return sidx

    def _venue_index(self, venue: str) -> int:
        vidx = self._venue.get(venue)
        if vidx is None:
            vidx = len(self._venue_names)
            self._venue[venue] = vidx
            self._venue_names.append(venue)
            n = vidx + 1
            # Until a venue reports, assume it is open and ordinary: the conservative
            # guess for an outage, neither free nor penalised for a switch.
            for name, fill in (
                ("v_vol", 2.0),
                ("v_spread", 2.0),
                ("v_depth", 5e6),
                ("v_session", CONTINUOUS),
                ("v_event", False),
                ("v_ts", 0),
                ("v_session_since", 0),
                ("v_event_since", 0),
            ):
                setattr(self, name, _Grow.grow(getattr(self, name), n, fill))
        return vidx

    @property
    def n_entities(self) -> int:
        return len(self._keys)

    # -- context streams --------------------------------------------------------------
    def update_positions(self, objs: Iterable[Any]) -> list[Reject]:
        """Apply positions.v1 updates (objects or ``Position``); newest per system wins."""
        rejects = []
        for i, obj in enumerate(objs):
            try:
                pos = obj if isinstance(obj, Position) else validated(parse_position, obj)
            except ValidationError as exc:
                rejects.append(Reject(i, exc.reason, exc.detail))
                continue
            s = self._system_index(pos.system)
            if pos.ts_ms < self.sys_positions_ts[s]:
                continue
            self.sys_positions_ts[s] = pos.ts_ms
            self.sys_venue[s] = self._venue_index(pos.venue)
            self.sys_net[s] = pos.net_notional_usd
            self.sys_gross[s] = pos.gross_notional_usd
            self.sys_orders[s] = pos.open_orders
        self._count_rejects(rejects)
        return rejects

    def update_market(self, objs: Iterable[Any]) -> list[Reject]:
        """Apply market.v1 updates (objects or ``MarketState``); newest per venue wins."""
        rejects = []
        for i, obj in enumerate(objs):
            try:
                m = obj if isinstance(obj, MarketState) else validated(parse_market, obj)
            except ValidationError as exc:
                rejects.append(Reject(i, exc.reason, exc.detail))
                continue
            v = self._venue_index(m.venue)
            if m.ts_ms < self.v_ts[v]:
                continue
            code = SESSIONS.index(m.session)
            if self.v_ts[v] == 0 or code != self.v_session[v]:
                self.v_session_since[v] = m.ts_ms
            if m.event_risk and not self.v_event[v]:
                self.v_event_since[v] = m.ts_ms
            self.v_ts[v] = m.ts_ms
            self.v_vol[v] = m.volatility_bps_per_min
            self.v_spread[v] = m.spread_bps
            self.v_depth[v] = m.depth_usd
            self.v_session[v] = code
            self.v_event[v] = m.event_risk
        self._count_rejects(rejects)
        return rejects

    def _count_rejects(self, rejects: Sequence[Reject]) -> None:
        self.counters["rejected"] += len(rejects)
        for r in rejects:
            self.reject_reasons[r.reason] = self.reject_reasons.get(r.reason, 0) + 1

    # -- the loop ---------------------------------------------------------------------
    def process(
        self, batch: TelemetryBatch, collect_features: bool = False, decide: bool = True
    ) -> StepResult:
        """Ingest one decoded micro-batch; decide at every tick it crosses.

        With ``decide=False`` (offline scoring and training) the batch is one segment and
        no decisions are taken, which is much faster on long batches of history.
        """
        cfg = self.config
        rejects = list(batch.rejects)
        n = len(batch)
        future_limit = 0
        if n:
            # A bogus far-future stamp would move the watermark and fire the heartbeat
            # rule fleet-wide. The limit follows the batch (a replay of old data is fine)
            # and widens with the batch's own spread (one wide batch of history too).
            med = int(np.median(batch.ts_ms))
            spread = med - int(batch.ts_ms.min())
            future_limit = med + spread + int(cfg.max_future_skew_s * 1000)
        slots, ok = self._slots_for(batch.keys)
        if n and self.watermark_ms is not None:
            future_limit = self._watermark_limit(slots, batch.ts_ms, future_limit)
        for i in np.flatnonzero(~ok).tolist():
            rejects.append(Reject(int(batch.index[i]), "entity_capacity", "/".join(batch.keys[i])))
        ts_all = batch.ts_ms
        reason = self._order_checks(slots, ts_all, ok, future_limit)
        for i in np.flatnonzero(reason > 0).tolist():
            key = "/".join(batch.keys[i])
            why = _ORDER_REASONS[int(reason[i])]
            rejects.append(Reject(int(batch.index[i]), why, f"{key} ts={int(ts_all[i])}"))
        ok &= reason == 0
        self._count_rejects(rejects)

        slots, ts, x, index = slots[ok], batch.ts_ms[ok], batch.x[ok], batch.index[ok]
        keys = [k for k, good in zip(batch.keys, ok.tolist(), strict=True) if good]
        m = len(slots)
        anomaly = np.zeros(m)
        risk = np.full(m, np.nan)
        feats = (
            np.empty((m, len(self.feature_names)), dtype=np.float32) if collect_features else None
        )
        recs: list[dict[str, Any]] = []

        tick_ms = int(cfg.tick_s * 1000)
        wm0 = self.watermark_ms if self.watermark_ms is not None else (int(ts[0]) if m else 0)
        running = np.maximum.accumulate(np.maximum(ts, wm0)) if m else ts
        tick_idx = running // tick_ms
        start_tick = wm0 // tick_ms
        cuts = np.flatnonzero(np.diff(np.concatenate([[start_tick], tick_idx])) > 0)
        bounds = [0, *cuts.tolist(), m] if decide else [0, m]
        # Rows where the whole feed resumes after a silence longer than the heartbeat limit.
        gaps = (
            np.flatnonzero(np.diff(np.concatenate([[wm0], running])) > self._silence_limit_ms)
            if m and self.watermark_ms is not None
            else np.zeros(0, dtype=np.int64)
        )
        for j in range(len(bounds) - 1):
            lo, hi = bounds[j], bounds[j + 1]
            if hi > lo:
                seg = np.arange(lo, hi)
                a, r, f = self._ingest(slots[seg], ts[seg], x[seg])
                anomaly[seg], risk[seg] = a, r
                if feats is not None:
                    feats[seg] = f
                self.watermark_ms = max(wm0, int(running[hi - 1]))
            if (
                hi < m and decide
            ):  # the row at ``hi`` crosses into a new tick: decide at its boundary
                self._note_resume(gaps, running, hi)
                recs.extend(self._tick(int(tick_idx[hi]) * tick_ms))
        if m:
            self._note_resume(gaps, running, m - 1)
        self.counters["events"] += m
        health = host_health(risk, anomaly, np.zeros(m, dtype=bool))
        return StepResult(
            index=index,
            anomaly=anomaly,
            risk=risk,
            health=health,
            rejects=rejects,
            recommendations=recs,
            features=feats,
            keys=keys if collect_features else [],
            ts_ms=ts if collect_features else None,
        )

    def _slots_for(self, keys: list[tuple[str, str, str]]) -> tuple[np.ndarray, np.ndarray]:
        """Entity slots of ``keys``, registering new ones; ``ok`` False over capacity."""
        get = self._slot.get
        found = [get(k) for k in keys]
        ok = np.ones(len(keys), dtype=bool)
        if None in found:
            for i, s in enumerate(found):
                if s is None:
                    s = self._slot.get(keys[i])  # registered earlier in this batch
                    if s is None and len(self._keys) < self.config.max_entities:
                        s = self._register(keys[i])
                    if s is None:
                        ok[i] = False
                        s = 0
                    found[i] = s
        slots = np.array(found, dtype=np.int64)
        if len(slots):
            self.features.ensure(int(slots.max()) + 1)
        return slots, ok

    def _watermark_limit(self, slots: np.ndarray, ts: np.ndarray, batch_limit: int) -> int:
        """Tighten the future limit to the watermark unless the batch moves as a whole.

        Beyond ``watermark + max_future_skew_s`` an event is only believed when enough
        distinct entities of the batch are there too (a stream resuming after a gap);
        one bogus stamp, alone in its poll, is not enough to move time for everyone.
        """
        assert self.watermark_ms is not None
        limit = self.watermark_ms + int(self.config.max_future_skew_s * 1000)
        beyond = ts > limit
        if not beyond.any():
            return batch_limit
        support = len(np.unique(slots[beyond]))
        needed = max(1, min(3, (self.n_entities + 1) // 2))
        return batch_limit if support >= needed else min(batch_limit, limit)

    def _order_checks(
        self, slots: np.ndarray, ts: np.ndarray, ok: np.ndarray, future_limit: int
    ) -> np.ndarray:
        """Per row: 0 fine, else a code of ``_ORDER_REASONS`` (vectorised, in order).

        An event is a ``duplicate`` when its time equals the latest earlier time of its
        entity, ``out_of_order`` when it is older than that by more than the tolerance.
        "Earlier" spans the entity's state and the rows before it in this batch.
        """
        n = len(slots)
        reason = np.zeros(n, dtype=np.int8)
        if n == 0:
            return reason
        future = ok & (ts > future_limit)
        reason[future] = 1
        valid = ok & ~future
        fn, fl = self.features.n[slots], self.features.last_ts[slots]
        none = np.iinfo(np.int64).min // 4
        state_prev = np.where(fn > 0, fl, none)
        order = np.lexsort((np.arange(n), slots))
        s_sorted = slots[order]
        first = np.ones(n, dtype=bool)
        first[1:] = s_sorted[1:] != s_sorted[:-1]
        gid = np.cumsum(first) - 1
        t0 = int(ts[valid].min()) - 1 if valid.any() else 0
        rel = np.where(valid[order], ts[order] - t0, 0)  # 0: "nothing", valid rows ≥ 1
        big = np.int64(1) << np.int64(41)
        running = np.maximum.accumulate(gid * big + rel) - gid * big
        prev_rel = np.empty(n, dtype=np.int64)
        prev_rel[0] = 0
        prev_rel[1:] = running[:-1]
        prev_rel[first] = 0
        prev_batch = np.where(prev_rel > 0, prev_rel + t0, none)
        prev = np.empty(n, dtype=np.int64)
        prev[order] = prev_batch
        prev = np.maximum(prev, state_prev)
        has = valid & (prev > none)
        tol = int(self.config.late_tolerance_s * 1000)
        reason[has & (ts == prev)] = 2
        reason[has & (ts < prev - tol)] = 3
        return reason

    def _ingest(
        self, s: np.ndarray, t: np.ndarray, x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.config
        batch_rounds = rounds(s)
        f = self.features.update(s, t, x, batch_rounds)
        a = self.detector.score_learn_many(s, x)
        full = np.concatenate([f, a[:, None].astype(np.float32)], axis=1)

        cadence = int(cfg.risk_cadence_s * 1000)
        due = np.zeros(len(s), dtype=bool)
        for idx in batch_rounds:
            e = s[idx]
            d = (t[idx] - self.risk_ts[e] >= cadence) | (a[idx] >= cfg.risk_on_anomaly)
            self.risk_ts[e[d]] = t[idx][d]
            due[idx[d]] = True

        risk_rows = np.full(len(s), np.nan)
        if self.model is not None and due.any():
            rows = np.flatnonzero(due)
            risk_rows[rows] = self.model.predict_risk(full[rows])
            self.counters["risk_scored"] += len(rows)
            last_due = _last_per_key(s[rows])
            self.risk[s[rows[last_due]]] = risk_rows[rows[last_due]]
        last = _last_per_key(s)
        ls = s[last]
        self.anomaly[ls] = a[last]
        self.latest[ls] = full[last]
        self.dead[ls] = False
        # Rows between scorings carry their entity's latest risk forward.
        if self.model is not None:
            risk_rows = np.where(np.isnan(risk_rows), self.risk[s], risk_rows)
        return a, risk_rows, full

    @property
    def _silence_limit_ms(self) -> int:
        cfg = self.config
        return int(cfg.heartbeat_misses * cfg.heartbeat_interval_s * 1000)

    def _note_resume(self, gaps: np.ndarray, running: np.ndarray, upto: int) -> None:
        """Start counting silence afresh from the latest global gap at or before ``upto``."""
        k = int(np.searchsorted(gaps, upto, side="right"))
        if k:
            self.resumed_ms = max(self.resumed_ms, int(running[gaps[k - 1]]))

    def advance_to(self, t_ms: int) -> list[dict[str, Any]]:
        """Move event time on to ``t_ms`` without events, deciding at every tick crossed.

        For a driver that knows the fleet still reports while this engine's entities are
        quiet (its watermark would otherwise stand still and a dark system would never
        miss a heartbeat). Never moves time back; at most the last 1,000 ticks are taken.
        """
        if self.watermark_ms is None or t_ms <= self.watermark_ms:
            return []
        tick_ms = int(self.config.tick_s * 1000)
        first = self.watermark_ms // tick_ms + 1
        last = t_ms // tick_ms
        recs: list[dict[str, Any]] = []
        for k in range(max(first, last - 999), last + 1):
            recs.extend(self._tick(k * tick_ms))
        self.watermark_ms = t_ms
        return recs

    def flush(self, now_ms: int | None = None) -> list[dict[str, Any]]:
        """Decide at ``now_ms`` (default: the watermark) without waiting for a tick."""
        t = now_ms if now_ms is not None else self.watermark_ms
        return [] if t is None else self._tick(int(t))

    def _tick(self, t_ms: int) -> list[dict[str, Any]]:
        cfg = self.config
        self.last_tick_ms = t_ms
        self.counters["ticks"] += 1
        n = self.n_entities
        nc = len(self._comp_keys)
        if n == 0:
            return []
        seen = self.features.n[:n] > 0
        age_ms = t_ms - np.maximum(self.features.last_ts[:n], self.resumed_ms)
        dead = seen & (age_ms > self._silence_limit_ms)
        self.dead[:n] = dead

        hh = host_health(self.risk[:n], self.anomaly[:n], dead)
        self.host_health[:n] = hh
        comp_of = self.slot_comp[:n]
        self.comp_health[:nc] = roll_up_min(hh, comp_of, nc)
        ns = len(self._system_names)
        self.sys_health[:ns] = system_health(
            self.comp_health[:nc], self.comp_system[:nc], self.comp_critical[:nc], ns
        )

        comp_risk = np.full(nc, -np.inf)
        live = ~dead & ~np.isnan(self.risk[:n])
        np.maximum.at(comp_risk, comp_of[live], self.risk[:n][live])
        comp_risk[np.isinf(comp_risk)] = np.nan
        comp_dead = np.zeros(nc, dtype=bool)
        comp_dead[comp_of[dead]] = True

        sysi = self.comp_system[:nc]
        exposure = Exposure(self.sys_net[sysi], self.sys_gross[sysi], self.sys_orders[sysi])
        venue = self.sys_venue[sysi]
        known = venue >= 0
        v = np.maximum(venue, 0)

        def pick(arr: np.ndarray, default: float | int | bool) -> np.ndarray:
            return np.where(known, arr[v], default)

        market = MarketArrays(
            pick(self.v_vol, 2.0),
            pick(self.v_spread, 2.0),
            pick(self.v_depth, 5e6),
            pick(self.v_session, CONTINUOUS),
            pick(self.v_event, False),
        )
        window = np.full(nc, np.nan)
        sess = market.session
        in_auction = (sess == OPENING_AUCTION) | (sess == CLOSING_AUCTION)
        auction_end = self.v_session_since[v] + cfg.costs.auction_length_s * 1000
        event_end = self.v_event_since[v] + cfg.costs.event_risk_length_s * 1000
        ends = np.where(in_auction, auction_end, -np.inf)
        ends = np.where(market.event_risk, np.maximum(ends, event_end), ends)
        has = known & np.isfinite(ends)
        # A window that should already have opened is assumed to open within 30 s.
        window[has] = np.maximum((ends[has] - t_ms) / 1000.0, 30.0)

        decision = decide(
            comp_risk, comp_dead, exposure, market, window, cfg.policy, cfg.costs, self.horizon_s
        )
        proposed = decision.action
        if self.model is None:  # without a model only the heartbeat rule decides
            proposed = np.where(comp_dead, proposed, 0).astype(np.int8)
        # A one-off spike in risk should warm the standby, not move the book.
        fail = proposed >= AT_WINDOW
        fail_since = self.comp_fail_since[:nc]
        fail_since[~fail] = -1
        fail_since[fail & (fail_since < 0)] = t_ms
        unconfirmed = fail & ~comp_dead & (t_ms - fail_since < int(cfg.confirm_s * 1000))
        proposed = np.where(unconfirmed, PREPARE, proposed).astype(np.int8)
        current = self.comp_action[:nc]
        up = proposed > current
        # After a failover recommendation, only an all-clear (risk back under the watch
        # threshold) de-escalates: a dip to "prepare" is no reason to undo a switch.
        down = (proposed < current) & ((current < AT_WINDOW) | (proposed <= WATCH))
        since = self.comp_lower_since[:nc]
        since[~down] = -1
        since[down & (since < 0)] = t_ms
        hold = int(cfg.hold_s * 1000)
        emit = up | (down & (t_ms - since >= hold))
        out = []
        for c in np.flatnonzero(emit).tolist():
            out.append(
                build_recommendation(self, c, int(proposed[c]), t_ms, decision, comp_risk, market)
            )
            current[c] = proposed[c]
            since[c] = -1
        return out

    # -- views for the API and the terminal (predictor.views) ----------------------------
    def systems_view(self) -> list[dict[str, Any]]:
        """One summary per system: health, worst component, most urgent action."""
        return views.systems_view(self)

    def system_view(self, system: str) -> dict[str, Any]:
        """Components, hosts, exposure and market of one system."""
        return views.system_view(self, system)

    @property
    def systems(self) -> list[str]:
        return list(self._system_names)

    # -- state -----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything but the model and config, as a picklable value."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("model", "config")}
        state["features"] = self.features.snapshot()
        state["detector"] = self.detector.snapshot()
        return copy.deepcopy(state)

    @classmethod
    def from_snapshot(
        cls, snap: dict[str, Any], config: EngineConfig, model: RiskModel | None = None
    ) -> Engine:
        eng = cls(config)
        state = copy.deepcopy(snap)
        eng.features = FeatureState.from_snapshot(state.pop("features"))
        eng.detector.restore(state.pop("detector"))
        eng.__dict__.update(state)
        eng.set_model(model)
        return eng

    def nbytes_per_entity(self) -> float:
        """State bytes per tracked host: features + detector + loop arrays."""
        n = max(1, self.n_entities)
        loop = sum(
            a.nbytes / len(a)
            for a in (
                self.slot_comp,
                self.risk,
                self.risk_ts,
                self.anomaly,
                self.dead,
                self.latest,
                self.host_health,
            )
        )
        return (
            self.features.nbytes_per_entity()
            + self.detector.nbytes_per_entity()
            + loop
            + (
                200.0 * len(self._keys) / n  # registry dict + key tuple, measured ≈ 200 B
            )
        )

    def scratch_for(
        self, keys: Iterable[tuple[str, str, str]], config: EngineConfig | None = None
    ) -> Engine:
        """A small engine holding only the state of ``keys``, for a what-if.

        Known entities of ``keys`` are copied with their features, detector state, risk
        and health; unknown ones will register fresh in it. The watermark is kept, so
        order and future checks behave as here. It costs O(len(keys)), not O(entities):
        cheap enough to run under the lock the stream needs. The model is shared (it is
        read-only); ``config`` replaces this engine's.
        """
        from predictor.detectors import EwmaZ, RiverHST  # here only: one method uses them

        eng = Engine(config or self.config, None, self._critical, self._system_venue_cfg)
        eng.set_model(self.model)
        eng.watermark_ms = self.watermark_ms
        eng.last_tick_ms = self.last_tick_ms
        src: list[int] = []
        for key in dict.fromkeys(keys):
            s = self._slot.get(key)
            if s is not None:
                src.append(s)
                eng._register(key)
        if not src:
            return eng
        si = np.asarray(src, dtype=np.int64)
        k = len(src)
        eng.features.ensure(k)
        for name in ("n", "last_ts", "mu_f", "mu_m", "mu_s", "var_s", "persist"):
            getattr(eng.features, name)[:k] = getattr(self.features, name)[si]
        for name in ("risk", "risk_ts", "anomaly", "dead", "latest", "host_health"):
            getattr(eng, name)[:k] = getattr(self, name)[si]
        det, new = self.detector, eng.detector
        if isinstance(det, EwmaZ) and isinstance(new, EwmaZ):
            new._ensure(k)
            seen = si < len(det.count_)  # a slot whose rows were all rejected has no state
            new.count_[:k][seen] = det.count_[si[seen]]
            new.mean_[:k][seen] = det.mean_[si[seen]]
            new.var_[:k][seen] = det.var_[si[seen]]
        elif isinstance(det, RiverHST) and isinstance(new, RiverHST):
            for j, s in enumerate(src):
                if s in det.models_:
                    new.models_[j] = copy.deepcopy(det.models_[s])
                    new.counts_[j] = det.counts_[s]
        else:  # a detector of unknown layout: only a whole copy is safe
            return Engine.from_snapshot(self.snapshot(), eng.config, self.model)
        return eng


_ORDER_REASONS = ("", "future_timestamp", "duplicate", "out_of_order")


def _last_per_key(keys: np.ndarray) -> np.ndarray:
    """Index of the last occurrence of each distinct key."""
    rev = keys[::-1]
    _, first_in_rev = np.unique(rev, return_index=True)
    return len(keys) - 1 - first_in_rev
