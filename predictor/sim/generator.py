"""The simulator: seeded telemetry, positions, market state and ground truth.

Everything is a pure function of :class:`SimConfig`. Telemetry noise is drawn per time
step from ``(seed, step)``, positions and market state in fixed one-hour blocks, and the
episode schedule one day at a time, so the output never depends on how the time range
is chunked.

>>> sim = Simulator(SimConfig(seed=1))
>>> chunk = next(sim.iter_chunks(hours=0.1))
>>> chunk.telemetry.shape
(228, 19)
>>> list(chunk.telemetry.columns[:5])
['ts', 'system', 'component', 'host', 'cpu_pct']
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from predictor.contracts import DEFAULT_METRICS
from predictor.sim.effects import apply_episode
from predictor.sim.fleet import Fleet, build_fleet
from predictor.sim.market import MarketProcess, PositionProcess, load_curve, open_burst
from predictor.sim.modes import OPEN_BURST_KINDS, Episode, ScheduledFailure
from predictor.sim.schedule import Schedule

logger = logging.getLogger(__name__)

__all__ = [
    "METRICS",
    "SimChunk",
    "SimConfig",
    "Simulator",
    "telemetry_events",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Metric columns, in order; every entity emits all of them.
METRICS: tuple[str, ...] = DEFAULT_METRICS
_ID_COLS = ("ts", "system", "component", "host")

# Per-kind baselines at nominal load, in METRICS order without heartbeat_age_ms:
# cpu mem gc dblock dblat rtt loss iowait disk queue lat feedlag gaps err
_BASE: dict[str, tuple[float, ...]] = {
    "order-gateway": (35, 45, 8, 0.5, 1.5, 120, 0.002, 2, 40, 20, 250, 1.0, 0.02, 5e-4),
    "risk-engine": (40, 55, 12, 1.0, 2.0, 150, 0.002, 3, 45, 10, 400, 1.0, 0.02, 3e-4),
    "matching-engine": (45, 50, 5, 0.3, 1.0, 60, 0.001, 1.5, 35, 30, 120, 0.5, 0.02, 2e-4),
    "pricing-engine": (50, 50, 6, 0.2, 0.8, 90, 0.002, 1.5, 35, 15, 180, 1.5, 0.05, 3e-4),
    "feed-handler": (30, 40, 4, 0.1, 0.5, 80, 0.003, 1.0, 30, 5, 150, 2.0, 0.2, 2e-4),
    "normalizer": (35, 45, 4, 0.1, 0.5, 80, 0.002, 1.0, 30, 8, 160, 2.5, 0.1, 2e-4),
    "publisher": (25, 40, 4, 0.1, 0.5, 90, 0.002, 1.0, 30, 6, 140, 3.0, 0.05, 2e-4),
    "database": (30, 65, 2, 2.0, 3.0, 200, 0.001, 6, 55, 8, 600, 0.5, 0.0, 2e-4),
    "reporting": (20, 50, 10, 1.0, 4.0, 200, 0.002, 4, 50, 4, 900, 5.0, 0.0, 5e-4),
}
_DEFAULT_BASE = _BASE["reporting"]
_HEARTBEAT_MS = 250.0
_NOISE_TAG = 31


@dataclass(frozen=True)
class SimConfig:
    """Everything the simulator output depends on.

    Parameters
    ----------
    seed : int
        Root of every random draw.
    start : datetime
        Simulation origin, timezone-aware (default Monday 2026-01-05 00:00 UTC).
    interval_s : float
        Seconds between two telemetry events of one entity.
    failures_per_day, benign_per_day : float
        Mean random episodes per simulated day, per copy of the base fleet.
    copies, hosts_per_component : int
        Fleet size, see :func:`~predictor.sim.fleet.build_fleet`.
    scheduled : tuple of ScheduledFailure
        Explicit failures placed before the random ones.
    min_gap_s : float
        Quiet time kept between two episodes on one component.
    recovery_s : tuple of float
        Range of unplanned outage durations (18-32 min).
    """

    seed: int = 7
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC)
    interval_s: float = 10.0
    failures_per_day: float = 12.0
    benign_per_day: float = 30.0
    copies: int = 1
    hosts_per_component: int | None = None
    scheduled: tuple[ScheduledFailure, ...] = ()
    min_gap_s: float = 600.0
    recovery_s: tuple[float, float] = (1080.0, 1920.0)


@dataclass(frozen=True)
class SimChunk:
    """One slice ``[t0_ms, t1_ms)`` of simulated output.

    ``telemetry`` has columns ``ts`` (int64 epoch ms), ``system``, ``component``,
    ``host`` then one float64 column per metric, sorted by ts then entity order; silent
    hosts have no rows. ``positions`` and ``market`` hold ``positions.v1`` and
    ``market.v1`` dicts for the whole minutes in the slice.
    """

    t0_ms: int
    t1_ms: int
    telemetry: pd.DataFrame
    positions: list[dict[str, Any]] = field(default_factory=list)
    market: list[dict[str, Any]] = field(default_factory=list)


def _rfc3339(ms: int) -> str:
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    frac = ms % 1000
    body = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{body}.{frac:03d}Z" if frac else f"{body}Z"


class Simulator:
    """A deterministic, seeded trading fleet.

    Parameters
    ----------
    config : SimConfig
        The configuration; nothing else influences the output.

    Attributes
    ----------
    fleet : Fleet
        The simulated systems and entities.
    """

    def __init__(self, config: SimConfig) -> None:
        if config.start.tzinfo is None:
            raise ValueError("SimConfig.start must be timezone-aware")
        if config.interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.config = config
        self.fleet: Fleet = build_fleet(config.copies, config.hosts_per_component)
        self._start = int(round(config.start.timestamp() * 1000))
        self._iv = int(round(config.interval_s * 1000))
        self._schedule = Schedule(
            self.fleet,
            config.seed,
            self._start,
            self._iv,
            config.failures_per_day,
            config.benign_per_day,
            float(config.copies),
            config.scheduled,
            int(round(config.min_gap_s * 1000)),
            config.recovery_s,
        )
        ents = self.fleet.entities
        self._n = len(ents)
        venues = self.fleet.venues
        self._ent_venue = np.array(
            [venues.index(self.fleet.system_venue[e.system]) for e in ents], np.int64
        )
        self._burst_sens = np.array([e.kind in OPEN_BURST_KINDS for e in ents], np.float64)
        self._systems_col = np.array([e.system for e in ents], dtype=object)
        self._components_col = np.array([e.component for e in ents], dtype=object)
        self._hosts_col = np.array([e.host for e in ents], dtype=object)
        self._base = self._baselines(config.seed)
        self._block_steps = int(max(1, min(360, 250_000 // max(1, self._n))))
        self._blocks: dict[int, tuple[pd.DataFrame, IntArray]] = {}
        self._empty: pd.DataFrame | None = None
        origin = self._start - self._start % 60_000
        self._market = MarketProcess(config.seed, venues, origin)
        self._positions = PositionProcess(
            config.seed,
            tuple(s.name for s in self.fleet.systems),
            tuple(s.template for s in self.fleet.systems),
            tuple(s.venue for s in self.fleet.systems),
            origin,
        )

    @property
    def start_ms(self) -> int:
        """Simulation origin, epoch milliseconds."""
        return self._start

    @property
    def interval_ms(self) -> int:
        """Telemetry interval, milliseconds."""
        return self._iv

    def _baselines(self, seed: int) -> dict[str, FloatArray]:
        table = np.array([_BASE.get(e.kind, _DEFAULT_BASE) for e in self.fleet.entities])
        rng = np.random.default_rng((seed, 37))
        # Small per-host offsets: same kind, slightly different hardware and load share.
        mult = np.exp(0.08 * rng.standard_normal(table.shape))
        base = {m: table[:, i] * mult[:, i] for i, m in enumerate(METRICS[:-1])}
        base["cpu_pct"] = table[:, 0] + rng.uniform(-5.0, 5.0, self._n)
        base["mem_pct"] = table[:, 1] + rng.uniform(-6.0, 6.0, self._n)
        base["disk_used_pct"] = table[:, 8] + rng.uniform(-12.0, 12.0, self._n)
        return base

    # -- ground truth -----------------------------------------------------------------

    def _end_ms(self, hours: float) -> int:
        return self._start + int(round(hours * 3_600_000))

    def episodes(self, hours: float) -> list[Episode]:
        """Failures and benign episodes with onset before ``start + hours``, by onset."""
        return self._schedule.until(self._end_ms(hours))

    def incidents(self, hours: float) -> list[dict[str, Any]]:
        """Incidents (DESIGN §2) for failures whose outage starts in ``[start, start+hours)``.

        ``incident_id`` is a hash of the seed and the failure, so it is stable.
        """
        end = self._end_ms(hours)
        out: list[dict[str, Any]] = []
        for ep in self._schedule.until(end):
            if not ep.failure or ep.failure_at_ms is None:
                continue
            if not self._start <= ep.failure_at_ms < end:
                continue
            assert ep.host is not None and ep.resolved_at_ms is not None
            key = f"{self.config.seed}|{ep.kind}|{ep.system}|{ep.component}|{ep.host}|"
            key += str(ep.failure_at_ms)
            critical = self.fleet.is_critical(ep.system, ep.component)
            severity = "P1" if critical else ("P2" if ep.silent else "P3")
            out.append(
                {
                    "incident_id": "INC-" + hashlib.sha1(key.encode()).hexdigest()[:12],
                    "system": ep.system,
                    "component": ep.component,
                    "host": ep.host,
                    "started_at": _rfc3339(ep.failure_at_ms),
                    "resolved_at": _rfc3339(ep.resolved_at_ms),
                    "severity": severity,
                    "kind": ep.kind,
                    "summary": f"{ep.kind} on {ep.host} ended in {ep.outcome}",
                }
            )
        out.sort(key=lambda d: (d["started_at"], d["system"], d["component"], d["host"]))
        return out

    # -- telemetry --------------------------------------------------------------------

    def iter_chunks(
        self, hours: float, chunk_s: float = 60.0, start_s: float = 0.0
    ) -> Iterator[SimChunk]:
        """Yield consecutive chunks covering ``[start + start_s, + hours)``.

        Parameters
        ----------
        hours : float
            Length of the range.
        chunk_s : float, default 60
            Length of each chunk; the last one may be shorter.
        start_s : float, default 0
            Offset of the range from the simulation start (must be >= 0).
        """
        if chunk_s <= 0:
            raise ValueError("chunk_s must be positive")
        if start_s < 0:
            raise ValueError("start_s must be >= 0")
        t = self._start + int(round(start_s * 1000))
        end = t + int(round(hours * 3_600_000))
        step = int(round(chunk_s * 1000))
        while t < end:
            t1 = min(t + step, end)
            yield self._chunk(t, t1)
            t = t1

    def _chunk(self, t0: int, t1: int) -> SimChunk:
        k0 = -(-(t0 - self._start) // self._iv)
        k1 = -(-(t1 - self._start) // self._iv)
        m0 = -(-t0 // 60_000) * 60_000
        minutes = np.arange(m0, t1, 60_000, dtype=np.int64)
        return SimChunk(
            t0_ms=t0,
            t1_ms=t1,
            telemetry=self._telemetry_range(int(k0), int(k1)),
            positions=self._positions.records(minutes),
            market=self._market.records(minutes),
        )

    def _telemetry_range(self, k0: int, k1: int) -> pd.DataFrame:
        # Steps are computed in fixed blocks and sliced: values depend only on the step,
        # so the block size is a speed knob and never changes the output.
        if k1 <= k0:
            if self._empty is None:
                ks = np.zeros(0, np.int64)
                self._empty = self._telemetry(ks, ks)
            return self._empty.copy()
        size = self._block_steps
        parts = []
        for b in range(k0 // size, (k1 - 1) // size + 1):
            df, offsets = self._block(b)
            lo = max(k0, b * size) - b * size
            hi = min(k1, (b + 1) * size) - b * size
            parts.append(df.iloc[int(offsets[lo]) : int(offsets[hi])])
        out = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        return out.reset_index(drop=True)

    def _block(self, b: int) -> tuple[pd.DataFrame, IntArray]:
        hit = self._blocks.get(b)
        if hit is None:
            ks = np.arange(b * self._block_steps, (b + 1) * self._block_steps, dtype=np.int64)
            ts = self._start + ks * self._iv
            df, rows = self._telemetry_rows(ks, ts)
            hit = (df, np.concatenate([[0], np.cumsum(rows)]).astype(np.int64))
            if len(self._blocks) >= 2:
                self._blocks.pop(min(self._blocks))
            self._blocks[b] = hit
        return hit

    def _levels(self, ts: IntArray) -> dict[str, FloatArray]:
        venues = self.fleet.venues
        load = np.stack([load_curve(v, ts) for v in venues], axis=1)[:, self._ent_venue]
        burst = np.stack([open_burst(v, ts) for v in venues], axis=1)[:, self._ent_venue]
        burst *= self._burst_sens
        b = self._base
        shape = (len(ts), self._n)
        return {
            "cpu_pct": b["cpu_pct"] * (0.4 + 0.8 * load) + 25.0 * burst,
            "mem_pct": b["mem_pct"] + 4.0 * load,
            "gc_pause_ms": b["gc_pause_ms"] * (0.6 + 0.6 * load),
            "db_lock_wait_ms": b["db_lock_wait_ms"] * (0.5 + load),
            "db_latency_ms": b["db_latency_ms"] * (0.7 + 0.6 * load),
            "net_rtt_us": b["net_rtt_us"] * (0.9 + 0.2 * load),
            "packet_loss_pct": np.broadcast_to(b["packet_loss_pct"], shape).copy(),
            "disk_io_wait_pct": b["disk_io_wait_pct"] * (0.6 + 0.6 * load),
            "disk_used_pct": np.broadcast_to(b["disk_used_pct"], shape).copy(),
            "queue_depth": b["queue_depth"] * (0.3 + 1.2 * load) * (1.0 + 3.0 * burst),
            "order_latency_p99_us": b["order_latency_p99_us"]
            * (0.8 + 0.5 * load)
            * (1.0 + 1.2 * burst),
            "md_feed_lag_ms": b["md_feed_lag_ms"] * (0.6 + 0.8 * load) * (1.0 + burst),
            "md_seq_gaps": b["md_seq_gaps"] * (0.5 + load),
            "error_rate": b["error_rate"] * (0.8 + 0.4 * load),
            "heartbeat_age_ms": np.full(shape, _HEARTBEAT_MS),
        }

    def _noise(self, ks: IntArray) -> tuple[npt.NDArray[np.float32], FloatArray]:
        n_t = len(ks)
        z = np.empty((n_t, len(METRICS), self._n), np.float32)
        u = np.empty((n_t, 2, self._n))
        for i, k in enumerate(ks.tolist()):
            rng = np.random.default_rng((self.config.seed, _NOISE_TAG, k))
            rng.standard_normal(dtype=np.float32, out=z[i])
            rng.random(out=u[i])
        return z, u

    def _telemetry(self, ks: IntArray, ts: IntArray) -> pd.DataFrame:
        return self._telemetry_rows(ks, ts)[0]

    def _telemetry_rows(self, ks: IntArray, ts: IntArray) -> tuple[pd.DataFrame, IntArray]:
        """Telemetry for steps ``ks`` at ``ts``, and the number of rows of each step."""
        n_t = len(ts)
        alive = np.ones((n_t, self._n), np.bool_)
        if n_t == 0:
            vals0 = {m: np.zeros((0, self._n)) for m in METRICS}
            return self._frame(ts, alive, vals0), np.zeros(0, np.int64)
        lv = self._levels(ts)
        for ep in self._schedule.active(int(ts[0]), int(ts[-1]) + 1):
            cols, sec = self._schedule.columns(ep)
            apply_episode(ep, ts, lv, alive, cols, sec)
        z, u = self._noise(ks)
        zm = {m: z[:, i, :] for i, m in enumerate(METRICS)}
        lam = np.maximum(lv["md_seq_gaps"], 0.0)
        gaps = np.where(
            lam < 1.0,
            (u[:, 1, :] < lam).astype(np.float64),
            np.round(lam + np.sqrt(lam) * zm["md_seq_gaps"]),
        )
        tail = np.where(u[:, 0, :] < 0.01, 3.0, 1.0)  # occasional latency outliers
        vals = {
            "cpu_pct": np.clip(lv["cpu_pct"] + 2.5 * zm["cpu_pct"], 0.5, 100.0),
            "mem_pct": np.clip(lv["mem_pct"] + 0.6 * zm["mem_pct"], 1.0, 100.0),
            "gc_pause_ms": lv["gc_pause_ms"] * np.exp(0.35 * zm["gc_pause_ms"]),
            "db_lock_wait_ms": lv["db_lock_wait_ms"] * np.exp(0.5 * zm["db_lock_wait_ms"]),
            "db_latency_ms": lv["db_latency_ms"] * np.exp(0.25 * zm["db_latency_ms"]),
            "net_rtt_us": lv["net_rtt_us"] * np.exp(0.08 * zm["net_rtt_us"]),
            "packet_loss_pct": np.clip(
                lv["packet_loss_pct"] * np.exp(0.5 * zm["packet_loss_pct"]), 0.0, 100.0
            ),
            "disk_io_wait_pct": np.clip(
                lv["disk_io_wait_pct"] * np.exp(0.3 * zm["disk_io_wait_pct"]), 0.0, 100.0
            ),
            "disk_used_pct": np.clip(lv["disk_used_pct"] + 0.03 * zm["disk_used_pct"], 0.0, 100.0),
            "queue_depth": np.round(lv["queue_depth"] * np.exp(0.35 * zm["queue_depth"])),
            "order_latency_p99_us": lv["order_latency_p99_us"]
            * np.exp(0.12 * zm["order_latency_p99_us"])
            * tail,
            "md_feed_lag_ms": lv["md_feed_lag_ms"] * np.exp(0.3 * zm["md_feed_lag_ms"]),
            "md_seq_gaps": np.maximum(gaps, 0.0),
            "error_rate": np.clip(lv["error_rate"] * np.exp(0.5 * zm["error_rate"]), 0.0, 1.0),
            "heartbeat_age_ms": lv["heartbeat_age_ms"] * np.exp(0.3 * zm["heartbeat_age_ms"]),
        }
        return self._frame(ts, alive, vals), alive.sum(axis=1).astype(np.int64)

    def _frame(
        self, ts: IntArray, alive: npt.NDArray[np.bool_], vals: dict[str, FloatArray]
    ) -> pd.DataFrame:
        n_t = len(ts)
        flat = alive.reshape(-1)
        keep: Any = slice(None) if flat.all() else flat
        data: dict[str, Any] = {
            "ts": np.repeat(ts, self._n)[keep],
            "system": np.tile(self._systems_col, n_t)[keep],
            "component": np.tile(self._components_col, n_t)[keep],
            "host": np.tile(self._hosts_col, n_t)[keep],
        }
        for m in METRICS:
            data[m] = vals[m].reshape(-1)[keep]
        df = pd.DataFrame(data)
        if len(df) == 0:
            strs = dict.fromkeys(("system", "component", "host"), "str")
            df = df.astype({"ts": np.int64, **strs, **dict.fromkeys(METRICS, np.float64)})
        return df


def telemetry_events(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Convert telemetry rows to ``telemetry.v1`` dicts.

    Every column other than ``ts, system, component, host`` is a metric; NaN metrics are
    left out of the event.

    >>> df = pd.DataFrame({"ts": [1000], "system": ["s"], "component": ["c"],
    ...                    "host": ["h"], "cpu_pct": [12.5]})
    >>> telemetry_events(df)
    [{'ts': 1000, 'system': 's', 'component': 'c', 'host': 'h', 'metrics': {'cpu_pct': 12.5}}]
    """
    names = [c for c in df.columns if c not in _ID_COLS]
    values = df[names].to_numpy(dtype=np.float64)
    ts = df["ts"].to_numpy(dtype=np.int64).tolist()
    systems = df["system"].tolist()
    components = df["component"].tolist()
    hosts = df["host"].tolist()
    rows = values.tolist()
    if np.isnan(values).any():
        metrics = [{k: v for k, v in zip(names, r, strict=True) if v == v} for r in rows]
    else:
        metrics = [dict(zip(names, r, strict=True)) for r in rows]
    return [
        {"ts": t, "system": s, "component": c, "host": h, "metrics": m}
        for t, s, c, h, m in zip(ts, systems, components, hosts, metrics, strict=True)
    ]
