"""Start-up budget of the console script, by the modules it imports (not by a timing).

``precovery --help`` and a wrong path must answer without loading the heavy libraries:
those belong inside the commands that need them (issue 12: every command took 4-8 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: Top-level packages (or our own modules) that only a command's body may import.
HEAVY = (
    "numpy",
    "numba",
    "pandas",
    "pyarrow",
    "scipy",
    "sklearn",
    "river",
    "lightgbm",
    "kafka",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "orjson",
    "pydantic_settings",  # (pydantic itself: typer loads it to render option help)
    "predictor.engine",
    "predictor.sim",
    "predictor.risk",
    "pipelines.embedded.stream",
    "pipelines.settings",
    "pipelines.files.frames",
    "serve",
)

PROBE = """
import json, sys
from pipelines.cli.main import app
try:
    app(sys.argv[2:], prog_name="precovery")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def _probe(tmp_path: Path, *args: str) -> tuple[int, set[str], str]:
    report = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    got = json.loads(report.read_text())
    return got["code"], set(got["modules"]), proc.stdout + proc.stderr


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_importing_the_cli_loads_nothing_heavy(tmp_path: Path) -> None:
    code, modules, _ = _probe(tmp_path)  # no arguments: prints the help
    assert "pipelines.cli.main" in modules and "typer" in modules
    assert _heavy(modules) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["detect", "--help"],
        ["demo", "--help"],
        ["stream", "--help"],
        ["simulate-kafka", "--help"],
    ],
    ids=" ".join,
)
def test_help_loads_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    code, modules, output = _probe(tmp_path, *args)
    assert code == 0, output
    assert "Usage" in output
    assert _heavy(modules) == []


@pytest.mark.parametrize(
    "args",
    [
        ["detect", "missing.csv", "--out", "scores.csv"],
        ["detect", "in.csv", "--out", "no_such_dir/scores.csv"],
        ["train", "--telemetry", "t.csv", "--incidents", "missing.csv", "--out", "m"],
        ["simulate", "--hours", "-1", "--out", "sim"],
        ["evaluate", "--hours", "0"],
        ["demo", "--model", "no_such_model"],
    ],
    ids=" ".join,
)
def test_usage_errors_answer_before_any_heavy_import(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "in.csv").write_text("timestamp,value\n2026-01-05T00:00:00Z,1\n")
    (tmp_path / "t.csv").write_text("timestamp,value\n2026-01-05T00:00:00Z,1\n")
    code, modules, output = _probe(tmp_path, *args)
    assert code == 2, output
    assert output.startswith("error: ") and output.count("\n") == 1, output
    assert _heavy(modules) == []
    assert not (tmp_path / "sim").exists() and not (tmp_path / "no_such_dir").exists()
