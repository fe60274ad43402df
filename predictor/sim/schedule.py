"""The deterministic episode schedule of the simulated fleet, one simulated day at a time.

Random failures and benign anomalies are drawn per day from ``(seed, day)``, explicit
:class:`~predictor.sim.modes.ScheduledFailure` injections are placed first, and two
episodes never overlap on one component (``min_gap_ms`` apart); ``market_open_burst``
episodes are seasonal and exempt.

>>> from predictor.sim.fleet import build_fleet
>>> s = Schedule(build_fleet(), 7, 0, 10_000, 12.0, 30.0, 1.0, (), 600_000, (1080.0, 1920.0))
>>> eps = s.until(86_400_000)
>>> eps == sorted(eps, key=lambda e: e.onset_at_ms) and all(e.onset_at_ms >= 0 for e in eps)
True
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from predictor.errors import ConfigError
from predictor.sim.fleet import Fleet
from predictor.sim.modes import (
    BENIGN_KINDS,
    FAILURE_MODES,
    OPEN_BURST_KINDS,
    Episode,
    ScheduledFailure,
)

__all__ = ["Schedule"]

IntArray = npt.NDArray[np.int64]

_MIN_MS = 60_000
_DAY_MS = 86_400_000

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
