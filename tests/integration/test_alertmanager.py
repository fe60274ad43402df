"""SRE alerts through a real Prometheus Alertmanager: fire, group, dedupe, resolve.

The Alertmanager is the Debian package's binary, started by ``scripts/alertmanager``
(which installs the package when missing and it can) with a config whose receiver is a
webhook served by this test on 127.0.0.1; a missing binary is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipelines.outbound.alertmanager import AlertmanagerClient, AlertNotifier
from tests.unit.test_alerts import rec

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "alertmanager"


class Hooks:
    """The webhook receiver: every notification Alertmanager sends, as JSON."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hooks.got.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, pred: Any, timeout_s: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for note in self.got:
                if pred(note):
                    return note
            time.sleep(0.1)
        pytest.fail(f"no {what} notification in {timeout_s} s; got {self.got}")


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, Hooks]]:
    hooks = Hooks()
    config = tmp_path / "am.yml"
    config.write_text(
        f"""route:
  receiver: hook
  group_by: [system, cause]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs: [{{url: "http://127.0.0.1:{hooks.port}/hook", send_resolved: true}}]
"""
    )
    env = {**os.environ, "PRECOVERY_ALERTMANAGER_STATE": str(tmp_path / "am.env")}
    proc = subprocess.run(
        [str(SCRIPT), "start", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/alertmanager start failed:\n{proc.stderr}", pytrace=False)
    url = proc.stdout.strip().splitlines()[-1].removeprefix("ALERTMANAGER_URL=")
    try:
        yield url, hooks
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, timeout=60, check=False)
        hooks.server.shutdown()
        hooks.server.server_close()


def test_alert_fires_groups_dedupes_and_resolves(alertmanager: tuple[str, Hooks]) -> None:
    url, hooks = alertmanager
    client = AlertmanagerClient(url)
    n = AlertNotifier(client, link="http://127.0.0.1:8000/v1/systems/", repeat_s=60.0)
    # two components of one system fail the same way: one alert, one notification
    n.observe([rec("database", "failover_now", risk=0.97), rec("gateway", "prepare_standby")])
    n.observe([rec("feed", "watch", system="md-feed")])
    assert n.sync() == 2
    assert n.sync() == 0  # nothing changed: nothing re-posted
    firing = hooks.wait(
        lambda m: m["status"] == "firing" and m["groupLabels"].get("system") == "eq-oms",
        15,
        "firing eq-oms",
    )
    assert firing["version"] == "4" and len(firing["alerts"]) == 1
    alert = firing["alerts"][0]
    assert alert["labels"]["severity"] == "P1"
    assert alert["labels"]["alertname"] == "PrecoveryFailureRisk"
    assert "database (failover_now)" in alert["annotations"]["description"]
    assert alert["annotations"]["expected_loss_stay_usd"] == "$20,000"
    assert alert["generatorURL"] == "http://127.0.0.1:8000/v1/systems/eq-oms"
    held = {(a["labels"]["system"], a["labels"]["severity"]) for a in client.alerts()}
    assert held == {("eq-oms", "P1"), ("md-feed", "P4")}

    # health recovers: the alert is resolved, and Alertmanager says so to the receiver
    n.observe([rec("database", "none"), rec("gateway", "none")])
    assert n.sync() == 1
    resolved = hooks.wait(
        lambda m: m["status"] == "resolved" and m["groupLabels"].get("system") == "eq-oms",
        15,
        "resolved eq-oms",
    )
    assert resolved["alerts"][0]["labels"]["severity"] == "P1"
    held = {(a["labels"]["system"], a["labels"]["severity"]) for a in client.alerts()}
    assert held == {("md-feed", "P4")}
    firing_notes = [
        m for m in hooks.got if m["status"] == "firing" and m["groupLabels"]["system"] == "eq-oms"
    ]
    assert len(firing_notes) == 1  # deduplicated: one page for the incident
    client.close()


def test_the_documented_example_routing_is_valid(alertmanager: tuple[str, Hooks]) -> None:
    # amtool ships with the package that the fixture's script installs when missing
    proc = subprocess.run(
        ["amtool", "check-config", str(REPO / "docs" / "alertmanager.example.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Found:" in proc.stdout or "SUCCESS" in proc.stdout


def test_the_demo_s_recommendations_show_up_as_alerts(
    alertmanager: tuple[str, Hooks], small_model: Any
) -> None:
    import io

    from rich.console import Console

    from pipelines.embedded.demo import DemoConfig, run_demo

    url, hooks = alertmanager
    client = AlertmanagerClient(url)
    n = AlertNotifier(client, link="http://127.0.0.1/v1/systems/", repeat_s=30.0)
    cfg = DemoConfig(duration_s=20.0, speed=90.0, port=0, alert_interval_s=0.5)
    summary = run_demo(cfg, small_model, Console(file=io.StringIO()), notifier=n)
    assert summary["failovers_recommended"] > 0, summary
    note = hooks.wait(lambda m: m["status"] == "firing", 15, "firing from the demo")
    systems = {"eq-oms", "fx-pricing", "md-feed"}
    assert note["groupLabels"]["system"] in systems
    fired = {a["labels"]["system"] for m in hooks.got for a in m["alerts"]}
    assert fired <= systems and fired
    assert summary["alerts"]["posted"] >= len(fired)
    client.close()
