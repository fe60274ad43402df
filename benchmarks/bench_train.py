"""``precovery train-sim`` on a simulated week: time, rows/s, and the fit's threads.

    .venv/bin/python benchmarks/bench_train.py [--hours 168] [--repeats 3]

What ``train-sim`` does, in its two stages, timed separately in one run: simulating the
history and computing the stream's features over it (one pass, rows/s of telemetry), then
labelling, fitting and judging on the test window (``train_full``) with LightGBM on every
core, next to the same fit on one thread as the in-run baseline (medians of
``--repeats``). OpenMP waits passive (set before LightGBM loads, as the CLI does): on a
shared machine spinning threads would steal the cores the other jobs need. Target: the
whole ``train-sim`` on 168 h under 60 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before LightGBM loads OpenMP
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=168.0, help="Simulated hours")
    ap.add_argument("--repeats", type=int, default=3, help="Fits per thread count")
    args = ap.parse_args()

    from datetime import UTC, datetime

    from pipelines.models import BASELINE_FAILURES_PER_DAY, BASELINE_SEED
    from pipelines.train import TrainConfig, build_features, sim_frames, train_full
    from predictor.labels import Incident
    from predictor.sim import SimConfig, Simulator

    cores = os.cpu_count() or 1
    sim = Simulator(
        SimConfig(
            seed=BASELINE_SEED,
            failures_per_day=BASELINE_FAILURES_PER_DAY,
            start=datetime(2026, 1, 5, tzinfo=UTC),
        )
    )
    rows = 0
    last = time.perf_counter()

    def tick(n: int) -> None:
        nonlocal rows, last
        rows += n
        if time.perf_counter() - last > 10:
            last = time.perf_counter()
            print(f"  features: {rows:,} rows", file=sys.stderr)

    t0 = time.perf_counter()
    data = build_features(sim_frames(sim, args.hours), stride=3, progress=tick)
    incidents = [Incident.from_record(r) for r in sim.incidents(args.hours)]
    feat_s = time.perf_counter() - t0
    print(f"features: {rows:,} telemetry rows in {feat_s:.1f} s ({rows / feat_s:,.0f} rows/s)")

    fits: dict[int, list[float]] = {cores: [], 1: []}
    result = None
    for i in range(args.repeats):
        for threads in (cores, 1) if i % 2 == 0 else (1, cores):
            t = time.perf_counter()
            result = train_full(data, incidents, TrainConfig(num_threads=threads))
            fits[threads].append(time.perf_counter() - t)
            print(f"  fit+judge on {threads} thread(s): {fits[threads][-1]:.1f} s", file=sys.stderr)
    assert result is not None
    fit_cores, fit_one = statistics.median(fits[cores]), statistics.median(fits[1])
    total = feat_s + fit_cores
    print(
        f"fit+judge ({len(data.x):,} rows × {len(data.feature_names)} features): "
        f"{fit_cores:.1f} s on {cores} threads, {fit_one:.1f} s on 1 "
        f"({fit_one / fit_cores:.2f}x), median of {args.repeats}"
    )
    print(
        f"train-sim {args.hours:g} h: {total:.1f} s in all ({rows / total:,.0f} telemetry "
        f"rows/s) — target < 60 s: {'met' if total < 60 else 'NOT met'}"
    )
    m = result.report["metrics"]
    print(
        f"model: {m['incidents_caught']}/{m['test_incidents']} test incidents caught, "
        f"PR-AUC {m['pr_auc']:.3f}"
    )


if __name__ == "__main__":
    main()
