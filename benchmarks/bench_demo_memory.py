"""Bounded memory in the long-running mode: the demo's RSS over simulated hours.

Runs ``precovery demo``'s loop (simulator → in-process stream → API) at high speed for
``--hours`` simulated hours after the warm-up and samples the process's resident set
size (RSS, from /proc/self/status) against event time. Memory is *bounded* when RSS
stops growing once the state of every host exists: the figure that matters is the
growth from the first live hour to the last, in MiB per simulated hour, next to the
growth the old unbounded run showed (about 9 KB per event).

    .venv/bin/python benchmarks/bench_demo_memory.py --hours 12 --speed 7200
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.embedded.demo import DemoConfig, DemoRun, run_demo  # noqa: E402
from pipelines.training.models import load_model  # noqa: E402
from predictor.risk import RiskModel  # noqa: E402


def rss_mib() -> float:
    """Resident set size of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(hours: float, speed: float, warmup_h: float, model: RiskModel | None) -> dict[str, Any]:
    """Run the demo; returns RSS samples by simulated hour and the growth figures."""
    samples: list[tuple[float, float, int]] = []  # (sim hours since start, RSS MiB, events)
    stop = threading.Event()

    def observe(run: DemoRun) -> None:
        start = run.sim.start_ms
        while not stop.is_set():
            st = run.live.status()
            wm = st.get("watermark")
            if wm:
                samples.append(((wm - start) / 3.6e6, rss_mib(), st["counters"]["events"]))
            time.sleep(0.2)

    cfg = DemoConfig(
        duration_s=hours * 3600.0 / speed,
        speed=speed,
        warmup_s=warmup_h * 3600.0,
        port=0,
        bad_every=997,
    )
    t0 = time.monotonic()
    summary = run_demo(cfg, model, Console(file=io.StringIO()), observe=observe)
    stop.set()
    wall = time.monotonic() - t0
    live = [(h, r, n) for h, r, n in samples if h >= warmup_h + 1.0]
    if len(live) < 4:
        raise RuntimeError(f"too few samples in the live part ({len(live)}): run longer")
    first, last = live[0], live[-1]
    per_hour = (last[1] - first[1]) / max(1e-9, last[0] - first[0])
    per_event = (last[1] - first[1]) * 2**20 / max(1, last[2] - first[2])
    by_hour: dict[int, float] = {}
    for h, r, _ in samples:
        by_hour[int(h)] = max(by_hour.get(int(h), 0.0), r)
    return {
        "simulated_hours": round(last[0], 2),
        "events": summary["events"],
        "wall_s": round(wall, 1),
        "rss_mib_first_live_hour": round(first[1], 1),
        "rss_mib_end": round(last[1], 1),
        "rss_mib_peak": round(max(r for _, r, _ in samples), 1),
        "growth_mib_per_sim_hour": round(per_hour, 3),
        "growth_bytes_per_event": round(per_event, 1),
        "rss_mib_median_live": round(statistics.median(r for _, r, _ in live), 1),
        "rss_mib_by_sim_hour": {k: round(v, 1) for k, v in sorted(by_hour.items())},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=12.0, help="simulated live hours")
    ap.add_argument("--speed", type=float, default=7200.0, help="simulated s per wall s")
    ap.add_argument("--warmup-h", type=float, default=1.0, help="simulated warm-up hours")
    ap.add_argument("--model", type=Path, default=Path("models/baseline"))
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    model = load_model(args.model) if args.model.exists() else None
    res = measure(args.hours, args.speed, args.warmup_h, model)
    for k, v in res.items():
        print(f"{k:32s} {v}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
