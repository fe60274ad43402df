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

Context
    Positions and market records are handed to the engine as they arrive
    (:meth:`Engine.add_positions`, :meth:`Engine.add_market`) and take effect at the
    first tick at or after their event time (:mod:`predictor.context`): one rule for
    every mode, so the demo, Kafka, a replay and a backtest decide alike.

Emission
    A component's recommendation is emitted when its action escalates, at once, or
    de-escalates after the lower action has held for ``hold_s`` (no flapping); see
    :mod:`predictor.escalation`. Every emission bumps the system's fencing ``epoch``.

State
    The engine composes one object per concept — :class:`~predictor.registry.Registry`
    (who), :class:`~predictor.context.Context` (positions, market),
    :class:`~predictor.escalation.Escalation` (current actions),
    :class:`~predictor.sites.Sites` (active site, failover epochs),
    :class:`~predictor.sitrep.Reports` (situation report clocks), features, detector —
    and the loop's own arrays. :meth:`Engine.snapshot` is an explicit, versioned value
    of each (the layout: :mod:`predictor.snapshot`), never the object's ``__dict__``.
    Input checks are :mod:`predictor.admission`'s, the cut at ticks
    :mod:`predictor.batching`'s, the risk cadence and model fit :mod:`predictor.risk`'s;
    recommendations, reports and views are pure functions of the engine's public state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from predictor import snapshot as parts
from predictor import views
from predictor.admission import admit
from predictor.batching import TickCuts, last_per_key, rounds, tick_cuts
from predictor.config import (  # re-exported: the engine is where callers look for them
    EXTRA_FEATURES,
    EngineConfig,
    StepResult,
    feature_names,
)
from predictor.context import ComponentContext, Context
from predictor.detectors import Detector, make_detector
from predictor.detectors.calibration import bits_from_score, score_from_bits
from predictor.detectors.drift import DriftWatch
from predictor.escalation import Escalation
from predictor.events import Reject, TelemetryBatch
from predictor.features import FeatureState
from predictor.health import host_health, roll_up_min, roll_up_risk, system_health
from predictor.policy import PREPARE, Decision, calm, decide
from predictor.recommend import RecommendationInput, build_recommendation
from predictor.registry import Registry, grow
from predictor.risk import RiskModel, check_fits, due_for_scoring
from predictor.sites import Sites, written_topology
from predictor.sitrep import Reports, situation_reports
from predictor.snapshot import HOST_FILL, NEVER
from predictor.topology import Topology

logger = logging.getLogger(__name__)

__all__ = ["EXTRA_FEATURES", "Engine", "EngineConfig", "StepResult", "feature_names"]


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
    topology
        The declared :class:`~predictor.topology.Topology` (criticality, venues, sites,
        authority; default: the config's); it wins over ``critical`` and ``system_venue``
        where both speak.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        model: RiskModel | None = None,
        critical: Mapping[tuple[str, str], bool] | None = None,
        system_venue: Mapping[str, str] | None = None,
        topology: Topology | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.topology = topology or self.config.topology
        critical, system_venue = self.topology.merged_with_defaults(critical, system_venue)
        cfg = self.config
        self.features = FeatureState(cfg.metric_names)
        self.detector: Detector = make_detector(cfg.detector, len(cfg.metric_names))
        self.drift = DriftWatch()  # input drift per host (ADWIN), for views and /metrics
        self.feature_names = self.features.feature_names + list(EXTRA_FEATURES)
        self.model: RiskModel | None = None
        self.set_model(model)
        self.registry = Registry(critical, system_venue)
        self.context = Context(self.registry)
        self.escalation = Escalation()
        self.sites = Sites(self.registry, self.topology)
        self.sitreps = Reports()

        # per host (slot)
        self.risk = np.full(64, np.nan)
        self.risk_ts = np.full(64, NEVER, dtype=np.int64)
        self.anomaly = np.zeros(64)
        self.dead = np.zeros(64, dtype=bool)
        self.latest = np.zeros((64, len(self.feature_names)), dtype=np.float32)
        self.host_health = np.full(64, 100.0)
        # per component / system
        self.comp_health = np.full(16, 100.0)
        self.sys_health = np.full(8, 100.0)
        #: Fencing token per system: grows with every recommendation of the system.
        self.sys_epoch = np.zeros(8, dtype=np.int64)
        self._crit = np.zeros(0)  # criticality per component (cache, see _criticality)
        self.latest_rec: dict[int, dict[str, Any]] = {}

        self.watermark_ms: int | None = None
        self.last_tick_ms: int | None = None
        #: Event time the feed last resumed after a global gap; silence counts from here.
        self.resumed_ms: int = NEVER
        self.counters: dict[str, int] = dict.fromkeys(
            ("events", "rejected", "risk_scored", "recommendations", "ticks"), 0
        )
        self.reject_reasons: dict[str, int] = {}

    # -- model ------------------------------------------------------------------------
    def set_model(self, model: RiskModel | None) -> None:
        """Swap the risk model (hot reload); its features must match the stream's."""
        cfg = self.config
        if model is not None:
            check_fits(model, cfg.metric_names, self.feature_names, cfg.detector)
        self.model = model

    @property
    def horizon_s(self) -> float:
        return self.model.horizon_s if self.model else self.config.default_horizon_s

    @property
    def model_version(self) -> str | None:
        return self.model.version if self.model else None

    @property
    def top_reasons(self) -> int:
        return self.config.top_reasons

    # -- who --------------------------------------------------------------------------
    @property
    def n_entities(self) -> int:
        return self.registry.n_entities

    @property
    def systems(self) -> list[str]:
        return list(self.registry.system_names)

    def register(self, key: tuple[str, str, str]) -> int:
        """A slot for a new host, with room in every per-host array."""
        reg = self.registry
        slot = reg.register(key)
        n = slot + 1
        self.risk = grow(self.risk, n, np.nan)
        self.risk_ts = grow(self.risk_ts, n, NEVER)
        self.anomaly = grow(self.anomaly, n, 0.0)
        self.dead = grow(self.dead, n, False)
        self.latest = grow(self.latest, n, 0.0)
        self.host_health = grow(self.host_health, n, 100.0)
        self._ensure_levels()
        return slot

    # -- sites (predictor.sites) ------------------------------------------------------
    def active_site(self, system: str) -> str:
        """The site ``system`` runs on now (its topology's primary until a failover)."""
        site = self.sites.active_site(system)
        self._ensure_levels()  # a declared system seen first here is registered
        return site

    def knows_system(self, system: str) -> bool:
        """Whether ``system`` has been seen (telemetry, positions) or is declared."""
        return self.sites.knows(system)

    def failover_epoch(self, system: str) -> int:
        """Epoch of the recommendation behind ``system``'s last failover (0: none)."""
        epoch = self.sites.failover_epoch(system)
        self._ensure_levels()
        return epoch

    def fail_over(self, system: str, epoch: int | None = None) -> str:
        """Record that ``system`` failed over: flip its active site; returns the new one.

        Called once a failover has been carried out (approved, or done by an orchestrator
        with ``auto`` authority); later recommendations name the new ``active_site``.
        With ``epoch`` (the approved recommendation's), the flip happens once: a failover
        at or below the system's :meth:`failover_epoch` was applied already (a command
        read again after a restart, a decision repeated), and the site stays as it is.
        Raises :class:`UnknownEntityError` for a system neither seen nor declared.
        """
        site = self.sites.fail_over(system, epoch)
        self._ensure_levels()
        return site

    def resume_epochs(self, floors: Mapping[str, int]) -> None:
        """Continue each system's fencing epoch above ``floors`` (system → epoch).

        For a process that restarts without its engine snapshot but with a durable record
        of what it already sent (the demo's outbox): its next recommendation must carry an
        epoch above any the orchestrator has seen, or it would be fenced off as stale.
        """
        for system, epoch in floors.items():
            s = self.registry.system_index(system)
            self._ensure_levels()
            self.sys_epoch[s] = max(int(self.sys_epoch[s]), int(epoch))

    def _ensure_levels(self) -> None:
        reg = self.registry
        self.comp_health = grow(self.comp_health, reg.n_components, 100.0)
        self.escalation.ensure(reg.n_components)
        self.sys_health = grow(self.sys_health, reg.n_systems, 100.0)
        self.sys_epoch = grow(self.sys_epoch, reg.n_systems, 0)
        self.sites.ensure(reg.n_systems)
        self.sitreps.ensure(reg.n_systems)
        self.context.ensure_systems(reg.n_systems)
        self.context.ensure_venues(reg.n_venues)

    # -- context ----------------------------------------------------------------------
    def add_positions(self, objs: Iterable[Any]) -> list[Reject]:
        """Hand over positions.v1 records; each applies at the first tick ≥ its time."""
        rejects = self.context.add_positions(objs)
        self.count_rejects(rejects)
        return rejects

    def add_market(self, objs: Iterable[Any]) -> list[Reject]:
        """Hand over market.v1 records; each applies at the first tick ≥ its time."""
        rejects = self.context.add_market(objs)
        self.count_rejects(rejects)
        return rejects

    def count_rejects(self, rejects: Sequence[Reject]) -> None:
        """Count rejected input by reason (the engine's own and its driver's)."""
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
        slots, ok = self._slots_for(batch.keys)
        ok, rejects = admit(
            batch,
            slots,
            ok,
            self.watermark_ms,
            self.n_entities,
            self.features.n > 0,
            self.features.last_ts,
            skew_ms=int(cfg.max_future_skew_s * 1000),
            tolerance_ms=int(cfg.late_tolerance_s * 1000),
        )
        self.count_rejects(rejects)

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
        # Gaps: rows where the whole feed resumes after a silence over the heartbeat limit.
        cuts = tick_cuts(ts, self.watermark_ms, tick_ms, self._silence_limit_ms, decide)
        bounds = cuts.bounds
        for j in range(len(bounds) - 1):
            lo, hi = bounds[j], bounds[j + 1]
            if hi > lo:
                seg = np.arange(lo, hi)
                a, r, f = self._ingest(slots[seg], ts[seg], x[seg])
                anomaly[seg], risk[seg] = a, r
                if feats is not None:
                    feats[seg] = f
                self.watermark_ms = max(cuts.start_ms, int(cuts.running[hi - 1]))
            if hi < m and decide:  # the row at ``hi`` crosses a tick: decide at its boundary
                self._note_resume(cuts, hi)
                recs.extend(self._tick(int(cuts.tick[hi]) * tick_ms))
        if m:
            self._note_resume(cuts, m - 1)
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
        get = self.registry.slot.get
        found = [get(k) for k in keys]
        ok = np.ones(len(keys), dtype=bool)
        if None in found:
            for i, s in enumerate(found):
                if s is None:
                    s = get(keys[i])  # registered earlier in this batch
                    if s is None and self.n_entities < self.config.max_entities:
                        s = self.register(keys[i])
                    if s is None:
                        ok[i] = False
                        s = 0
                    found[i] = s
        slots = np.array(found, dtype=np.int64)
        if len(slots):
            self.features.ensure(int(slots.max()) + 1)
        return slots, ok

    def _ingest(
        self, s: np.ndarray, t: np.ndarray, x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.config
        batch_rounds = rounds(s)
        f = self.features.update(s, t, x)
        bits_of = getattr(self.detector, "bits_learn_many", None)
        if bits_of is not None:  # the calibrated detectors: bits first, no round trip
            bits = bits_of(s, x)
            a = score_from_bits(bits)
        else:
            a = self.detector.score_learn_many(s, x)
            bits = bits_from_score(a)
        self.drift.update(s, bits, t)
        full = np.concatenate([f, a[:, None].astype(np.float32)], axis=1)

        cadence_ms = int(cfg.risk_cadence_s * 1000)
        due = due_for_scoring(s, t, a, self.risk_ts, batch_rounds, cadence_ms, cfg.risk_on_anomaly)

        risk_rows = np.full(len(s), np.nan)
        if self.model is not None and due.any():
            rows = np.flatnonzero(due)
            risk_rows[rows] = self.model.predict_risk(full[rows])
            self.counters["risk_scored"] += len(rows)
            last_due = last_per_key(s[rows])
            self.risk[s[rows[last_due]]] = risk_rows[rows[last_due]]
        last = last_per_key(s)
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

    def _note_resume(self, cuts: TickCuts, upto: int) -> None:
        """Start counting silence afresh from the latest global gap at or before ``upto``."""
        resumed = cuts.resumed_at(upto)
        if resumed is not None:
            self.resumed_ms = max(self.resumed_ms, resumed)

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
        self.context.apply_due(t_ms)
        self._ensure_levels()
        reg = self.registry
        n, nc, ns = reg.n_entities, reg.n_components, reg.n_systems
        if n == 0:
            return []
        seen = self.features.n[:n] > 0
        age_ms = t_ms - np.maximum(self.features.last_ts[:n], self.resumed_ms)
        dead = seen & (age_ms > self._silence_limit_ms)
        self.dead[:n] = dead

        hh = host_health(self.risk[:n], self.anomaly[:n], dead)
        self.host_health[:n] = hh
        comp_of = reg.slot_comp[:n]
        comp_system = reg.comp_system[:nc]
        self.comp_health[:nc] = roll_up_min(hh, comp_of, nc)
        self.sys_health[:ns] = system_health(
            self.comp_health[:nc], comp_system, reg.comp_critical[:nc], ns
        )

        comp_risk, comp_dead = roll_up_risk(self.risk[:n], dead, comp_of, nc)

        pol = cfg.policy
        ctx: ComponentContext | None = None
        stale_pos = stale_mkt = np.zeros(0, dtype=bool)
        decision: Decision | None = None
        if calm(comp_risk, comp_dead, pol):
            # Every action would be ``none`` whatever the dollars: the context and the
            # costs are worked out below only if escalation still needs them.
            self.context.ensure_systems(reg.n_systems)
            self.context.ensure_venues(reg.n_venues)
            proposed = np.zeros(nc, dtype=np.int8)
        else:
            ctx, (stale_pos, stale_mkt), decision = self._decide(t_ms, comp_risk, comp_dead)
            proposed = decision.action
            if self.model is None:  # without a model only the heartbeat rule decides
                proposed = np.where(comp_dead, proposed, 0).astype(np.int8)
        emit, actions = self.escalation.step(proposed, comp_dead, t_ms, cfg.confirm_s, cfg.hold_s)
        reporting = cfg.report_every_s > 0
        if decision is None and (
            emit.any() or (reporting and int(self.escalation.action[:nc].max(initial=0)) >= PREPARE)
        ):
            ctx, (stale_pos, stale_mkt), decision = self._decide(t_ms, comp_risk, comp_dead)
        out = []
        for c in np.flatnonzero(emit).tolist():
            assert decision is not None and ctx is not None  # worked out above when emitting
            s = int(comp_system[c])
            self.sys_epoch[s] += 1
            rec = build_recommendation(
                self,
                RecommendationInput(
                    component=c,
                    action=int(actions[c]),
                    t_ms=t_ms,
                    epoch=int(self.sys_epoch[s]),
                    decision=decision,
                    comp_risk=comp_risk,
                    context=ctx,
                    stale_context=tuple(
                        name
                        for name, flag in (("positions", stale_pos[c]), ("market", stale_mkt[c]))
                        if flag
                    ),
                ),
            )
            self.latest_rec[c] = rec
            self.counters["recommendations"] += 1
            out.append(rec)
        if reporting and ctx is None:  # no system at prepare_standby or above
            self.sitreps.clear()
        elif reporting and ctx is not None:
            self.sitreps.pending.extend(
                situation_reports(
                    self,
                    t_ms,
                    comp_risk,
                    ctx,
                    (stale_pos, stale_mkt),
                    int(cfg.report_every_s * 1000),
                )
            )
        return out

    def _decide(
        self, t_ms: int, comp_risk: np.ndarray, comp_dead: np.ndarray
    ) -> tuple[ComponentContext, tuple[np.ndarray, np.ndarray], Decision]:
        """Context, staleness and the policy's decision per component at tick ``t_ms``."""
        cfg, pol = self.config, self.config.policy
        nc = self.registry.n_components
        comp_system = self.registry.comp_system[:nc]
        ctx = self.context.for_components(comp_system, t_ms, cfg.costs)
        stale = self.context.stale(
            comp_system, ctx.venue, t_ms, pol.stale_positions_s, pol.stale_market_s
        )
        decision = decide(
            comp_risk,
            comp_dead,
            ctx.exposure,
            ctx.market,
            ctx.window_s,
            pol,
            cfg.costs,
            self.horizon_s,
            criticality=self._criticality(nc),
            stale=stale[0] | stale[1],
        )
        return ctx, stale, decision

    def take_reports(self) -> list[dict[str, Any]]:
        """The situation reports due since the last call (:mod:`predictor.sitrep`)."""
        return self.sitreps.take()

    def _criticality(self, nc: int) -> np.ndarray:
        """Criticality per component from the topology (1 where not declared)."""
        if len(self._crit) < nc:
            keys = self.registry.comp_keys
            self._crit = np.array([self.topology.criticality(s, c) for s, c in keys[:nc]])
        return self._crit[:nc]

    # -- views for the API and the terminal (predictor.views) ----------------------------
    def systems_view(self) -> list[dict[str, Any]]:
        """One summary per system: health, worst component, most urgent action."""
        return views.systems_view(self)

    def system_view(self, system: str) -> dict[str, Any]:
        """Components, hosts, exposure and market of one system."""
        return views.system_view(self, system)

    # -- state (predictor.snapshot) ---------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The state as a picklable value (not the model or config): one part per concept.

        Versioned: :meth:`from_snapshot` refuses a layout it does not know, by name.
        """
        return parts.compose(self)

    @classmethod
    def from_snapshot(
        cls,
        snap: dict[str, Any],
        config: EngineConfig,
        model: RiskModel | None = None,
        topology: Topology | None = None,
    ) -> Engine:
        """The engine of ``snap``; ``topology`` (else the config's, else the snapshot's own)
        declares the systems. A snapshot without a ``sites`` part (older) has every system
        on its primary site."""
        state = parts.opened(snap)
        reg = Registry.from_snapshot(state["registry"])
        written = written_topology(state.get("sites"))
        if topology is None and config.topology.systems:
            topology = config.topology
        if topology is None:
            topology = Topology.from_mapping(written, "snapshot topology")
        eng = cls(config, None, reg.critical_cfg, reg.system_venue_cfg, topology)
        parts.restore(eng, reg, state)
        eng._ensure_levels()
        eng.set_model(model)
        return eng

    def nbytes_per_entity(self) -> float:
        """State bytes per tracked host: features + detector + loop arrays."""
        n = max(1, self.n_entities)
        loop = sum(getattr(self, name).nbytes / len(getattr(self, name)) for name in HOST_FILL)
        loop += self.registry.slot_comp.nbytes / len(self.registry.slot_comp)
        return (
            self.features.nbytes_per_entity()
            + self.detector.nbytes_per_entity()
            + loop
            + 200.0 * self.n_entities / n  # registry dict + key tuple, measured ≈ 200 B
        )
