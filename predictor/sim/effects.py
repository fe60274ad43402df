"""How an episode changes a host's telemetry: precursors, outages, benign disturbances.

:func:`apply_episode` works on noise-free metric levels, one array of shape (steps,
entities) per metric, before the simulator adds noise: a failure mode's precursor drifts
its metrics toward the outage (one function per mode), the outage either silences the
host or pins extreme values, and a benign episode disturbs some of the same metrics
without that trend.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from predictor.sim.modes import Episode

__all__ = ["apply_episode"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_MIN_MS = 60_000


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
        Entity columns hit directly and second-hand
        (:meth:`predictor.sim.schedule.Schedule.columns`).
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
