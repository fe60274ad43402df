"""The engine snapshot's layout is what checkpoints on disk hold (predictor.snapshot).

``tests/data/engine_snapshot_v2.pkl.gz`` is a real snapshot written by the engine before
it was split into sites, reports and snapshot modules (commit e6bf1ee): sys-a's comp-a
silent until ``failover_now`` (epoch 1), that failover applied with
``fail_over("sys-a", 1)``, a situation report taken, positions on sys-a. It holds only
dicts, lists, numbers, strings and numpy arrays (no class of ours), like a checkpoint.
"""

from __future__ import annotations

import copy
import gzip
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from predictor.engine import Engine, EngineConfig
from predictor.errors import ConfigError
from predictor.sites import Sites
from predictor.sitrep import Reports
from tests.factories import INTERVAL_MS, T0_MS, decode, steady_stream
from tests.unit.test_sites import TOPO

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "engine_snapshot_v2.pkl.gz"


def written_before() -> dict[str, Any]:
    with gzip.open(FIXTURE, "rb") as fh:
        snap: dict[str, Any] = pickle.load(fh)
    return snap


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two snapshot values differ (keys in order, array dtypes and values)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return [f"{path}: keys {list(a)} != {list(b)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        same = a.dtype == b.dtype and a.shape == b.shape
        if not same or not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            return [f"{path}: array {a.dtype}{a.shape} != {b.dtype}{b.shape} or values"]
        return []
    if type(a) is not type(b) or (a != b and not (a != a and b != b)):  # NaN == NaN here
        return [f"{path}: {a!r} != {b!r}"]
    return []


def test_a_snapshot_written_before_the_split_loads_and_writes_back_the_same() -> None:
    old = written_before()
    engine = Engine.from_snapshot(copy.deepcopy(old), EngineConfig(), topology=TOPO)
    assert engine.active_site("sys-a") == "ch2" and engine.failover_epoch("sys-a") == 1
    assert engine.sitreps.last_ms[:1].tolist() == old["reports"]["last_ms"].tolist()
    assert differences(old, engine.snapshot()) == []


def test_the_layout_is_unchanged_part_by_part() -> None:
    old = written_before()
    engine = Engine(EngineConfig(), topology=TOPO)
    engine.process(
        decode(steady_stream([("sys-a", "comp-a", "h1")], 3), engine.config.metric_names)
    )
    new = engine.snapshot()
    assert list(new) == list(old)
    for part in ("sites", "reports", "hosts", "components", "systems", "clock"):
        assert list(new[part]) == list(old[part]), part
    assert new["version"] == old["version"]
    assert new["sites"]["version"] == old["sites"]["version"]
    assert new["reports"]["version"] == old["reports"]["version"]


def test_the_restored_engine_goes_on_deciding() -> None:
    engine = Engine.from_snapshot(written_before(), EngineConfig(), topology=TOPO)
    start = T0_MS + 90 * INTERVAL_MS
    events = steady_stream(
        [("sys-a", "comp-a", "h1"), ("sys-a", "comp-b", "h2")], 40, start_ms=start
    )
    recs = engine.process(decode(events, engine.config.metric_names)).recommendations
    # comp-a is back: the sticky failover clears after the hold, on the new active site
    assert recs and all(r["active_site"] == "ch2" and r["epoch"] > 1 for r in recs)


def test_older_layouts_and_other_versions() -> None:
    old = written_before()
    no_parts = copy.deepcopy(old)
    del no_parts["sites"], no_parts["reports"], no_parts["drift"]
    engine = Engine.from_snapshot(no_parts, EngineConfig(), topology=TOPO)
    assert engine.active_site("sys-a") == "ny4" and engine.failover_epoch("sys-a") == 0
    assert engine.sitreps.last_ms[:1].tolist() == [-1] and engine.sitreps.last == {}
    other = copy.deepcopy(old)
    other["sites"]["version"] = 2
    with pytest.raises(ConfigError, match="part 'sites' version 2 is not 1"):
        Engine.from_snapshot(other, EngineConfig(), topology=TOPO)
    other = copy.deepcopy(old)
    other["version"] = 3
    with pytest.raises(ConfigError, match="engine snapshot version 3 is not 2"):
        Engine.from_snapshot(other, EngineConfig(), topology=TOPO)
    # no topology given and none configured: the snapshot's own names the sites
    own = Engine.from_snapshot(copy.deepcopy(old), EngineConfig())
    assert own.active_site("sys-a") == "ch2"


def test_sites_and_reports_round_trip_on_their_own() -> None:
    engine = Engine(EngineConfig(), topology=TOPO)
    sites = Sites(engine.registry, TOPO)
    assert sites.fail_over("sys-a", epoch=4) == "ch2"
    assert sites.name(sites.index("sys-a"), standby=True) == "ny4"
    back = Sites(engine.registry, TOPO)
    back.restore(pickle.loads(pickle.dumps(sites.snapshot(engine.registry.n_systems))))
    assert back.active_site("sys-a") == "ch2" and back.failover_epoch("sys-a") == 4
    book = Reports()
    book.ensure(2)
    book.last_ms[1] = 7
    book.last[1] = {"report_id": "r"}
    book.pending.append({"report_id": "r"})
    again = Reports()
    again.restore(book.snapshot(2))
    assert again.last_ms[:2].tolist() == [-1, 7] and again.last == {1: {"report_id": "r"}}
    assert book.take() == [{"report_id": "r"}] and book.take() == []
