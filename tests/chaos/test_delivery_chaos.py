"""Orchestrator push through real processes: the orchestrator down, Precovery killed -9.

The demo (a Precovery process) pushes to a reference orchestrator that is not running
yet, so its recommendations pile up in the durable outbox; it is killed with SIGKILL; the
orchestrator comes up; a restarted demo with the same state delivers the backlog. Every
recommendation queued before the kill reaches the orchestrator exactly once, in order per
system, and nothing is delivered twice.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from pipelines.outbound.orchestrator import record_id

pytestmark = pytest.mark.chaos

PRECOVERY = str(Path(sys.executable).parent / "precovery")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def outbox_rows(path: Path) -> list[tuple[int, str, str, str]]:
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT seq, rec_id, system, state FROM outbox ORDER BY seq").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:  # only what this test started, by PID
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=30)


def test_outbox_survives_kill_9_and_an_orchestrator_outage(
    tmp_path: Path, small_model_dir: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/recommendations"
    state = tmp_path / "state"
    outbox = state / "outbox.sqlite"
    demo = [
        PRECOVERY,
        "demo",
        "--port",
        "0",
        "--speed",
        "120",
        "--model",
        str(small_model_dir),
        "--orchestrator-url",
        url,
        "--state-dir",
        str(state),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log1 = open(tmp_path / "demo1.log", "wb")  # noqa: SIM115 - closed below
    first = subprocess.Popen(
        [*demo, "--duration", "120"], stdout=log1, stderr=subprocess.STDOUT, env=env
    )
    procs.append(first)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(outbox_rows(outbox)) < 6:
        assert first.poll() is None, (tmp_path / "demo1.log").read_text()[-2000:]
        time.sleep(0.5)
    os.kill(first.pid, signal.SIGKILL)  # mid-run, the orchestrator never reached
    first.wait(timeout=30)
    log1.close()
    before = outbox_rows(outbox)
    assert len(before) >= 6 and {r[3] for r in before} == {"pending"}, before

    orch_log = tmp_path / "orchestrator.jsonl"
    orch = subprocess.Popen(
        [PRECOVERY, "orchestrator", "--port", str(port), "--log", str(orch_log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    procs.append(orch)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    second = subprocess.run([*demo, "--duration", "15"], capture_output=True, env=env, timeout=240)
    assert second.returncode == 0, second.stderr[-2000:]

    after = {r[1]: r for r in outbox_rows(outbox)}
    for seq, rid, _system, _state in before:
        assert after[rid][3] == "delivered", (rid, after[rid])
        assert after[rid][0] == seq  # the same row: nothing re-queued
    accepted = [orjson.loads(x) for x in orch_log.read_bytes().splitlines()]
    ids = [record_id(a) for a in accepted]  # recommendations, and situation reports
    assert len(ids) == len(set(ids)), "an orchestrator saw a recommendation twice"
    assert {r[1] for r in before} <= set(ids)
    order = {rid: seq for seq, rid, _s, _st in outbox_rows(outbox)}
    for system in {a["system"] for a in accepted}:
        seqs = [order[record_id(a)] for a in accepted if a["system"] == system]
        epochs = [a["epoch"] for a in accepted if a["system"] == system]
        assert seqs == sorted(seqs) and epochs == sorted(epochs), system
    states = Counter(r[3] for r in after.values())
    # the restarted demo went on above the epochs it had sent, and reports follow the
    # recommendations of their tick: nothing fenced off as stale
    assert set(states) == {"delivered"}, dict(states)
    kinds = Counter(a.get("kind", "recommendation") for a in accepted)
    print(
        f"\nqueued before kill -9: {len(before)}; accepted by the orchestrator: {len(ids)} "
        f"{dict(kinds)} (0 duplicates); outbox now {dict(states)}"
    )
