"""The risk model's compiled trees against LightGBM's ``Booster.predict``, from one run.

    .venv/bin/python benchmarks/bench_risk_trees.py [--hours 1] [--calls 300]

The shipped baseline model (``models/baseline``) scores real feature rows: the stream's
engine run over ``--hours`` of simulated fleet telemetry (warm-up NaNs included), float32
as the engine passes them. For each batch size (1, 30, 120 and 5,000 rows: a lone row,
a tick segment, a partition-sized tick, a backfill chunk) the same batches go through

- ``lightgbm``: ``booster.predict(x, num_threads=1)``, what ``predict_risk`` called;
- ``bitmask``: :meth:`predictor.risk_trees.CompiledTrees.proba`, what it calls now;
- ``walk``: the same, walking each tree node by node (the path for trees over 64 leaves);

and through ``RiskModel.predict_risk`` both ways (the isotonic calibration included),
interleaved call by call (a busy shared machine slows all alike). The table gives the
median µs per call and per row of each, and the ratio of LightGBM's median to each
one's. Every compiled result is checked against LightGBM's before timing (max
absolute difference printed). One-off costs are printed too: parsing the model
(once per model) and numba's first call in this process (a load from its cache, or a
compile after an install).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = (1, 30, 120, 5_000)


def feature_rows(hours: float) -> np.ndarray:
    """The engine's feature rows over ``hours`` of simulated telemetry, float32."""
    from pipelines.training.dataset import build_features, sim_frames
    from predictor.sim import SimConfig, Simulator

    done = [0]

    def progress(rows: int) -> None:
        done[0] += rows
        print(f"  features: {done[0]:,} rows", file=sys.stderr, flush=True)

    ds = build_features(
        sim_frames(Simulator(SimConfig(seed=1)), hours), stride=1, progress=progress
    )
    return np.asarray(ds.x, dtype=np.float32)


def per_call_us(
    fns: dict[str, Callable[[np.ndarray], object]], batches: list[np.ndarray]
) -> dict[str, list[float]]:
    """µs per call of each function over ``batches``, interleaved call by call."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for x in batches:
        for name, fn in fns.items():
            t0 = time.perf_counter_ns()
            fn(x)
            times[name].append((time.perf_counter_ns() - t0) / 1e3)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=1.0, help="simulated telemetry, hours")
    parser.add_argument("--calls", type=int, default=300, help="timed calls per batch size")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from pipelines.training.models import BASELINE_DIR, load_model
    from predictor.risk_trees import compile_booster

    model = load_model(BASELINE_DIR)
    booster = model.booster_
    print(f"simulating {args.hours:g} h of telemetry for feature rows ...", file=sys.stderr)
    rows = feature_rows(args.hours)
    print(
        f"{len(rows):,} feature rows × {rows.shape[1]} features; model: {booster.num_trees()} trees"
    )

    t0 = time.perf_counter()
    trees = compile_booster(booster)
    parse_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    trees.proba(rows[:1])
    first_ms = (time.perf_counter() - t0) * 1e3
    print(
        f"one-off: model parsed into arrays {parse_ms:.1f} ms; first kernel call {first_ms:.1f} ms"
    )
    want = booster.predict(rows, num_threads=1)
    for method in ("bitmask", "walk"):
        diff = float(np.max(np.abs(trees.proba(rows, method) - want)))
        print(f"max |{method} - lightgbm| probability over all rows: {diff:.3g}")

    lgb_model = load_model(BASELINE_DIR)
    lgb_model._compiled = (lgb_model.booster_, None)  # predict_risk's LightGBM path
    model.predict_risk(rows[:1])
    fns: dict[str, Callable[[np.ndarray], object]] = {
        "lightgbm": lambda x: booster.predict(x, num_threads=1),
        "bitmask": lambda x: trees.proba(x, "bitmask"),
        "walk": lambda x: trees.proba(x, "walk"),
        "predict_risk lightgbm": lgb_model.predict_risk,
        "predict_risk compiled": model.predict_risk,
    }
    rng = np.random.default_rng(0)
    header = f"{'rows':>6} {'path':<24} {'µs/call':>10} {'µs/row':>9} {'lightgbm / it':>14}"
    print(header)
    print("-" * len(header))
    for size in SIZES:
        calls = max(10, args.calls if size <= 120 else args.calls // 15)
        starts = rng.integers(0, len(rows) - size + 1, calls)
        batches = [rows[s : s + size] for s in starts]
        print(f"  timing {calls} calls of {size:,} rows ...", file=sys.stderr, flush=True)
        times = per_call_us(fns, batches)
        med = {name: statistics.median(v) for name, v in times.items()}
        for name in fns:
            base = "lightgbm" if "predict_risk" not in name else "predict_risk lightgbm"
            ratio = f"{med[base] / med[name]:.2f}x"
            print(f"{size:>6,} {name:<24} {med[name]:>10.1f} {med[name] / size:>9.2f} {ratio:>14}")


if __name__ == "__main__":
    main()
