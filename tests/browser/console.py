"""A headless Chromium on the SRE console (shared by the browser test and
``benchmarks/console_shot.py``). Not a conftest: see tests/api/support.py.

``chromium()`` runs ``scripts/chromium ensure`` (installs the Debian packages as root, or
fails saying what is missing) and starts Chromium through chromedriver with a fresh
profile and no network chatter of its own.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def ensure_chromium() -> tuple[str, str]:
    """(chromium, chromedriver) paths, installed first when missing; or RuntimeError."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "chromium"), "ensure"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"no headless Chromium: {done.stderr.strip()}")
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return found["CHROMIUM_BIN"], found["CHROMEDRIVER_BIN"]


def chromium(profile: Path) -> Any:
    """A selenium ``webdriver.Chrome`` on the system Chromium; quit it when done."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def push_recommendation(live: Any, rec: dict[str, Any]) -> None:
    """Log ``rec`` as if the worker had just made it (wakes the event streams)."""

    class Result:
        recommendations = [rec]

    live.on_batch(None, Result())
