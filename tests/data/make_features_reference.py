"""Writes ``features_reference.npz``: the numpy feature update's outputs, recorded.

    .venv/bin/python tests/data/make_features_reference.py

The feature state's compiled kernel (:mod:`predictor.features_kernel`) replaced a numpy
update that split each call into rounds; this file is that update's results on two
streams, so ``tests/unit/test_features_kernel.py`` can pin the kernel to it:

``rand``  nine entities in sparse slots of a state that starts with 4 slots (it grows
          inside a call), five metrics: noisy with spikes and a level shift, exactly
          constant, often absent (and absent for an entity's first readings), never
          present for some entities, and tiny values where the absolute sd floor
          rules. Irregular gaps (seconds to an hour), equal and backward timestamps,
          entities interleaved irregularly (several rows of one entity in a call),
          fed in calls of 1 to 700 rows; parameters all off their defaults, no two
          alike, so a swapped parameter shows.
``sim``   half an hour of a simulated fleet (17 hosts, 15 metrics, seed 11; the last
          20 minutes past the warm-up) in calls of three minutes (~300 rows), default
          parameters. (Half an hour keeps the file under 2 MB.)

For each: the inputs (``slots``, ``ts``, ``x``, the call boundaries ``bounds``), the
parameters (JSON), every output row (float32) and the final state's arrays.

The update recorded is :func:`benchmarks.bench_kernels.numpy_update`, the numpy code
kept verbatim as the benchmark's baseline; when this file was first run it was also
``FeatureState.update`` itself, and the two agreed bit for bit. Rerunning it rewrites
the same file (everything is seeded).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PATH = HERE / "features_reference.npz"
STATE = ("n", "last_ts", "mu_f", "mu_m", "mu_s", "var_s", "persist")

RAND_METRICS = ("cpu_pct", "mem_pct", "gc_pause_ms", "queue_depth", "error_rate")
RAND_PARAMS: dict[str, Any] = {
    "tau_fast_s": 20.0,
    "tau_mid_s": 240.0,
    "tau_slow_s": 2400.0,
    "tau_persist_s": 500.0,
    "persist_z": 2.5,
    "clip_z": 3.5,
    "warmup": 30,
    "rel_sd_floor": 0.03,
    "abs_sd_floor": 0.02,
}
T0_MS = 1_767_571_200_000


def rand_stream(seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ``rand`` stream: ``slots, ts, x`` and the call boundaries."""
    rng = np.random.default_rng(seed)
    slot_ids = np.array([0, 3, 4, 9, 10, 17, 22, 23, 30])
    rows: list[tuple[int, int, int]] = []  # (ts, tiebreak, slot)
    for slot in slot_ids:
        n_ev = int(rng.integers(250, 550))
        gaps = rng.exponential(8_000.0, n_ev).astype(np.int64)
        gaps[rng.random(n_ev) < 0.02] = 3_600_000  # an hour of silence
        gaps[rng.random(n_ev) < 0.03] = 0  # the same timestamp again
        ts = T0_MS + int(rng.integers(0, 60_000)) + np.cumsum(gaps)
        back = rng.random(n_ev) < 0.03  # a reading stamped before the previous one
        ts[back] -= rng.integers(1, 20_000, back.sum())
        rows += [(int(t), int(rng.integers(0, 1 << 30)), int(slot)) for t in ts]
    # Arrival order: mostly by time, with jitter, so entities interleave irregularly and
    # an entity's rows cluster inside a call.
    arrival = np.array([t + rng.normal(0, 15_000.0) for t, _, _ in rows])
    order = np.argsort(arrival, kind="stable")
    slots = np.array([rows[k][2] for k in order], dtype=np.int64)
    ts = np.array([rows[k][0] for k in order], dtype=np.int64)
    # Per entity, keep the generated order (arrival jitter must not reorder an entity).
    for slot in slot_ids:
        mask = slots == slot
        ts[mask] = np.array([t for t, _, s in rows if s == slot], dtype=np.int64)
    n = len(slots)

    x = np.empty((n, len(RAND_METRICS)))
    x[:, 0] = 40.0 + 3.0 * rng.standard_normal(n)
    x[rng.random(n) < 0.01, 0] += 60.0  # spikes
    x[n // 2 :, 0] += 8.0 * (slots[n // 2 :] % 2)  # a level shift on half the entities
    x[:, 1] = 55.0  # exactly constant: the variance stays 0, the sd floors rule
    x[:, 2] = 5.0 + rng.gamma(2.0, 2.0, n)
    x[rng.random(n) < 0.3, 2] = np.nan
    for slot in slot_ids[:4]:  # absent for each entity's first readings
        first = np.flatnonzero(slots == slot)[:40]
        x[first, 2] = np.nan
    x[:, 3] = rng.poisson(12.0, n).astype(np.float64)
    x[np.isin(slots, slot_ids[::3]), 3] = np.nan  # never present for three entities
    x[:, 4] = np.abs(0.001 * rng.standard_normal(n))
    x[rng.random(n) < 0.005, 4] = 0.5
    x[rng.random(x.shape) < 0.03] = np.nan  # a few missing cells everywhere

    sizes = rng.choice([1, 2, 3, 7, 20, 60, 113, 250, 700], size=n)
    bounds = np.minimum(np.concatenate([[0], np.cumsum(sizes)]), n)
    bounds = np.unique(bounds)
    return slots, ts, x, bounds


def sim_stream() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """The ``sim`` stream: ``slots, ts, x``, call boundaries and the metric names."""
    sys.path.insert(0, str(ROOT))
    from predictor.sim import METRICS, SimConfig, Simulator

    sim = Simulator(SimConfig(seed=11, hosts_per_component=1))
    index: dict[tuple[str, str, str], int] = {}
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for chunk in sim.iter_chunks(0.5, chunk_s=180.0):
        df = chunk.telemetry
        keys = zip(df["system"], df["component"], df["host"], strict=True)
        slots = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)
        ts = df["ts"].to_numpy(np.int64)
        parts.append((slots, ts, df[list(METRICS)].to_numpy(np.float64)))
    bounds = np.concatenate([[0], np.cumsum([len(p[0]) for p in parts])])
    slots, ts, x = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return slots, ts, x, bounds, tuple(METRICS)


def record() -> dict[str, np.ndarray]:
    """Run the numpy update over both streams; the arrays ``features_reference.npz`` holds."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_kernels import numpy_update
    from predictor.features import FeatureState

    slots, ts, x, bounds = rand_stream()
    s_slots, s_ts, s_x, s_bounds, s_metrics = sim_stream()
    cases = {
        "rand": (slots, ts, x, bounds, {"metric_names": RAND_METRICS, **RAND_PARAMS}, 4),
        "sim": (s_slots, s_ts, s_x, s_bounds, {"metric_names": s_metrics}, 1024),
    }
    arrays: dict[str, np.ndarray] = {}
    for name, (sl, t, xx, b, params, capacity) in cases.items():
        fs = FeatureState(**params, capacity=capacity)
        outs = [
            numpy_update(fs, sl[i:j], t[i:j], xx[i:j]) for i, j in zip(b[:-1], b[1:], strict=True)
        ]
        arrays |= {
            f"{name}_slots": sl,
            f"{name}_ts": t,
            f"{name}_x": xx,
            f"{name}_bounds": b.astype(np.int64),
            f"{name}_params": np.array(json.dumps(fs.get_params())),
            f"{name}_out": np.concatenate(outs),
        }
        arrays |= {f"{name}_state_{k}": getattr(fs, k) for k in STATE}
    return arrays


def main() -> None:
    arrays = record()
    np.savez_compressed(PATH, **arrays)  # type: ignore[arg-type]
    size = PATH.stat().st_size
    rows = {k.split("_")[0]: len(v) for k, v in arrays.items() if k.endswith("_slots")}
    print(f"wrote {PATH.relative_to(ROOT)}: {size / 1e6:.2f} MB, rows {rows}")


if __name__ == "__main__":
    main()
