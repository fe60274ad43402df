"""Active site per system (Engine.fail_over), authority and topology in recommendations."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from predictor.engine import Engine, EngineConfig
from predictor.errors import UnknownEntityError
from predictor.topology import Topology
from tests.factories import INTERVAL_MS, T0_MS, decode, position, steady_stream

A = ("sys-a", "comp-a", "h1")
B = ("sys-a", "comp-b", "h2")

TOPO = Topology.from_mapping(
    {
        "systems": {
            "sys-a": {
                "venue": "XNYS",
                "primary_site": "ny4",
                "standby_site": "ch2",
                "authority": {"mode": "auto", "max_gross_usd": 50e6},
                "components": {"comp-a": {"criticality": 0.3}, "comp-b": 1.0},
            },
            "sys-declared": {"authority": "approve"},
        }
    }
)


def silent_a(engine: Engine, start_step: int = 0) -> list[dict[str, Any]]:
    """A and B report for 20 steps, then only B: A misses its heartbeats."""
    t0 = T0_MS + start_step * INTERVAL_MS
    both = steady_stream([A, B], 20, start_ms=t0)
    only_b = steady_stream([B], 10, start_ms=t0 + 20 * INTERVAL_MS, seed=1)
    events = both + only_b
    recs: list[dict[str, Any]] = []
    for i in range(0, len(events), 50):
        batch = decode(events[i : i + 50], engine.config.metric_names)
        recs += engine.process(batch).recommendations
    return recs


def test_fail_over_flips_the_active_site_and_back() -> None:
    engine = Engine(EngineConfig(), topology=TOPO)
    assert engine.active_site("sys-a") == "ny4"
    assert engine.fail_over("sys-a") == "ch2"
    assert engine.active_site("sys-a") == "ch2"
    assert engine.fail_over("sys-a") == "ny4"
    # declared but not yet seen: known; neither: an error naming it
    assert engine.fail_over("sys-declared") == "standby"
    with pytest.raises(UnknownEntityError, match="nope"):
        engine.fail_over("nope")


def test_a_failover_by_epoch_flips_once_and_travels_in_the_snapshot() -> None:
    engine = Engine(EngineConfig(), topology=TOPO)
    assert engine.knows_system("sys-declared") and not engine.knows_system("nope")
    assert engine.failover_epoch("sys-a") == 0
    assert engine.fail_over("sys-a", epoch=5) == "ch2"
    assert engine.fail_over("sys-a", epoch=5) == "ch2"  # the same approval again: no flip
    assert engine.fail_over("sys-a", epoch=3) == "ch2"  # an older one: no flip
    snap = engine.snapshot()
    back = Engine.from_snapshot(snap, EngineConfig(), topology=TOPO)
    assert back.active_site("sys-a") == "ch2" and back.failover_epoch("sys-a") == 5
    assert back.fail_over("sys-a", epoch=9) == "ny4"  # a later approval flips back
    # a snapshot from before the epoch was kept: its site, no epoch
    del snap["sites"]["epoch"]
    old = Engine.from_snapshot(snap, EngineConfig(), topology=TOPO)
    assert old.active_site("sys-a") == "ch2" and old.failover_epoch("sys-a") == 0


def test_recommendations_name_the_active_site_after_a_failover() -> None:
    engine = Engine(EngineConfig(), topology=TOPO)
    engine.add_positions([position("sys-a", "XNYS", T0_MS, 5e6, 20e6, 7)])
    rec = silent_a(engine)[0]
    assert (rec["active_site"], rec["failover_site"]) == ("ny4", "ch2")
    assert rec["criticality"] == 0.3
    assert rec["authority_declared"] == "auto"
    assert engine.fail_over("sys-a") == "ch2"
    snap = pickle.loads(pickle.dumps(engine.snapshot()))
    restored = Engine.from_snapshot(snap, EngineConfig())
    assert restored.active_site("sys-a") == "ch2"
    assert restored.topology == TOPO  # the snapshot's own topology when none is given


def test_auto_authority_holds_only_within_its_limits() -> None:
    fresh = Engine(EngineConfig(), topology=TOPO)
    fresh.add_positions([position("sys-a", "XNYS", T0_MS + 200_000, 5e6, 20e6, 7)])
    rec = silent_a(fresh)[0]
    assert rec["action"] == "failover_now"
    assert (rec["authority"], rec["auto_limits_hold"], rec["auto_limits_breached"]) == (
        "auto",
        True,
        [],
    )
    big = Engine(EngineConfig(), topology=TOPO)
    big.add_positions([position("sys-a", "XNYS", T0_MS + 200_000, 5e6, 80e6, 7)])
    rec = silent_a(big)[0]
    assert rec["authority"] == "approve" and rec["auto_limits_hold"] is False
    assert "max_gross_usd" in rec["auto_limits_breached"][0]


def test_stale_positions_are_flagged_and_take_auto_authority_away() -> None:
    engine = Engine(EngineConfig(), topology=TOPO)
    engine.add_positions([position("sys-a", "XNYS", T0_MS, 5e6, 20e6, 7)])
    rec = silent_a(engine)[0]  # fires ~230 s after the positions; the bound is 300 s
    assert rec["stale_context"] == []
    old = Engine(EngineConfig(), topology=TOPO)
    old.add_positions([position("sys-a", "XNYS", T0_MS - 600_000, 5e6, 20e6, 7)])
    rec = silent_a(old)[0]  # ~830 s after them
    assert "positions" in rec["stale_context"]
    assert rec["authority"] == "approve" and "positions stale" in rec["auto_limits_breached"]
    assert rec["action"] == "failover_now"  # the heartbeat rule needs no dollars


def test_without_a_topology_the_defaults_apply() -> None:
    engine = Engine(EngineConfig())
    rec = silent_a(engine)[0]
    assert (rec["active_site"], rec["authority"], rec["auto_limits_hold"]) == (
        "primary",
        "approve",
        None,
    )
    assert rec["criticality"] == 1.0
