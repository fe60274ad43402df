"""The compiled row kernels against the numpy code they replaced, from one run.

    .venv/bin/python benchmarks/bench_kernels.py [--section surprise] [--repeats 5]

Sections (``--section``, repeatable; default all): ``features``, ``surprise``, ``risk_trees``.

``features``: :meth:`predictor.features.FeatureState.update` (one compiled loop over the
rows of a call, :mod:`predictor.features_kernel`) against the numpy path it replaced,
kept below as :func:`numpy_update` (the **baseline**: rows split into rounds with each
entity at most once, ~40 array operations per round). Both get the same rows of a
simulated fleet (its 16 metrics, one event per host per 10 s), fed in calls of 60 rows
(a partition-sized tick) and of 5,000 rows (a full micro-batch), each from a fresh state
warmed by the same rows first, untimed, so the timed rows are past the 60-event warm-up
(the winsorised, scored path). Prints the median over ``--repeats`` of µs per row for
both, and their ratio, taken per repeat (a busy shared machine slows both alike). The
kernel is compiled (or loaded from numba's cache) before anything is timed; the first
call's cost is printed on its own line.

``surprise``: :meth:`predictor.detectors.surprise.Surprise.bits_learn_many` (one compiled
loop over the rows of a call, :mod:`predictor.detectors.surprise_kernel`) against the
numpy path it replaced, kept below as :class:`NumpySurprise` (the **baseline**, from
commit 559de31: rows split into rounds with each entity at most once, ~60 array
operations per round, the covariance folded and the PCA refit batched over the round's
entities). Same fleet, same rows, same call sizes as ``features``; both detectors start
each repeat from one snapshot warmed by the untimed rows (through the kernel), so the
timed rows are past the 20-row warm-up, scored and calibrated. Prints medians of µs per
row and of the per-repeat ratio, and asserts the two give the same bits on every timed
row (``rtol`` 1e-4, ``atol`` 1e-6 bits: float32 state summed in another order; the
tests, ``tests/unit/test_surprise_kernel.py``, allow ``atol`` 1e-3) and prints the largest
difference and the mean bits (so the rows compared are not all zero).

``risk_trees``: the risk model's compiled trees against ``Booster.predict`` at 1, 30,
120 and 5,000 rows a call (``benchmarks/bench_risk_trees.py``, its defaults; run that
file for its options).

Print only: no figure here is asserted by a test (tests pin the kernel's *results* to
the baseline, ``tests/unit/test_features_kernel.py``, ``tests/unit/test_surprise_kernel.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from predictor.batching import rounds  # noqa: E402
from predictor.detectors import surprise as sp  # noqa: E402
from predictor.detectors.surprise import Surprise, fisher_bits  # noqa: E402
from predictor.features import ENTITY_FEATURES, PER_METRIC, Z_CAP, FeatureState  # noqa: E402

SECTIONS = ("features", "surprise", "risk_trees")


# -- baseline: the numpy feature update the kernel replaced -------------------------------
def numpy_update(
    fs: FeatureState, slots: np.ndarray, ts_ms: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """The **baseline**: ``FeatureState.update`` as numpy rounds, mutating ``fs``'s arrays.

    The code ``predictor/features.py`` ran before the kernel, kept verbatim (but for
    ``self`` → ``fs``) so the benchmark and the reference generator
    (``tests/data/make_features_reference.py``) run it in the same process.
    """
    n = len(slots)
    m = len(fs.metric_names)
    out = np.empty((n, m * len(PER_METRIC) + len(ENTITY_FEATURES)), dtype=np.float32)
    if n == 0:
        return out
    fs.ensure(int(slots.max()) + 1)
    for idx in rounds(slots):
        out[idx] = numpy_update_round(fs, slots[idx], ts_ms[idx], x[idx])
    return out


def numpy_update_round(
    fs: FeatureState, e: np.ndarray, ts: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """One round of :func:`numpy_update`: entities ``e`` are unique."""
    k, m = x.shape
    count = fs.n[e]
    first = count == 0
    dt = np.where(first, 0.0, np.maximum(ts - fs.last_ts[e], 0) / 1000.0)
    present = ~np.isnan(x)

    mu_f, mu_m, mu_s, var_s = fs.mu_f[e], fs.mu_m[e], fs.mu_s[e], fs.var_s[e]
    fresh = np.isnan(mu_s)  # first reading of this metric for this entity
    seed = present & fresh
    mu_f = np.where(seed, x, mu_f)
    mu_m = np.where(seed, x, mu_m)
    mu_s = np.where(seed, x, mu_s)

    sd = np.sqrt(var_s)
    floor = np.maximum(fs.abs_sd_floor, fs.rel_sd_floor * np.abs(mu_s))
    sd = np.maximum(sd, floor)
    z = np.clip((x - mu_s) / sd, -Z_CAP, Z_CAP)
    warmed = (count >= fs.warmup)[:, None]
    z_out = np.where(warmed, z, 0.0)

    # Winsorise what moves the baseline once the entity has one worth protecting.
    lim = fs.clip_z * sd
    x_b = np.where(warmed, np.clip(x, mu_s - lim, mu_s + lim), x)

    dtc = dt[:, None]
    a_f = -np.expm1(-dtc / fs.tau_fast_s)
    a_m = -np.expm1(-dtc / fs.tau_mid_s)
    a_s = -np.expm1(-dtc / fs.tau_slow_s)
    upd = present & ~seed
    mu_f = np.where(upd, mu_f + a_f * (x - mu_f), mu_f)
    mu_m = np.where(upd, mu_m + a_m * (x_b - mu_m), mu_m)
    diff = x_b - mu_s
    mu_s_new = np.where(upd, mu_s + a_s * diff, mu_s)
    var_s = np.where(upd, (1.0 - a_s) * (var_s + a_s * diff * diff), var_s)

    a_p = -np.expm1(-dtc / fs.tau_persist_s)
    out_of_bounds = (np.abs(z_out) > fs.persist_z).astype(np.float64)
    persist = fs.persist[e]
    persist = np.where(present & warmed, persist + a_p * (out_of_bounds - persist), persist)
    fs.persist[e] = persist
    fs.mu_f[e], fs.mu_m[e], fs.mu_s[e], fs.var_s[e] = mu_f, mu_m, mu_s_new, var_s
    fs.n[e] = count + 1
    fs.last_ts[e] = np.maximum(fs.last_ts[e], ts)

    lag_short = (fs.tau_mid_s - fs.tau_fast_s) / 60.0
    lag_long = (fs.tau_slow_s - fs.tau_mid_s) / 60.0
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


# -- the features section -----------------------------------------------------------------
def fleet_rows(copies: int, steps: int, seed: int = 7) -> tuple[np.ndarray, ...]:
    """``steps`` intervals of a simulated fleet (``copies`` × 51 hosts): slots, ts, x."""
    from predictor.sim import METRICS, SimConfig, Simulator

    sim = Simulator(SimConfig(seed=seed, copies=copies, hosts_per_component=3))
    index: dict[tuple[str, str, str], int] = {}
    parts = []
    hours = steps * sim.config.interval_s / 3600.0
    for chunk in sim.iter_chunks(hours, chunk_s=600.0):
        df = chunk.telemetry
        keys = zip(df["system"], df["component"], df["host"], strict=True)
        slots = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)
        parts.append((slots, df["ts"].to_numpy(np.int64), df[list(METRICS)].to_numpy(float)))
    slots, ts, x = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return slots, ts, x, np.array(METRICS)


Update = Callable[[FeatureState, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def timed(update: Update, warm: dict, rows: tuple[np.ndarray, ...], call: int) -> float:
    """Seconds to feed ``rows`` in calls of ``call`` rows, from a copy of ``warm``."""
    fs = FeatureState.from_snapshot(warm)
    slots, ts, x = rows
    t0 = time.perf_counter()
    for i in range(0, len(slots), call):
        update(fs, slots[i : i + call], ts[i : i + call], x[i : i + call])
    return time.perf_counter() - t0


def kernel_update(fs: FeatureState, slots: np.ndarray, ts: np.ndarray, x: np.ndarray) -> np.ndarray:
    return fs.update(slots, ts, x)


def bench_features(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    slots, ts, x, metrics = fleet_rows(args.copies, args.warm_steps + args.steps)
    n_ent = int(slots.max()) + 1
    cut = int(np.searchsorted(ts, ts[0] + args.warm_steps * 10_000))
    print(
        f"features: {n_ent:,} hosts × {len(metrics)} metrics, {cut:,} warm-up rows (untimed), "
        f"{len(slots) - cut:,} timed rows; fleet built in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    fs = FeatureState(tuple(metrics), capacity=n_ent)
    t1 = time.perf_counter()
    fs.update(slots[:1], ts[:1], x[:1])
    print(f"features: first kernel call (compile or cache load) {time.perf_counter() - t1:.2f} s")
    fs = FeatureState(tuple(metrics), capacity=n_ent)
    for i in range(0, cut, 5000):
        fs.update(
            slots[i : min(i + 5000, cut)], ts[i : min(i + 5000, cut)], x[i : min(i + 5000, cut)]
        )
    warm = fs.snapshot()
    rows = (slots[cut:], ts[cut:], x[cut:])
    n = len(rows[0])
    for call in args.calls:
        base_us, kern_us, ratios = [], [], []
        for r in range(args.repeats):
            b = timed(numpy_update, warm, rows, call) / n * 1e6
            k = timed(kernel_update, warm, rows, call) / n * 1e6
            base_us.append(b)
            kern_us.append(k)
            ratios.append(b / k)
            print(f"  calls of {call}: repeat {r + 1}/{args.repeats}", file=sys.stderr)
        base, kern = statistics.median(base_us), statistics.median(kern_us)
        print(
            f"features, calls of {call:>5,} rows: baseline numpy {base:7.2f} µs/row, "
            f"kernel {kern:6.2f} µs/row, "
            f"baseline/kernel {statistics.median(ratios):5.1f}× (medians of {args.repeats})"
        )


# -- baseline: the numpy Surprise row rounds the kernel replaced --------------------------
def soft_clip(z: np.ndarray, c: float) -> np.ndarray:
    """``z`` within ``±c``; beyond, ``±(c + log(|z| / c))``: monotone, compressing, unbounded.

    One metric a billion sd out (a stuck metric that moved) weighs like a few dozen sd,
    yet a 20-sd excursion still outranks a 9-sd one.
    """
    out = np.array(z, dtype=np.float64)
    big = np.nonzero(np.abs(out) > c)  # few cells: the log only there
    zb = out[big]
    out[big] = np.sign(zb) * (c + np.log(np.abs(zb) / c))
    return out


class NumpySurprise(Surprise):
    """The **baseline**: ``Surprise.bits_learn_many`` as numpy rounds (commit 559de31).

    The methods ``predictor/detectors/surprise.py`` ran before the compiled kernel, kept
    verbatim (but for the module prefix ``sp.`` on its constants) on the same state
    arrays and the same :class:`~predictor.detectors.calibration.TailTables`, so a
    snapshot of either detector restores into the other.
    """

    def bits_learn_many(self, keys: np.ndarray, x: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64)
        x = np.asarray(x, dtype=np.float64).reshape(len(keys), self.n_features)
        out = np.zeros(len(keys))
        if len(keys) == 0:
            return out
        self._ensure(int(keys.max()) + 1)
        for idx in rounds(keys):
            out[idx] = self._round(keys[idx], x[idx])
        return out

    def _round(self, e: np.ndarray, x: np.ndarray) -> np.ndarray:
        x = np.where(np.isfinite(x), x, np.nan)
        mean, var, count = self.mean_[e], self.var_[e], self.count_[e]
        present = ~np.isnan(x)
        seed = present & np.isnan(mean)
        mean = np.where(seed, x, mean)
        # A running mean and variance until ``1 / alpha`` rows, an EWMA after: no bias
        # towards the first reading however slow the memory.
        a = np.maximum(self.alpha, 1.0 / (count + 1.0))[:, None]
        sa = np.maximum(self.alpha * sp.SLOW_SHARE, 1.0 / (count + 1.0))[:, None]
        sd = np.sqrt(var)
        slow_var = self.slow_var_[e]
        # A metric that sat still for a while keeps a share of the scale it had before.
        sd = np.maximum(sd, sp.SLOW_SD_SHARE * np.sqrt(slow_var))
        sd = np.maximum(sd, np.maximum(1e-12, self.rel_sd_floor * np.abs(mean)))
        z = np.where(present, (x - mean) / sd, 0.0)
        z = np.clip(z, -sp.Z_CAP, sp.Z_CAP)
        zc = np.clip(z, -self.clip_z, self.clip_z)

        # A metric that never varied counts at most ``clip_z`` sd when it moves: news, but
        # not a billion-sd event that would drown every other metric.
        zs = np.where(slow_var > 0.0, soft_clip(z, self.clip_z), zc)
        warmed = count >= self.warmup
        # Per metric: surprise of |z| under the metric's own tail (heavy-tailed metrics
        # are discounted, a quiet metric that moves is news); summed over metrics.
        tm = zs * zs
        mbits = np.where(present, self._mtab.bits(e, tm), 0.0)
        self._mtab.learn(e, tm, present & warmed[:, None])
        # Normal scores: each metric's surprise back on a z-like scale, so heavy tails and
        # stuck metrics weigh by how unusual they are *for that metric*.
        g = np.sign(z) * np.sqrt(2.0 * np.log(2.0) * mbits)
        # Across metrics: residual off the principal subspace (correlation breaks).
        resid = self.resid_[e].astype(np.float64)
        r = np.matmul(self.proj_[e], g.astype(np.float32)[:, :, None])[:, :, 0]
        r2 = np.square(r, dtype=np.float64).sum(axis=1) / np.maximum(resid, 1e-12)
        n_present = np.maximum(present.sum(axis=1), 1)
        peak = np.maximum(mbits.max(axis=1) - np.log2(n_present), 0.0)
        t = np.stack([peak, mbits.sum(axis=1) / n_present, np.minimum(r2, 1e6)], axis=1)
        have_pca = resid > 0
        bits = self._rtab.bits(e, t)
        bits[:, 2] = np.where(have_pca, bits[:, 2], 0.0)
        score = np.where(warmed, fisher_bits(bits), 0.0)
        counted = warmed[:, None] & (have_pca[:, None] | (np.arange(sp.N_STATS) != 2))
        self._rtab.learn(e, t, counted)

        xb = np.where(
            warmed[:, None], np.clip(x, mean - self.clip_z * sd, mean + self.clip_z * sd), x
        )
        diff = xb - mean
        upd = present & ~seed
        self.mean_[e] = np.where(upd, mean + a * diff, mean)
        self.var_[e] = np.where(upd, (1 - a) * (var + a * diff * diff), var)
        self.slow_var_[e] = np.where(upd, (1 - sa) * (slow_var + sa * diff * diff), slow_var)
        # The covariance learns this row's clipped normal scores, buffered: they are folded
        # into ``cov_`` in one step when the buffer fills or the entity refits its PCA.
        nbuf = self.nbuf_[e]
        self.gbuf_[e, nbuf] = np.clip(g, -self.clip_z, self.clip_z)
        nbuf = nbuf + 1
        new_count = count + 1
        self.count_[e] = new_count
        refit = (new_count >= self.warmup) & (
            (new_count % self.refit_every == 0) | (new_count == self.warmup)
        )
        fold = refit | (nbuf >= sp.FOLD_ROWS)
        self.nbuf_[e] = np.where(fold, 0, nbuf)
        if fold.any():
            self._fold(e[fold], nbuf[fold], new_count[fold])
        if refit.any():
            self._refit(e[refit])
        since = new_count - self.warmup
        recal = (since > 0) & ((since % self.calib_every == 0) | (since == 8) | (since == 16))
        if recal.any():
            self._mtab.refresh(e[recal])
            self._rtab.refresh(e[recal])
        return np.asarray(score)

    def _fold(self, e: np.ndarray, n: np.ndarray, count: np.ndarray) -> None:
        """Fold the ``n`` buffered rows of entities ``e`` into their EWMA covariance.

        Row ``j`` (entity row count ``c_j`` before it) has weight ``w_j = max(cov_alpha,
        1 / (c_j - 1))`` (a running mean at first), so after the rows ``C = Π(1 - w_j) C +
        Σ_j w_j Π_{i>j}(1 - w_i) g_j g_jᵀ``: the row-by-row EWMA, in one ``einsum``.
        """
        j = np.arange(int(n.max()))
        c = count[:, None] - n[:, None] + j  # each buffered row's count before it
        ca = max(self.cov_alpha, 0.0)
        valid = (j < n[:, None]) & (c >= 2)
        w = np.where(valid, np.maximum(ca, 1.0 / np.maximum(c - 1, 1)), 0.0)
        keep = np.cumprod((1.0 - w)[:, ::-1], axis=1)[:, ::-1]  # Π_{i>=j}(1 - w_i)
        after = np.concatenate([keep[:, 1:], np.ones((len(e), 1))], axis=1)
        gb = self.gbuf_[e, : len(j)].astype(np.float32)
        weighted = (w * after).astype(np.float32)[:, :, None] * gb
        cov = keep[:, 0, None, None].astype(np.float32) * self.cov_[e]
        self.cov_[e] = cov + np.matmul(weighted.transpose(0, 2, 1), gb)

    def _refit(self, e: np.ndarray) -> None:
        cov = self.cov_[e].astype(np.float64)
        vals, vecs = np.linalg.eigh(cov)  # ascending
        vals = np.maximum(vals, 0.0)
        total = vals.sum(axis=1, keepdims=True)
        # Keep the largest components until they explain ``var_explained``.
        top_share = np.cumsum(vals[:, ::-1], axis=1)[:, ::-1] / np.maximum(total, 1e-12)
        keep = (top_share - vals / np.maximum(total, 1e-12)) < self.var_explained
        keep[:, -1] = True  # at least the first component
        kept = vecs * keep[:, None, :]
        f = self.n_features
        proj = np.eye(f)[None] - np.einsum("kij,klj->kil", kept, kept)
        resid = (vals * ~keep).sum(axis=1)
        floor = 1e-3 * np.maximum(total[:, 0], 1e-12)
        self.proj_[e] = proj.astype(np.float32)
        self.resid_[e] = np.maximum(resid, floor).astype(np.float32)


# -- the surprise section -----------------------------------------------------------------
def timed_surprise(
    cls: type[Surprise], warm: dict, rows: tuple[np.ndarray, np.ndarray], call: int
) -> tuple[float, np.ndarray]:
    """Seconds to score ``rows`` in calls of ``call`` rows from ``warm``, and the bits."""
    det = cls(n_features=rows[1].shape[1])
    det.restore(warm)
    keys, x = rows
    out = np.empty(len(keys))
    t0 = time.perf_counter()
    for i in range(0, len(keys), call):
        out[i : i + call] = det.bits_learn_many(keys[i : i + call], x[i : i + call])
    return time.perf_counter() - t0, out


def bench_surprise(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    slots, ts, x, metrics = fleet_rows(args.copies, args.warm_steps + args.steps)
    n_ent = int(slots.max()) + 1
    cut = int(np.searchsorted(ts, ts[0] + args.warm_steps * 10_000))
    print(
        f"surprise: {n_ent:,} hosts × {len(metrics)} metrics, {cut:,} warm-up rows (untimed), "
        f"{len(slots) - cut:,} timed rows; fleet built in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    det = Surprise(n_features=len(metrics))
    t1 = time.perf_counter()
    det.bits_learn_many(slots[:1], x[:1])
    print(f"surprise: first kernel call (compile or cache load) {time.perf_counter() - t1:.2f} s")
    det = Surprise(n_features=len(metrics))
    for i in range(0, cut, 5000):
        det.bits_learn_many(slots[i : min(i + 5000, cut)], x[i : min(i + 5000, cut)])
    if int(det.count_[:n_ent].min()) <= det.warmup:
        raise SystemExit(
            f"surprise: --warm-steps {args.warm_steps} leaves a host at "
            f"{int(det.count_[:n_ent].min())} rows, not past the {det.warmup}-row warm-up"
        )
    warm = det.snapshot()
    rows = (slots[cut:], x[cut:])
    n = len(rows[0])
    for call in args.calls:
        base_us, kern_us, ratios = [], [], []
        worst = 0.0
        for r in range(args.repeats):
            tb, bits_b = timed_surprise(NumpySurprise, warm, rows, call)
            tk, bits_k = timed_surprise(Surprise, warm, rows, call)
            # Honest comparison: the same bits on every timed row, or no figure.
            np.testing.assert_allclose(
                bits_k, bits_b, rtol=1e-4, atol=1e-6, err_msg=f"surprise, calls of {call}"
            )
            worst = max(worst, float(np.max(np.abs(bits_k - bits_b))))
            mean_bits = float(bits_k.mean())
            base_us.append(tb / n * 1e6)
            kern_us.append(tk / n * 1e6)
            ratios.append(tb / tk)
            print(f"  calls of {call}: repeat {r + 1}/{args.repeats}", file=sys.stderr)
        base, kern = statistics.median(base_us), statistics.median(kern_us)
        print(
            f"surprise, calls of {call:>5,} rows: baseline numpy {base:7.2f} µs/row, "
            f"kernel {kern:6.2f} µs/row, "
            f"baseline/kernel {statistics.median(ratios):5.1f}× (medians of {args.repeats}); "
            f"same bits on all {n:,} rows (mean {mean_bits:.2f} bits, largest difference "
            f"{worst:.1e} bits)"
        )


COLD_PROBE = """
import time
t0 = time.perf_counter()
import numpy as np
from predictor.features import FeatureState
t1 = time.perf_counter()
fs = FeatureState(("a", "b"))
fs.update(np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros((1, 2)))
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""


def bench_warmup() -> None:
    """First-call cost in a fresh process: cold (empty numba cache), then cached."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold (empty cache)", "cached"):
            res = subprocess.run(
                [sys.executable, "-c", COLD_PROBE],
                env=env,
                cwd=root,
                check=True,
                capture_output=True,
                text=True,
            )
            imp, first = (float(v) for v in res.stdout.split())
            print(f"features warm-up, {label}: import {imp:.2f} s, first update {first:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--section", choices=SECTIONS, action="append", help="default: all")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--copies", type=int, default=10, help="fleet copies (51 hosts each)")
    ap.add_argument("--warm-steps", type=int, default=70, help="untimed 10 s intervals")
    ap.add_argument("--steps", type=int, default=40, help="timed 10 s intervals")
    ap.add_argument("--calls", type=int, nargs="+", default=[60, 5000], help="rows per call")
    args = ap.parse_args()
    for section in args.section or SECTIONS:
        if section == "features":
            bench_warmup()
            bench_features(args)
        if section == "surprise":
            bench_surprise(args)
        if section == "risk_trees":  # the risk model's trees: benchmarks/bench_risk_trees.py
            from benchmarks.bench_risk_trees import main as bench_risk_trees

            bench_risk_trees([])


if __name__ == "__main__":
    main()
