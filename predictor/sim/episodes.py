"""Failure modes, benign anomalies and the episode schedule of the simulated fleet.

A *failure* episode has a precursor that builds up from ``onset_at_ms`` to
``failure_at_ms``, then an outage until ``resolved_at_ms``: the host either goes silent
(``crash``, ``partition``, ``unresponsive``) or keeps emitting extreme values (``stall``,
``stale``). Every outage is an incident. A *benign* episode disturbs some of the same
metrics but never ends in failure; precursors differ from it in persistence and trend.

>>> sorted(FAILURE_MODES)[:3]
['cpu_runaway', 'db_lock_contention', 'disk_filling']
>>> FAILURE_MODES["memory_leak"].outcome
'crash'
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from predictor.errors import ConfigError
from predictor.sim.fleet import Fleet

logger = logging.getLogger(__name__)

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

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_MIN_MS = 60_000
_DAY_MS = 86_400_000


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

_SPIKE_METRICS = (
    "cpu_pct",
    "gc_pause_ms",
    "db_latency_ms",
    "net_rtt_us",
    "queue_depth",
    "order_latency_p99_us",
    "md_feed_lag_ms",
    "packet_loss_pct",
    "error_rate",
)
_SECONDARY_KINDS = ("order-gateway", "matching-engine")


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


def _overlaps(busy: list[tuple[int, int]], lo: int, hi: int) -> bool:
    return any(a < hi and lo < b for a, b in busy)


class Schedule:
    """The deterministic episode schedule, generated one simulated day at a time.

    Day ``d`` (24 h from ``start + d days``) is drawn from ``(seed, d)``; days are
    generated in order because an episode must not overlap earlier ones on the same
    component, so the schedule of any range never depends on how it was asked for.
    ``market_open_burst`` episodes are seasonal ground truth, exempt from the overlap
    rule (a failure may well coincide with the open).
    """

    def __init__(
        self,
        fleet: Fleet,
        seed: int,
        start_ms: int,
        interval_ms: int,
        failures_per_day: float,
        benign_per_day: float,
        scale: float,
        scheduled: tuple[ScheduledFailure, ...],
        min_gap_ms: int,
        recovery_s: tuple[float, float],
    ) -> None:
        self._fleet = fleet
        self._seed = seed
        self._start = start_ms
        self._iv = interval_ms
        self._fpd = failures_per_day * scale
        self._bpd = benign_per_day * scale
        self._gap = min_gap_ms
        self._recovery = recovery_s
        self._busy: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self._episodes: list[Episode] = []
        self._days = 0
        self._dirty = True
        self._eff: list[Episode] = []
        self._eff_onset = np.zeros(0, np.int64)
        self._eff_end = np.zeros(0, np.int64)
        self._cols: dict[tuple[str, str, str | None], IntArray] = {}
        self._comp_cols: dict[tuple[str, str], list[int]] = {}
        for i, e in enumerate(fleet.entities):
            self._cols[(e.system, e.component, e.host)] = np.array([i], np.int64)
            self._comp_cols.setdefault((e.system, e.component), []).append(i)
        # Eligible (system, component) pairs per kind, in fleet order.
        self._by_kind: dict[str, list[tuple[str, str]]] = {}
        for s in fleet.systems:
            for c in s.components:
                self._by_kind.setdefault(c.kind, []).append((s.name, c.name))
        self._pairs: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        self._place_scheduled(scheduled)

    # -- generation -------------------------------------------------------------------

    def _snap(self, ms: float) -> int:
        return int(round(ms / self._iv)) * self._iv

    def _recovery_ms(self, rng: np.random.Generator) -> int:
        lo, hi = self._recovery
        return max(self._iv, self._snap(rng.uniform(lo, hi) * 1000.0))

    def _place_scheduled(self, scheduled: tuple[ScheduledFailure, ...]) -> None:
        for i, sf in enumerate(scheduled):
            spec = FAILURE_MODES.get(sf.mode)
            if spec is None:
                raise ConfigError(f"unknown failure mode {sf.mode!r}")
            try:
                hosts = self._fleet.hosts_of(sf.system, sf.component)
            except KeyError as exc:
                raise ConfigError(f"unknown component {sf.system}/{sf.component}") from exc
            rng = np.random.default_rng((self._seed, 23, i))
            host = sf.host if sf.host is not None else hosts[int(rng.integers(len(hosts)))]
            if host not in hosts:
                raise ConfigError(f"unknown host {host!r} for {sf.system}/{sf.component}")
            lead = sf.lead_s if sf.lead_s is not None else sum(spec.lead_s) / 2.0
            fail = self._start + self._snap(sf.failure_at_s * 1000.0)
            onset = fail - max(self._iv, self._snap(lead * 1000.0))
            rec = (
                max(self._iv, self._snap(sf.recovery_s * 1000.0))
                if sf.recovery_s is not None
                else self._recovery_ms(rng)
            )
            ep = Episode(
                kind=sf.mode,
                failure=True,
                system=sf.system,
                component=sf.component,
                host=host,
                onset_at_ms=onset,
                failure_at_ms=fail,
                resolved_at_ms=fail + rec,
                outcome=spec.outcome,
                silent=spec.silent,
                magnitude=1.0,
            )
            key = (sf.system, sf.component)
            if _overlaps(self._busy.get(key, []), onset, fail + rec + self._gap):
                raise ConfigError(f"scheduled failures overlap on {key[0]}/{key[1]}")
            self._busy.setdefault(key, []).append((onset - self._gap, fail + rec + self._gap))
            self._episodes.append(ep)

    def _pick(
        self, rng: np.random.Generator, kinds: tuple[str, ...]
    ) -> tuple[str, str, str] | None:
        pairs = self._pairs.get(kinds)
        if pairs is None:
            pairs = self._pairs[kinds] = [p for k in kinds for p in self._by_kind.get(k, [])]
        if not pairs:
            return None
        system, comp = pairs[int(rng.integers(len(pairs)))]
        hosts = self._comp_cols[(system, comp)]
        host = self._fleet.entities[hosts[int(rng.integers(len(hosts)))]].host
        return system, comp, host

    def _gen_day(self, day: int) -> None:
        rng = np.random.default_rng((self._seed, 29, day))
        d0 = self._start + day * _DAY_MS
        n_fail = int(rng.poisson(self._fpd))
        n_benign = int(rng.poisson(self._bpd))
        names = list(FAILURE_MODES)
        # Cycle through shuffled modes so every mode shows up about equally often.
        modes = [
            names[i] for i in np.concatenate([rng.permutation(len(names))] * (n_fail // 6 + 1))
        ]
        for i in range(n_fail):
            spec = FAILURE_MODES[modes[i]]
            for _ in range(20):
                pick = self._pick(rng, spec.kinds)
                if pick is None:
                    break
                onset = d0 + self._snap(rng.uniform(0.0, _DAY_MS))
                fail = onset + max(self._iv, self._snap(rng.uniform(*spec.lead_s) * 1000.0))
                end = fail + self._recovery_ms(rng)
                if self._reserve(pick[0], pick[1], onset, end):
                    self._episodes.append(
                        Episode(
                            kind=spec.name,
                            failure=True,
                            system=pick[0],
                            component=pick[1],
                            host=pick[2],
                            onset_at_ms=onset,
                            failure_at_ms=fail,
                            resolved_at_ms=end,
                            outcome=spec.outcome,
                            silent=spec.silent,
                            magnitude=float(rng.uniform(0.85, 1.15)),
                        )
                    )
                    break
        bnames = list(BENIGN_KINDS)
        weights = np.array([BENIGN_KINDS[b].weight for b in bnames])
        kinds = rng.choice(len(bnames), size=n_benign, p=weights / weights.sum())
        for k in kinds.tolist():
            bspec = BENIGN_KINDS[bnames[k]]
            for _ in range(20):
                pick = self._pick(rng, bspec.kinds)
                if pick is None:
                    break
                onset = d0 + self._snap(rng.uniform(0.0, _DAY_MS))
                dur = max(self._iv, self._snap(rng.uniform(*bspec.duration_s) * 1000.0))
                metric = _SPIKE_METRICS[int(rng.integers(len(_SPIKE_METRICS)))]
                missed = bool(rng.random() < 0.5)
                mag = float(rng.uniform(0.8, 1.2))
                if self._reserve(pick[0], pick[1], onset, onset + dur):
                    self._episodes.append(
                        Episode(
                            kind=bspec.name,
                            failure=False,
                            system=pick[0],
                            component=pick[1],
                            host=pick[2],
                            onset_at_ms=onset,
                            failure_at_ms=None,
                            resolved_at_ms=onset + dur,
                            magnitude=mag,
                            metric=metric if bspec.name == "spike" else None,
                            missed_at_ms=onset + self._iv
                            if bspec.name == "deploy" and missed
                            else None,
                        )
                    )
                    break
        self._gen_open_bursts(d0, d0 + _DAY_MS)

    def _gen_open_bursts(self, lo: int, hi: int) -> None:
        for c in range(lo // _DAY_MS, (hi - 1) // _DAY_MS + 1):
            if (c + 3) % 7 >= 5:  # weekend (epoch day 0 was a Thursday)
                continue
            for s in self._fleet.systems:
                open_min = 420 if s.venue.startswith("FX") else 870
                onset = c * _DAY_MS + (open_min - 5) * _MIN_MS
                if not lo <= onset < hi:
                    continue
                for comp in s.components:
                    if comp.kind in OPEN_BURST_KINDS:
                        self._episodes.append(
                            Episode(
                                kind="market_open_burst",
                                failure=False,
                                system=s.name,
                                component=comp.name,
                                host=None,
                                onset_at_ms=onset,
                                failure_at_ms=None,
                                resolved_at_ms=onset + 35 * _MIN_MS,
                            )
                        )

    def _reserve(self, system: str, comp: str, onset: int, end: int) -> bool:
        busy = self._busy.setdefault((system, comp), [])
        if _overlaps(busy, onset - self._gap, end + self._gap):
            return False
        busy.append((onset, end))
        return True

    def _ensure(self, end_ms: int) -> None:
        need = max(0, -(-(end_ms - self._start) // _DAY_MS))
        while self._days < need:
            self._gen_day(self._days)
            self._days += 1
            self._dirty = True
        if self._dirty:
            self._episodes.sort(
                key=lambda e: (e.onset_at_ms, e.system, e.component, e.host or "", e.kind)
            )
            self._eff = [e for e in self._episodes if e.kind != "market_open_burst"]
            self._eff_onset = np.array([e.onset_at_ms for e in self._eff], np.int64)
            self._eff_end = np.array([e.end_at_ms for e in self._eff], np.int64)
            self._dirty = False

    # -- queries ----------------------------------------------------------------------

    def until(self, end_ms: int) -> list[Episode]:
        """All episodes with onset before ``end_ms``, sorted by onset."""
        self._ensure(end_ms)
        return [e for e in self._episodes if e.onset_at_ms < end_ms]

    def active(self, t0: int, t1: int) -> list[Episode]:
        """Episodes that change telemetry in ``[t0, t1)``, sorted by onset."""
        self._ensure(t1)
        idx = np.flatnonzero((self._eff_onset < t1) & (self._eff_end > t0))
        return [self._eff[i] for i in idx.tolist()]

    def columns(self, ep: Episode) -> tuple[IntArray, IntArray]:
        """Entity columns an episode hits directly, and those it hits second-hand."""
        if ep.host is not None:
            cols = self._cols[(ep.system, ep.component, ep.host)]
        else:
            cols = np.array(self._comp_cols[(ep.system, ep.component)], np.int64)
        if ep.kind != "db_lock_contention":
            return cols, np.zeros(0, np.int64)
        sec = [
            i
            for c in self._fleet.components_of(ep.system)
            if c.kind in _SECONDARY_KINDS
            for i in self._comp_cols[(ep.system, c.name)]
        ]
        if not sec:
            sec = [
                i
                for c in self._fleet.components_of(ep.system)
                if c.kind != "database"
                for i in self._comp_cols[(ep.system, c.name)]
            ]
        return cols, np.array(sec, np.int64)


# -- effects on telemetry levels --------------------------------------------------------


def _toward(a: FloatArray, rows: slice, cols: IntArray, target: float, w: FloatArray) -> None:
    cur = a[rows, cols]
    a[rows, cols] = cur + (target - cur) * w


def apply_episode(
    ep: Episode,
    ts: IntArray,
    lv: dict[str, FloatArray],
    alive: BoolArray,
    cols: IntArray,
    sec: IntArray,
) -> None:
    """Apply one episode to noise-free metric levels, in place.

    Parameters
    ----------
    ep : Episode
        The episode.
    ts : ndarray of int64, shape (T,)
        Step timestamps of the chunk, ascending.
    lv : dict of str to ndarray, shape (T, E)
        Metric levels before noise; the episode scales, shifts or replaces them.
    alive : ndarray of bool, shape (T, E)
        Which entities emit at each step; silent outages clear it.
    cols, sec : ndarray of int64
        Entity columns hit directly and second-hand (see :meth:`Schedule.columns`).
    """
    lo = int(np.searchsorted(ts, ep.onset_at_ms, "left"))
    hi = int(np.searchsorted(ts, ep.end_at_ms, "left"))
    if lo >= hi:
        return
    if ep.failure:
        assert ep.failure_at_ms is not None
        mid = int(np.searchsorted(ts, ep.failure_at_ms, "left"))
        pre, out = slice(lo, mid), slice(mid, hi)
        span = max(1, ep.failure_at_ms - ep.onset_at_ms)
        p = ((ts[pre] - ep.onset_at_ms) / span)[:, None]
        mins = ((ts[out] - ep.failure_at_ms) / _MIN_MS)[:, None]
        _FAILURE_EFFECTS[ep.kind](ep.magnitude, p, mins, pre, out, lv, cols, sec)
        if ep.silent:
            alive[out, cols] = False
        return
    r = ((ts[lo:hi] - ep.onset_at_ms) / max(1, ep.end_at_ms - ep.onset_at_ms))[:, None]
    _benign(ep, r, slice(lo, hi), ts, lv, alive, cols)


_Effect = dict[str, FloatArray]


def _memory_leak(
    a: float, p: FloatArray, mins: FloatArray, pre: slice, out: slice, lv: _Effect,
    cols: IntArray, sec: IntArray,
) -> None:  # fmt: skip
    _toward(lv["mem_pct"], pre, cols, 97.0, p**1.3)
    lv["gc_pause_ms"][pre, cols] *= 1.0 + 25.0 * a * p**3
    lv["cpu_pct"][pre, cols] += 20.0 * a * p**4
    lv["order_latency_p99_us"][pre, cols] *= 1.0 + 2.0 * p**4


def _db_lock(
    a: float, p: FloatArray, mins: FloatArray, pre: slice, out: slice, lv: _Effect,
    cols: IntArray, sec: IntArray,
) -> None:  # fmt: skip
    lv["db_lock_wait_ms"][pre, cols] *= 1.0 + 60.0 * a * p**2
    lv["db_latency_ms"][pre, cols] *= 1.0 + 12.0 * a * p**2
    lv["cpu_pct"][pre, cols] += 10.0 * p
    q = np.clip((p - 0.4) / 0.6, 0.0, 1.0)
    if len(sec):
        lv["order_latency_p99_us"][pre, sec] *= 1.0 + 6.0 * a * q**2
        lv["queue_depth"][pre, sec] = lv["queue_depth"][pre, sec] * (1.0 + 8.0 * a * q**2)
        lv["queue_depth"][pre, sec] += 50.0 * q**2
        lv["db_lock_wait_ms"][pre, sec] *= 1.0 + 30.0 * q**2
        lv["order_latency_p99_us"][out, sec] *= 50.0
        lv["queue_depth"][out, sec] = np.minimum(2000.0 * (1.0 + mins), 1e5)
        lv["error_rate"][out, sec] = 0.4
    lv["db_lock_wait_ms"][out, cols] = 5000.0
    lv["db_latency_ms"][out, cols] = 2000.0
    lv["error_rate"][out, cols] = 0.3
    lv["queue_depth"][out, cols] = np.minimum(500.0 * (1.0 + mins), 1e5)


def _network(
    a: float, p: FloatArray, mins: FloatArray, pre: slice, out: slice, lv: _Effect,
    cols: IntArray, sec: IntArray,
) -> None:  # fmt: skip
    lv["packet_loss_pct"][pre, cols] += 4.0 * a * p**2
    lv["net_rtt_us"][pre, cols] *= 1.0 + 5.0 * a * p**2
    lv["heartbeat_age_ms"][pre, cols] += 1500.0 * p**3
    lv["error_rate"][pre, cols] *= 1.0 + 20.0 * p**2


def _feed_lag(
    a: float, p: FloatArray, mins: FloatArray, pre: slice, out: slice, lv: _Effect,
    cols: IntArray, sec: IntArray,
) -> None:  # fmt: skip
    lv["md_feed_lag_ms"][pre, cols] *= 1.0 + 150.0 * a * p**2
    lv["md_seq_gaps"][pre, cols] += 25.0 * a * p**2
    lv["cpu_pct"][pre, cols] += 10.0 * p
    lv["md_feed_lag_ms"][out, cols] = 30_000.0 + 60_000.0 * mins
    lv["md_seq_gaps"][out, cols] = 200.0
    lv["error_rate"][out, cols] = 0.2


def _disk_filling(
    a: float, p: FloatArray, mins: FloatArray, pre: slice, out: slice, lv: _Effect,
    cols: IntArray, sec: IntArray,
) -> None:  # fmt: skip
    _toward(lv["disk_used_pct"], pre, cols, 99.4, p)
    lv["disk_io_wait_pct"][pre, cols] += 40.0 * a * p**4
    lv["order_latency_p99_us"][pre, cols] *= 1.0 + p**4


def _cpu_runaway(
    a: float, p: FloatArray, mins: FloatArray, pre: slice, out: slice, lv: _Effect,
    cols: IntArray, sec: IntArray,
) -> None:  # fmt: skip
    _toward(lv["cpu_pct"], pre, cols, 99.0, p**1.5)
    lv["order_latency_p99_us"][pre, cols] *= 1.0 + 12.0 * a * p**3
    lv["queue_depth"][pre, cols] *= 1.0 + 15.0 * a * p**3
    lv["gc_pause_ms"][pre, cols] *= 1.0 + 2.0 * p**2
    lv["heartbeat_age_ms"][pre, cols] += 800.0 * p**4


_FAILURE_EFFECTS = {
    "memory_leak": _memory_leak,
    "db_lock_contention": _db_lock,
    "network_degradation": _network,
    "feed_lag": _feed_lag,
    "disk_filling": _disk_filling,
    "cpu_runaway": _cpu_runaway,
}


def _benign(
    ep: Episode,
    r: FloatArray,
    rows: slice,
    ts: IntArray,
    lv: _Effect,
    alive: BoolArray,
    cols: IntArray,
) -> None:
    a = ep.magnitude
    if ep.kind == "deploy":
        lv["cpu_pct"][rows, cols] += 45.0 * a * np.exp(-r / 0.15)
        lv["mem_pct"][rows, cols] -= 20.0 * (1.0 - r)
        lv["error_rate"][rows, cols] += 0.02 * a * np.exp(-r / 0.1)
        lv["order_latency_p99_us"][rows, cols] *= 1.0 + 1.5 * np.exp(-r / 0.2)
        if ep.missed_at_ms is not None:
            k = int(np.searchsorted(ts, ep.missed_at_ms, "left"))
            if k < len(ts) and ts[k] == ep.missed_at_ms:
                alive[k, cols] = False
    elif ep.kind == "batch_job":
        w = np.clip(np.minimum(r, 1.0 - r) * 10.0, 0.0, 1.0)  # ramps over 10% each side
        lv["cpu_pct"][rows, cols] += 35.0 * a * w
        lv["disk_io_wait_pct"][rows, cols] += 25.0 * a * w
        lv["db_latency_ms"][rows, cols] *= 1.0 + 1.5 * w
        lv["db_lock_wait_ms"][rows, cols] *= 1.0 + 3.0 * w
        lv["queue_depth"][rows, cols] *= 1.0 + w
    elif ep.kind == "cache_warmup":
        w = np.minimum(r / 0.6, 1.0)
        lv["mem_pct"][rows, cols] += 15.0 * a * w
        lv["gc_pause_ms"][rows, cols] *= 1.0 + 1.5 * w
    elif ep.kind == "network_blip":
        w = np.sin(np.pi * np.clip(r, 0.0, 1.0))
        lv["packet_loss_pct"][rows, cols] += 2.0 * a * w
        lv["net_rtt_us"][rows, cols] *= 1.0 + 3.0 * a * w
        lv["heartbeat_age_ms"][rows, cols] += 300.0 * w
    elif ep.kind == "spike" and ep.metric is not None:
        if ep.metric == "cpu_pct":
            lv["cpu_pct"][rows, cols] += 50.0 * a
        elif ep.metric == "packet_loss_pct":
            lv["packet_loss_pct"][rows, cols] += 3.0 * a
        else:
            lv[ep.metric][rows, cols] *= 6.0 * a
