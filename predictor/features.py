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

from predictor.batching import rounds
from predictor.contracts import DEFAULT_METRICS

PER_METRIC = ("value", "z", "level_z", "slope_short", "slope_long", "persist")
ENTITY_FEATURES = ("gap_s", "max_abs_z")
Z_CAP = 50.0


class FeatureState:
    """Vectorised feature state for many entities (rows are entity slots).

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

    def update(
        self,
        slots: np.ndarray,
        ts_ms: np.ndarray,
        x: np.ndarray,
        batch_rounds: list[np.ndarray] | None = None,
    ) -> np.ndarray:
        """Ingest events (in order) and return their feature rows, float32."""
        n = len(slots)
        m = len(self.metric_names)
        out = np.empty((n, m * len(PER_METRIC) + len(ENTITY_FEATURES)), dtype=np.float32)
        if n == 0:
            return out
        self.ensure(int(slots.max()) + 1)
        for idx in batch_rounds if batch_rounds is not None else rounds(slots):
            out[idx] = self._update_round(slots[idx], ts_ms[idx], x[idx])
        return out

    def _update_round(self, e: np.ndarray, ts: np.ndarray, x: np.ndarray) -> np.ndarray:
        k, m = x.shape
        count = self.n[e]
        first = count == 0
        dt = np.where(first, 0.0, np.maximum(ts - self.last_ts[e], 0) / 1000.0)
        present = ~np.isnan(x)

        mu_f, mu_m, mu_s, var_s = self.mu_f[e], self.mu_m[e], self.mu_s[e], self.var_s[e]
        fresh = np.isnan(mu_s)  # first reading of this metric for this entity
        seed = present & fresh
        mu_f = np.where(seed, x, mu_f)
        mu_m = np.where(seed, x, mu_m)
        mu_s = np.where(seed, x, mu_s)

        sd = np.sqrt(var_s)
        floor = np.maximum(self.abs_sd_floor, self.rel_sd_floor * np.abs(mu_s))
        sd = np.maximum(sd, floor)
        z = np.clip((x - mu_s) / sd, -Z_CAP, Z_CAP)
        warmed = (count >= self.warmup)[:, None]
        z_out = np.where(warmed, z, 0.0)

        # Winsorise what moves the baseline once the entity has one worth protecting.
        lim = self.clip_z * sd
        x_b = np.where(warmed, np.clip(x, mu_s - lim, mu_s + lim), x)

        dtc = dt[:, None]
        a_f = -np.expm1(-dtc / self.tau_fast_s)
        a_m = -np.expm1(-dtc / self.tau_mid_s)
        a_s = -np.expm1(-dtc / self.tau_slow_s)
        upd = present & ~seed
        mu_f = np.where(upd, mu_f + a_f * (x - mu_f), mu_f)
        mu_m = np.where(upd, mu_m + a_m * (x_b - mu_m), mu_m)
        diff = x_b - mu_s
        mu_s_new = np.where(upd, mu_s + a_s * diff, mu_s)
        var_s = np.where(upd, (1.0 - a_s) * (var_s + a_s * diff * diff), var_s)

        a_p = -np.expm1(-dtc / self.tau_persist_s)
        out_of_bounds = (np.abs(z_out) > self.persist_z).astype(np.float64)
        persist = self.persist[e]
        persist = np.where(present & warmed, persist + a_p * (out_of_bounds - persist), persist)
        self.persist[e] = persist
        self.mu_f[e], self.mu_m[e], self.mu_s[e], self.var_s[e] = mu_f, mu_m, mu_s_new, var_s
        self.n[e] = count + 1
        self.last_ts[e] = np.maximum(self.last_ts[e], ts)

        lag_short = (self.tau_mid_s - self.tau_fast_s) / 60.0
        lag_long = (self.tau_slow_s - self.tau_mid_s) / 60.0
        out = np.empty((k, m, len(PER_METRIC)), dtype=np.float32)
        out[:, :, 0] = x
        out[:, :, 1] = z_out
        out[:, :, 2] = np.where(warmed, np.clip((mu_f - mu_s_new) / sd, -Z_CAP, Z_CAP), 0.0)
        out[:, :, 3] = np.where(warmed, (mu_f - mu_m) / sd / lag_short, 0.0)
        out[:, :, 4] = np.where(warmed, (mu_m - mu_s_new) / sd / lag_long, 0.0)
        out[:, :, 5] = persist
        flat = out.reshape(k, m * len(PER_METRIC))
        absz = np.abs(np.where(present, z_out, 0.0))
        extra = np.stack([dt, absz.max(axis=1)], axis=1).astype(np.float32)
        return np.concatenate([flat, extra], axis=1)

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
