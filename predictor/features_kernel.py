"""The feature state's update as one compiled loop over the rows of a call.

:meth:`predictor.features.FeatureState.update` calls :func:`update_rows` once per call.
Entities are independent, so walking the rows in order is exactly the numpy update it
replaced (rows split into rounds, each entity at most once per round, an entity's rows in
order): the same arithmetic per cell, in float64, in the same order of operations (no
``fastmath``), stored as float32 where the numpy code stored float32 (the output rows).
``tests/unit/test_features_kernel.py`` pins it to that code's recorded outputs.

numpy's ``maximum`` and ``clip`` return NaN when any operand is NaN (an absent reading, a
metric never seen); :func:`_nanmax` and :func:`_clip` keep that, where Python's ``max``
and ``min`` would not.

>>> import numpy as np
>>> n, last = np.zeros(1, np.int64), np.zeros(1, np.int64)
>>> mu_f, mu_m, mu_s = (np.full((1, 1), np.nan) for _ in range(3))
>>> var_s, persist = np.zeros((1, 1)), np.zeros((1, 1))
>>> out = np.empty((2, 8), np.float32)
>>> update_rows(n, last, mu_f, mu_m, mu_s, var_s, persist,
...             30.0, 300.0, 3600.0, 600.0, 3.0, 4.0, 60, 0.02, 0.05,
...             np.zeros(2, np.int64), np.array([0, 10_000]), np.array([[1.0], [3.0]]), out)
>>> n.tolist(), last.tolist(), out[1, 0].item(), out[1, 6].item()
([2], [10000], 3.0, 10.0)
"""

from __future__ import annotations

import math

import numpy as np

from predictor.jit import kernel

#: Feature columns per metric, as in :data:`predictor.features.PER_METRIC`.
N_PER_METRIC = 6
#: ``z`` and ``level_z`` are clipped to ``±Z_CAP`` baseline sd.
Z_CAP = 50.0


@kernel
def _nanmax(a: float, b: float) -> float:
    """``np.maximum``: NaN if either is NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return a if a >= b else b


@kernel
def _clip(v: float, lo: float, hi: float) -> float:
    """``np.clip`` (``minimum(maximum(v, lo), hi)``): NaN if any is NaN."""
    if math.isnan(v) or math.isnan(lo) or math.isnan(hi):
        return math.nan
    if v < lo:
        v = lo
    if v > hi:
        v = hi
    return v


@kernel
def update_rows(
    n: np.ndarray,
    last_ts: np.ndarray,
    mu_f: np.ndarray,
    mu_m: np.ndarray,
    mu_s: np.ndarray,
    var_s: np.ndarray,
    persist: np.ndarray,
    tau_fast_s: float,
    tau_mid_s: float,
    tau_slow_s: float,
    tau_persist_s: float,
    persist_z: float,
    clip_z: float,
    warmup: int,
    rel_sd_floor: float,
    abs_sd_floor: float,
    slots: np.ndarray,
    ts: np.ndarray,
    x: np.ndarray,
    out: np.ndarray,
) -> None:
    """Ingest rows ``(slots, ts, x)`` in order: update the state, write ``out``'s rows.

    The state arrays (``n``, ``last_ts``: per slot; the rest: slot × metric, float64) are
    mutated in place; every slot must be a valid index. ``out`` is ``(rows, 6 × metrics
    + 2)`` float32, laid out as :attr:`predictor.features.FeatureState.feature_names`.
    """
    z_cap = Z_CAP
    lag_short = (tau_mid_s - tau_fast_s) / 60.0
    lag_long = (tau_slow_s - tau_mid_s) / 60.0
    m = x.shape[1]
    for r in range(len(slots)):
        e = slots[r]
        count = n[e]
        warmed = count >= warmup
        if count == 0:
            dt = 0.0
        else:
            step = ts[r] - last_ts[e]
            dt = (step if step > 0 else 0) / 1000.0
        a_f = -math.expm1(-dt / tau_fast_s)
        a_m = -math.expm1(-dt / tau_mid_s)
        a_s = -math.expm1(-dt / tau_slow_s)
        a_p = -math.expm1(-dt / tau_persist_s)
        max_abs_z = 0.0
        for j in range(m):
            xv = x[r, j]
            present = not math.isnan(xv)
            f, md, s, var = mu_f[e, j], mu_m[e, j], mu_s[e, j], var_s[e, j]
            seed = present and math.isnan(s)  # first reading of this metric
            if seed:
                f = xv
                md = xv
                s = xv

            sd = _nanmax(math.sqrt(var), _nanmax(abs_sd_floor, rel_sd_floor * abs(s)))
            z_out = _clip((xv - s) / sd, -z_cap, z_cap) if warmed else 0.0
            # Winsorise what moves the baseline once the entity has one worth protecting.
            lim = clip_z * sd
            x_b = _clip(xv, s - lim, s + lim) if warmed else xv

            s_new = s
            if present and not seed:
                f = f + a_f * (xv - f)
                md = md + a_m * (x_b - md)
                diff = x_b - s
                s_new = s + a_s * diff
                var = (1.0 - a_s) * (var + a_s * diff * diff)
            p = persist[e, j]
            if present and warmed:
                oob = 1.0 if abs(z_out) > persist_z else 0.0
                p = p + a_p * (oob - p)
            mu_f[e, j], mu_m[e, j], mu_s[e, j], var_s[e, j] = f, md, s_new, var
            persist[e, j] = p

            c = j * N_PER_METRIC
            out[r, c] = xv
            out[r, c + 1] = z_out
            if warmed:
                out[r, c + 2] = _clip((f - s_new) / sd, -z_cap, z_cap)
                out[r, c + 3] = (f - md) / sd / lag_short
                out[r, c + 4] = (md - s_new) / sd / lag_long
            else:
                out[r, c + 2] = 0.0
                out[r, c + 3] = 0.0
                out[r, c + 4] = 0.0
            out[r, c + 5] = p
            # np.max over the row: a NaN (a present reading whose z is NaN) wins.
            az = abs(z_out) if present else 0.0
            if j == 0 or math.isnan(az) or az > max_abs_z:
                max_abs_z = az
        n[e] = count + 1
        if ts[r] > last_ts[e]:
            last_ts[e] = ts[r]
        out[r, m * N_PER_METRIC] = dt
        out[r, m * N_PER_METRIC + 1] = max_abs_z
