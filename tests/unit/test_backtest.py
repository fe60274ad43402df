"""precovery backtest on a small history: the JSON's keys, determinism, the cost model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli.main import app
from pipelines.files.ports import write_dataset
from pipelines.offline.backtest import (
    KEYS,
    POLICIES,
    BacktestConfig,
    IncidentRow,
    RecordedContext,
    backtest,
    cost_policy,
    svg_plot,
    table,
)
from predictor.engine import EngineConfig
from predictor.market import CostConfig
from predictor.risk import RiskModel
from predictor.sim import SimConfig, Simulator
from predictor.topology import Topology

HOURS = 1.0


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An hour of the 17-host fleet with many failures (kept short: four engine runs)."""
    sim = Simulator(SimConfig(seed=31, failures_per_day=120.0, hosts_per_component=1))
    out = tmp_path_factory.mktemp("history")
    write_dataset(sim, HOURS, out, "parquet")
    return out


def test_every_policy_has_the_documented_keys_and_runs_are_deterministic(
    history: Path, small_model: RiskModel
) -> None:
    bt = BacktestConfig(warmup_s=600.0)
    first = table(backtest(history, EngineConfig(), small_model, bt))
    assert [r["policy"] for r in first] == list(POLICIES)
    for row in first:
        assert set(KEYS) <= set(row)
        assert row["total_cost_usd"] == pytest.approx(
            row["outage_cost_usd"] + row["switch_cost_usd"], abs=0.02
        )
        assert 0 <= row["unnecessary_failovers"] <= row["failovers"]
        assert row["outages_avoided"] <= row["incidents"]
    never = first[1]
    assert never["failovers"] == 0 and never["switch_cost_usd"] == 0
    assert never["incidents"] > 0 and never["outage_cost_usd"] > 0
    reactive = first[2]
    assert reactive["outage_cost_usd"] <= never["outage_cost_usd"]
    assert table(backtest(history, EngineConfig(), small_model, bt)) == first


def test_the_cost_model_prices_what_happened() -> None:
    """An avoided outage costs its switch only; one cut short costs until the switch."""
    t0 = 1_767_618_000_000  # 2026-01-05T13:00Z
    ctx = RecordedContext(None, None)  # the engine's default market, no positions
    costs = CostConfig()
    inc = IncidentRow("s", "gw", t0 + 600_000, t0 + 600_000 + 20 * 60_000)
    protect, planned = 1_800_000, int(costs.planned_switch_min * 60_000)

    def run(switch_at: list[int]) -> dict[str, float]:
        r = cost_policy("p", {"s": switch_at}, [inc], ctx, costs, Topology(), protect, planned)
        return r.as_dict()

    never, before = run([]), run([t0])
    assert never["outage_cost_usd"] == pytest.approx(400.0 * 20)  # lost flow, 20 min
    assert before["outages_avoided"] == 1 and before["outage_cost_usd"] == 0
    assert before["switch_cost_usd"] == pytest.approx(400.0 * costs.planned_switch_min)
    during = run([inc.start_ms + 60_000])
    assert during["outage_cost_usd"] == pytest.approx(400.0 * (1 + costs.planned_switch_min))
    far = run([t0 - 5 * 3_600_000])  # long before: protects nothing, unnecessary
    assert far["unnecessary_failovers"] == 1 and far["outage_cost_usd"] == never["outage_cost_usd"]
    assert "<svg" in svg_plot([])


def test_cli_writes_json_and_plot(history: Path, small_model_dir: Path, tmp_path: Path) -> None:
    out, plot = tmp_path / "bt.json", tmp_path / "bt.svg"
    res = CliRunner().invoke(
        app,
        [
            "backtest",
            "--history",
            str(history),
            "--model",
            str(small_model_dir),
            "--json",
            str(out),
            "--plot",
            str(plot),
            "--warmup-s",
            "600",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    assert [r["policy"] for r in rows] == list(POLICIES)
    assert plot.read_text().startswith("<svg") and "market_aware" in plot.read_text()
    assert "| market_aware |" in res.output


def test_cli_names_a_missing_history(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["backtest", "--history", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "nope" in res.output
