"""Bounded memory: the demo at high speed for 10+ simulated hours keeps a flat RSS.

Before this was fixed the in-memory source and sink and the demo's recommendation list
kept everything (about 9 KB per event: 0.5 → 3 GB in 20 minutes at 60×). The figures
with a longer run are in benchmarks/bench_demo_memory.py.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from pipelines.embedded.demo import DemoConfig, DemoRun, run_demo
from predictor.risk import RiskModel

pytestmark = pytest.mark.chaos


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS")


def test_demo_memory_is_flat_over_ten_simulated_hours(small_model: RiskModel) -> None:
    samples: list[tuple[float, float, int]] = []  # (sim hours, RSS MiB, records held)
    stop = threading.Event()

    def observe(run: DemoRun) -> None:
        while not stop.is_set():
            wm = run.live.status().get("watermark")
            if wm:
                samples.append(((wm - run.sim.start_ms) / 3.6e6, rss_mib(), run.source.held()))
            time.sleep(0.1)

    # Paced well under the loop's throughput on a busy 2-core machine, so what is measured
    # is memory, not a backlog: 12 simulated hours at 900× take 48 s of wall time.
    speed = 900.0
    cfg = DemoConfig(duration_s=12 * 3600 / speed, speed=speed, warmup_s=3600.0, port=0)
    summary = run_demo(cfg, small_model, Console(file=io.StringIO()), observe=observe)
    stop.set()
    assert summary["events"] > 130_000  # ≥ 10 simulated hours of 38 hosts every 10 s
    assert samples[-1][0] >= 10.0, samples[-1]
    settled = [s for s in samples if s[0] >= 3.0]
    growth = settled[-1][1] - settled[0][1]
    hours = settled[-1][0] - settled[0][0]
    print(f"\nRSS {settled[0][1]:.1f} → {settled[-1][1]:.1f} MiB over {hours:.1f} sim h")
    assert growth < 15.0, f"RSS grew {growth:.1f} MiB over {hours:.1f} simulated hours"
    # The source holds only what is not yet processed, not the run's history.
    assert max(held for _, _, held in settled) < 20_000
