"""Every README example works as written against the embedded default.

The shell examples are extracted from README.md and run: the API ones against a running
``precovery demo`` (its port substituted for 8000), the ``precovery detect`` ones on
generated inputs, and every ``precovery`` line is parsed by the real command tree. The CLI
reference between the README's markers must equal what the commands generate.
``./scripts/demo`` and ``./scripts/test`` themselves are not run here (one is the demo
below, the other is this suite).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import typer

from pipelines.cli.main import app
from pipelines.cli.reference import reference, splice

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
#: The demo's simulated clock once its two hours of warm-up are played.
LIVE_FROM = "2026-01-05T14:00:00"


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)


def block_with(text: str) -> str:
    found = [b for b in bash_blocks() if text in b]
    assert len(found) == 1, f"one README bash block with {text!r}, found {len(found)}"
    return found[0]


def precovery_lines() -> list[list[str]]:
    """Each ``precovery …`` command of the README's bash blocks, as arguments."""
    commands = []
    for block in bash_blocks():
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("precovery "):
                commands.append(shlex.split(line, comments=True)[1:])
    return commands


def test_the_cli_reference_is_generated_from_the_commands() -> None:
    text = README.read_text()
    assert splice(text, reference()) == text, "run scripts/cli-reference --write"
    # the reference tells the truth about the environment variables issue 12 found wrong
    assert "| `--port INT` | `PRECOVERY_API__PORT` | `8000` |" in text
    assert "| `--model PATH` | `PRECOVERY_MODEL_DIR` |" in text


def test_every_precovery_example_parses() -> None:
    commands = precovery_lines()
    assert len(commands) >= 4
    group: Any = typer.main.get_command(app)
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}
    for args in commands:
        args = [os.path.expandvars(a) if "$" not in a else env[a.strip("${}")] for a in args]
        cmd = group.get_command(group.context_class(group), args[0])
        assert cmd is not None, args
        cmd.make_context(args[0], args[1:])  # raises on an unknown option or a bad value


def test_the_detect_examples_run(tmp_path: Path) -> None:
    block = block_with("precovery detect")
    n = 300
    ts = pd.date_range("2026-01-05", periods=n, freq="1min", tz="UTC")
    pd.DataFrame(
        {
            "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": 100 + np.random.default_rng(1).standard_normal(n),
        }
    ).to_csv(tmp_path / "cpu.csv", index=False)
    sim = tmp_path / "sim"
    sim.mkdir()
    run(["precovery", "simulate", "--hours", "1.5", "--out", "sim"], tmp_path)
    tele = pd.read_parquet(sim / "telemetry.parquet")
    cut = tele["ts"].min() + pd.Timedelta(hours=1)
    tele[tele["ts"] < cut].to_parquet(tmp_path / "fleet_hist.parquet", index=False)
    tele[tele["ts"] >= cut].to_parquet(tmp_path / "fleet.parquet", index=False)
    (tmp_path / "models").symlink_to(ROOT / "models")

    run(["bash", "-euo", "pipefail", "-c", block], tmp_path)

    scores = pd.read_csv(tmp_path / "cpu_scores.csv")
    assert len(scores) == n and scores["anomaly_score"].between(0, 1).all()
    fleet = pd.read_parquet(tmp_path / "s.parquet")
    assert len(fleet) == int((tele["ts"] >= cut).sum())
    assert fleet["risk"].between(0, 1).all() and (fleet["reject_reason"] == "").all()


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture()
def demo(tmp_path: Path) -> Any:
    """A running ``precovery demo`` on the shipped baseline; yields its base URL."""
    log = tmp_path / "demo.log"
    cmd = [str(BIN / "precovery"), "demo", "--duration", "60", "--port", "0"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        base = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"API on (http://127\.0\.0\.1:\d+)", log.read_text())
            if found:
                base = found.group(1)
                health = httpx.get(f"{base}/healthz", timeout=5).json()
                if (health["watermark"] or "") >= LIVE_FROM:  # past the warm-up, as the README says
                    break
            time.sleep(0.25)
        assert base, log.read_text()
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_api_examples_run_against_the_demo(demo: str, tmp_path: Path) -> None:
    block = block_with("curl").replace("localhost:8000", demo.removeprefix("http://"))
    out = run(["bash", "-euo", "pipefail", "-c", block], tmp_path)
    systems_end = out.index("\n]\n") + 3
    systems = json.loads(out[:systems_end])
    assert {s["system"] for s in systems} == {"eq-oms", "fx-pricing", "md-feed"}
    scored = json.loads(out[systems_end:])
    assert "error" not in scored, scored
    assert scored["scored"] == 1 and scored["rejected"] == 0
    assert scored["results"][0]["host"] == "eq-oms-order-gateway-01"
