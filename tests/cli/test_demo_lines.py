"""Off a terminal the demo prints one greppable line per recommendation, or JSON lines."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "precovery"
ACTIONS = ("prepare_standby", "failover_at_window", "failover_now")


def run_demo(*extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    cmd = [str(EXE), "demo", "--duration", "4", "--port", "0", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_one_line_per_recommendation_at_80_columns() -> None:
    out = run_demo().stdout.splitlines()
    line = re.compile(
        rf"^\d\d:\d\d:\d\dZ [\w-]+/[\w-]+: ({'|'.join(ACTIONS)})( not before \S+)? · risk \d+% · "
        r".+ · stay \$\S+ vs switch \$\S+ · \S+="
    )
    recs = [x for x in out if any(a in x for a in ACTIONS) and "│" not in x]
    assert recs, "\n".join(out)
    assert all(line.match(x) for x in recs), "\n".join(recs)
    assert max(map(len, recs)) > 80  # long lines stay whole: no wrapping at 80 columns


@pytest.mark.slow
def test_json_lines_on_stdout_and_the_rest_on_stderr() -> None:
    proc = run_demo("--json")
    recs = [json.loads(x) for x in proc.stdout.splitlines()]
    assert recs, proc.stderr
    assert {r["action"] for r in recs} <= set(ACTIONS)
    assert all(r["recommendation_id"] and r["system"] and r["risk"] is not None for r in recs)
    assert "Precovery demo" in proc.stderr and "Demo summary" in proc.stderr
