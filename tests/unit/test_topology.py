"""Topology files: loaded into the engine's config, and errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.files.topology import read_topology, with_topology
from predictor.engine import EngineConfig
from predictor.errors import ConfigError
from predictor.topology import Topology

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "topology.example.yaml"


def test_the_documented_example_loads() -> None:
    f = read_topology(EXAMPLE)
    assert set(f.topology.systems) == {"eq-oms", "fx-pricing", "md-feed"}
    assert f.topology.criticality("eq-oms", "reporting") == 0.05
    assert f.topology.criticality("fx-pricing", "database") == 0.3  # the number shorthand
    assert f.topology.sites("eq-oms") == ("ny4", "ch2")
    assert f.topology.systems["eq-oms"].authority.limits() == {
        "max_gross_usd": 80e6,
        "max_open_orders": 2000.0,
    }
    assert f.topology.systems["fx-pricing"].authority.mode == "approve"
    assert f.costs.lost_flow_usd_per_min == 400.0 and f.policy.stale_positions_s == 300.0
    config = with_topology(EngineConfig(), EXAMPLE)
    assert config.topology == f.topology
    assert with_topology(EngineConfig(), None) == EngineConfig()


def test_json_and_yaml_say_the_same(tmp_path: Path) -> None:
    data = {"systems": {"s": {"venue": "XNYS", "components": {"db": {"criticality": 0.2}}}}}
    (tmp_path / "t.json").write_text(json.dumps(data))
    assert read_topology(tmp_path / "t.json").topology == Topology.from_mapping(data)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            "systems: {s: {components: {db: {criticality: 1.5}}}}",
            "systems.s.components.db.criticality",
        ),
        (
            "systems: {s: {components: {db: {criticality: high}}}}",
            "systems.s.components.db.criticality",
        ),
        ("systems: {s: {authority: {mode: maybe}}}", "systems.s.authority.mode"),
        ("systems: {s: {authority: {mode: auto, max_gross_usd: -1}}}", "max_gross_usd"),
        ("systems: {s: {authority: {mode: approve, max_gross_usd: 5}}}", "max_gross_usd"),
        ("systems: {s: {authority: {mode: auto, cap: 5}}}", "systems.s.authority.cap"),
        ("systems: {s: {primary_site: a, standby_site: a}}", "systems.s.standby_site"),
        ("systems: {s: {venue: 7}}", "systems.s.venue"),
        ("systems: {s: {colour: red}}", "systems.s.colour"),
        ("system: {}", "system"),
        ("systems: [a, b]", "systems"),
        ("costs: {lost_flow_usd_per_min: -3}", "costs.lost_flow_usd_per_min"),
        ("costs: {lost_flow: 3}", "costs.lost_flow"),
        ("policy: {stale_market_s: soon}", "policy.stale_market_s"),
        ("systems: {s: [", "not valid YAML"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_topology(path)
    assert str(path) in str(err.value) and field in str(err.value), str(err.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml"):
        read_topology(tmp_path / "nope.yaml")


def test_replay_names_a_bad_topology_field(tmp_path: Path, small_model_dir: Path) -> None:
    from typer.testing import CliRunner

    from pipelines.cli.main import app

    history = tmp_path / "history"
    history.mkdir()
    (history / "telemetry.csv").write_text("ts,system,component,host,cpu_pct\n0,s,c,h,1\n")
    bad = tmp_path / "topology.yaml"
    bad.write_text("systems: {s: {authority: {mode: sometimes}}}\n")
    res = CliRunner().invoke(
        app,
        [
            "replay",
            "--history",
            str(history),
            "--out",
            str(tmp_path / "out.jsonl"),
            "--model",
            str(small_model_dir),
            "--topology",
            str(bad),
        ],
    )
    assert res.exit_code == 2, res.output
    assert "systems.s.authority.mode" in res.output
