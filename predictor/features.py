"""Per-entity streaming features with small, bounded state.

For every tracked metric an entity keeps three time-aware EWMAs of its level (fast,
mid, slow) and a slow EWMA of its variance: ``5 × 8 B`` per metric, plus a few scalars.
From them each event gets, per metric:

``value``        the raw reading;
``z``            the reading against the slow baseline, in baseline standard deviations;
``level_z``      the fast level against the slow baseline (a *persistent* shift, not a blip);
``slope_short``  (fast - mid level) / lag, in baseline sd per minute: a recent ramp;
``slope_long``   (mid - slow level) / lag, in baseline sd per minute: a leak is a slope;
``persist``      the share of the last ~10 minutes spent beyond ``persist_z`` sd: a
                 precursor persists, a deploy spike or a blip does not.

plus ``gap_s`` (seconds since the entity's previous event) and ``max_abs_z``.

The baseline is *robust*: once warmed up, a reading is winsorised to ``±clip_z`` sd
before it moves the baseline, so one spike does not blind it for an hour.

Speed: :meth:`FeatureState.update` is one call of a compiled loop over the rows
(:mod:`predictor.features_kernel`, numba), whatever their number and however often an
entity repeats among them, so a partition-sized tick costs little more per row than a
full micro-batch. It replaced numpy code that split a call into rounds (each entity at
most once) of ~40 small array operations each, whose fixed cost per round dominated short
calls: on 510 simulated hosts × 15 metrics, 3.10 → 0.44 µs/row in calls of 60 rows and
1.24 → 0.31 µs/row in calls of 5,000 (``benchmarks/bench_kernels.py``, medians of 5 at a
load average of 2.5, the numpy code kept there as the baseline; 7-9× and 4× run to run).
The results are that code's, bit for bit on the recorded streams
(``tests/unit/test_features_kernel.py``), and the same bits however the rows are split
into calls. A process pays numba's start-up on its first update (0.9-1.1 s with
the compiled code cached, 1.6-2.3 s compiling it into an empty cache).

>>> import numpy as np
>>> fs = FeatureState(("cpu_pct",))
>>> ts = np.arange(0, 1_200_000, 10_000, dtype=np.int64) + 1_767_571_200_000
>>> x = np.full((len(ts), 1), 20.0); x[-1, 0] = 80.0
>>> out = fs.update(np.zeros(len(ts), dtype=np.int64), ts, x)
>>> bool(out[-1, fs.feature_names.index("cpu_pct__z")] > 10)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from predictor.contracts import DEFAULT_METRICS
from predictor.features_kernel import Z_CAP as Z_CAP
from predictor.features_kernel import update_rows

PER_METRIC = ("value", "z", "level_z", "slope_short", "slope_long", "persist")
ENTITY_FEATURES = ("gap_s", "max_abs_z")


class FeatureState:
    """Feature state for many entities (rows of its arrays are entity slots).

    Parameters
    ----------
    metric_names
        Metrics to track, in column order of the input matrix.
    tau_fast_s, tau_mid_s, tau_slow_s
        Time constants of the three level EWMAs, seconds.
    tau_persist_s, persist_z
        Time constant (seconds) of the out-of-bounds share, and its bound (sd).
    clip_z
        Readings beyond this many sd are winsorised before updating the baseline.
    warmup
        Events before winsorising starts and before ``z`` is trusted.
    rel_sd_floor, abs_sd_floor
        The baseline sd is at least ``max(abs_sd_floor, rel_sd_floor × |slow level|)``.
    capacity
        Initial number of entity slots; grows by doubling.
    """

    def __init__(
        self,
        metric_names: Sequence[str] = DEFAULT_METRICS,
        tau_fast_s: float = 30.0,
        tau_mid_s: float = 300.0,
        tau_slow_s: float = 3600.0,
        tau_persist_s: float = 600.0,
        persist_z: float = 3.0,
        clip_z: float = 4.0,
        warmup: int = 60,
        rel_sd_floor: float = 0.02,
        abs_sd_floor: float = 0.05,
        capacity: int = 1024,
    ) -> None:
        self.metric_names = tuple(metric_names)
        self.tau_fast_s = tau_fast_s
        self.tau_mid_s = tau_mid_s
        self.tau_slow_s = tau_slow_s
        self.tau_persist_s = tau_persist_s
        self.persist_z = persist_z
        self.clip_z = clip_z
        self.warmup = warmup
        self.rel_sd_floor = rel_sd_floor
        self.abs_sd_floor = abs_sd_floor
        self._alloc(capacity)

    @property
    def feature_names(self) -> list[str]:
        """Column names of the matrix ``update`` returns."""
        names = [f"{m}__{f}" for m in self.metric_names for f in PER_METRIC]
        return names + list(ENTITY_FEATURES)

    @property
    def capacity(self) -> int:
        return len(self.n)

    def _alloc(self, capacity: int) -> None:
        m = len(self.metric_names)
        self.n = np.zeros(capacity, dtype=np.int64)
        self.last_ts = np.zeros(capacity, dtype=np.int64)
        self.mu_f = np.full((capacity, m), np.nan)
        self.mu_m = np.full((capacity, m), np.nan)
        self.mu_s = np.full((capacity, m), np.nan)
        self.var_s = np.zeros((capacity, m))
        self.persist = np.zeros((capacity, m))

    def ensure(self, capacity: int) -> None:
        """Grow to at least ``capacity`` slots, keeping the state."""
        if capacity <= self.capacity:
            return
        new = max(capacity, 2 * self.capacity)
        old = {
            k: getattr(self, k)
            for k in ("n", "last_ts", "mu_f", "mu_m", "mu_s", "var_s", "persist")
        }
        self._alloc(new)
        for k, arr in old.items():
            getattr(self, k)[: len(arr)] = arr

    def nbytes_per_entity(self) -> int:
        """State bytes per entity slot."""
        arrays = (self.n, self.last_ts, self.mu_f, self.mu_m, self.mu_s, self.var_s, self.persist)
        return sum(a.nbytes for a in arrays) // max(1, self.capacity)

    def update(self, slots: np.ndarray, ts_ms: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Ingest events (in order) and return their feature rows, float32.

        One call of the compiled row loop :func:`predictor.features_kernel.update_rows`
        over all rows (an entity may appear any number of times; its rows are taken in
        order). ``slots`` are entity slots (``>= 0``; the state grows to hold the
        largest), ``ts_ms`` event times (epoch ms), ``x`` one column per metric (NaN:
        absent).
        """
        n = len(slots)
        m = len(self.metric_names)
        out = np.empty((n, m * len(PER_METRIC) + len(ENTITY_FEATURES)), dtype=np.float32)
        if n == 0:
            return out
        slots = np.ascontiguousarray(slots, dtype=np.int64)
        ts_ms = np.ascontiguousarray(ts_ms, dtype=np.int64)
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape != (n, m) or ts_ms.shape != (n,):
            raise ValueError(
                f"FeatureState.update: {n} slots need ts_ms of shape ({n},) and x of shape "
                f"({n}, {m}) (metrics {self.metric_names}); got {ts_ms.shape} and {x.shape}"
            )
        lo = int(slots.min())
        if lo < 0:
            raise ValueError(f"FeatureState.update: entity slot {lo} is negative")
        self.ensure(int(slots.max()) + 1)
        update_rows(
            self.n,
            self.last_ts,
            self.mu_f,
            self.mu_m,
            self.mu_s,
            self.var_s,
            self.persist,
            float(self.tau_fast_s),
            float(self.tau_mid_s),
            float(self.tau_slow_s),
            float(self.tau_persist_s),
            float(self.persist_z),
            float(self.clip_z),
            int(self.warmup),
            float(self.rel_sd_floor),
            float(self.abs_sd_floor),
            slots,
            ts_ms,
            x,
            out,
        )
        return out

    def snapshot(self) -> dict[str, Any]:
        """A picklable copy of the state (see :meth:`from_snapshot`)."""
        size = self.capacity
        return {
            "params": self.get_params(),
            "arrays": {
                k: getattr(self, k)[:size].copy()
                for k in ("n", "last_ts", "mu_f", "mu_m", "mu_s", "var_s", "persist")
            },
        }

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> FeatureState:
        fs = cls(**snap["params"], capacity=len(snap["arrays"]["n"]))
        for k, arr in snap["arrays"].items():
            getattr(fs, k)[:] = arr
        return fs

    def get_params(self) -> dict[str, Any]:
        return {
            "metric_names": self.metric_names,
            "tau_fast_s": self.tau_fast_s,
            "tau_mid_s": self.tau_mid_s,
            "tau_slow_s": self.tau_slow_s,
            "tau_persist_s": self.tau_persist_s,
            "persist_z": self.persist_z,
            "clip_z": self.clip_z,
            "warmup": self.warmup,
            "rel_sd_floor": self.rel_sd_floor,
            "abs_sd_floor": self.abs_sd_floor,
        }
