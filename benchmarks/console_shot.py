"""A screenshot of the SRE console for the docs: ``docs/console.png``.

    .venv/bin/python benchmarks/console_shot.py [--hours 6] [--out docs/console.png]

Runs what the demo runs — a live state over ``--hours`` of a simulated fleet with a few
failures (the baseline model), a worker that keeps feeding it, the API under uvicorn —
opens ``/console`` in a headless Chromium (``scripts/chromium ensure`` installs it as
root), waits for the fleet, charts and feed, marks one recommendation a false alarm and
saves the page.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "console.png")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from selenium.webdriver.common.by import By

    from pipelines.records.feedback import FeedbackStore
    from pipelines.training.models import load_model
    from serve.app import create_app
    from tests.api.support import build_live
    from tests.browser.console import chromium
    from tests.chaos.harness import FedWorker, ServerThread
    from tests.factories import failure_at, sim_stream

    span = args.hours * 3600.0
    stream = sim_stream(
        args.hours,
        seed=11,
        scheduled=[
            failure_at(span * 0.35, "eq-oms", "order-gateway", "disk_filling", lead_s=1800.0),
            failure_at(span * 0.7, "fx-pricing", "database", "memory_leak", lead_s=1800.0),
            failure_at(span * 0.9, lead_s=600.0),
        ],
        failures_per_day=8.0,
        benign_per_day=12.0,
    )
    live = build_live(stream, load_model(ROOT / "models" / "baseline"), max_batch=200)
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(live, feedback=FeedbackStore(Path(tmp) / "feedback.sqlite"))
        with FedWorker(live, period_s=0.5) as _fed, ServerThread(app) as server:
            browser = chromium(Path(tmp) / "profile")
            try:
                browser.set_window_size(1400, 1100)
                browser.get(f"{server.url}/console")
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    charts = browser.find_elements(By.CSS_SELECTOR, "polyline.health")
                    recs = browser.find_elements(By.CSS_SELECTOR, "li.rec")
                    if len(charts) >= 3 and recs:
                        break
                    time.sleep(0.3)
                recs = browser.find_elements(By.CSS_SELECTOR, "li.rec")
                if recs:
                    recs[0].find_element(By.CSS_SELECTOR, "button.false-alarm").click()
                    time.sleep(1.0)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                browser.save_screenshot(str(args.out))
            finally:
                browser.quit()
    print(f"{args.out} ({args.out.stat().st_size:,} bytes; {len(recs)} recommendations shown)")


if __name__ == "__main__":
    main()
