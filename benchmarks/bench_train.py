"""``precovery train-sim`` on a simulated week: time per stage, rows/s, peak memory.

    .venv/bin/python benchmarks/bench_train.py [--hours 168] [--repeats 3] [--rss 24,168]

What ``train-sim`` does, in its two stages, timed separately in one run: simulating the
history and computing the stream's features over it (one pass, rows/s of telemetry),
then labelling, fitting and judging on the test window (``train_full``). The fit is timed
with the current settings (every positive and a hashed ``negative_fraction`` of the calm
rows of the fitting part, weighted back) and, as the in-run baseline, with the previous
ones (every row, ``negative_fraction=1``), alternating, medians of ``--repeats``, on every
core; the model's test-window figures are printed for both. ``--rss H1,H2`` also runs the
whole ``train-sim`` (features sampled while streaming) in a child process per history
length and reports its peak resident memory (``ru_maxrss``). OpenMP waits passive (set
before LightGBM loads, as the CLI does). Target: the whole ``train-sim`` on 168 h under
60 s. The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before LightGBM loads OpenMP
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import os, resource, sys, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, {root!r})
from pipelines.training.models import train_on_simulation
t = time.perf_counter()
model, report = train_on_simulation({hours})
m = report["metrics"]
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      m["rows_train"] + m["rows_test"])
"""


def peak_rss(hours: float) -> tuple[float, float, int]:
    """``(seconds, peak RSS MiB, rows kept)`` of ``train_on_simulation(hours)`` in a child."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), hours=hours)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=168.0, help="Simulated hours")
    ap.add_argument("--repeats", type=int, default=3, help="Fits per setting")
    ap.add_argument(
        "--rss", default="", help="Comma-separated hours: peak memory of train-sim on each"
    )
    args = ap.parse_args()

    from dataclasses import replace
    from datetime import UTC, datetime

    from pipelines.training.models import BASELINE_FAILURES_PER_DAY, BASELINE_SEED
    from pipelines.training.train import TrainConfig, build_features, sim_frames, train_full
    from predictor.labels import Incident
    from predictor.sim import SimConfig, Simulator

    cores = os.cpu_count() or 1
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {cores} cores")
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

    # Every row kept here, so that the baseline fit has them; train-sim keeps only the
    # sample (the engine's work is the same either way: every event goes through it).
    t0, c0 = time.perf_counter(), time.process_time()
    data = build_features(sim_frames(sim, args.hours), stride=3, progress=tick)
    incidents = [Incident.from_record(r) for r in sim.incidents(args.hours)]
    feat_s, feat_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"features: {rows:,} telemetry rows in {feat_s:.1f} s ({rows / feat_s:,.0f} rows/s; "
        f"{feat_cpu:.1f} s of CPU, {rows / feat_cpu:,.0f} rows/CPU-s)"
    )

    current = TrainConfig()
    settings = {"current": current, "baseline": replace(current, negative_fraction=1.0)}
    fits: dict[str, list[float]] = {k: [] for k in settings}
    results = {}
    for i in range(args.repeats):
        for name in list(settings) if i % 2 == 0 else list(settings)[::-1]:
            t = time.perf_counter()
            results[name] = train_full(data, incidents, settings[name])
            fits[name].append(time.perf_counter() - t)
            print(f"  fit+judge, {name}: {fits[name][-1]:.1f} s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in fits.items()}
    for name, res in results.items():
        m = res.report["metrics"]
        print(
            f"fit+judge {name} (negative_fraction {settings[name].negative_fraction:g}, "
            f"{m['rows_train']:,} fit rows × {len(data.feature_names)} features, {cores} "
            f"threads): {med[name]:.1f} s median of {args.repeats} "
            f"({m['rows_train'] / med[name]:,.0f} fit rows/s) — {m['incidents_caught']}/"
            f"{m['test_incidents']} test incidents caught, PR-AUC {m['pr_auc']:.3f}, Brier "
            f"{m['brier']:.4f}, median lead {m['median_lead_time_s']} s, false alarms "
            f"{m['false_alarms_per_entity_day']:.2f} per entity-day"
        )
    print(f"fit speed-up vs baseline: {med['baseline'] / med['current']:.1f}x")
    for name in settings:
        total = feat_s + med[name]
        print(
            f"train-sim {args.hours:g} h, {name}: {total:.1f} s in all ({rows / total:,.0f} "
            f"telemetry rows/s) — target < 60 s: {'met' if total < 60 else 'NOT met'}"
        )
    print(
        f"load average at end: {os.getloadavg()[0]:.1f}; this process's peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB (every row kept)"
    )
    for h in [float(v) for v in args.rss.split(",") if v.strip()]:
        secs, mib, kept = peak_rss(h)
        print(
            f"train-sim {h:g} h in a child process: {secs:.1f} s, peak RSS {mib:,.0f} MiB, "
            f"{kept:,} training + test rows kept"
        )


if __name__ == "__main__":
    main()
