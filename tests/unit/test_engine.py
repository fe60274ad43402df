"""The loop: heartbeat rule, input checks, determinism across batching and restarts."""

from __future__ import annotations

import pickle
from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from predictor.engine import Engine, EngineConfig, StepResult, feature_names
from predictor.errors import ModelError, UnknownEntityError
from predictor.events import TelemetryBatch, parse_ts
from predictor.risk import RiskModel
from tests.factories import (
    INTERVAL_MS,
    T0_MS,
    SimStream,
    decode,
    market_state,
    position,
    steady_stream,
    telemetry_event,
)

A = ("sys-a", "comp-a", "h1")
B = ("sys-a", "comp-b", "h2")
C = ("sys-b", "comp-c", "h3")
CONFIG = EngineConfig()


def feed(engine: Engine, events: list[Any], batch_size: int) -> list[StepResult]:
    batch = decode(events, engine.config.metric_names)
    return [engine.process(sub) for sub in split(batch, batch_size)]


def split(batch: TelemetryBatch, size: int) -> list[TelemetryBatch]:
    """Cut a decoded batch into micro-batches, as a stream would receive them."""
    out = []
    for lo in range(0, len(batch), size):
        hi = lo + size
        out.append(
            TelemetryBatch(
                batch.keys[lo:hi], batch.ts_ms[lo:hi], batch.x[lo:hi], batch.index[lo:hi] - lo, []
            )
        )
    return out


def recs_of(results: list[StepResult]) -> list[dict[str, Any]]:
    return [r for res in results for r in res.recommendations]


def summary(recs: list[dict[str, Any]]) -> list[tuple[str, int, str, str, str, str]]:
    return [
        (
            r["recommendation_id"],
            r["epoch"],
            r["issued_at"],
            r["system"],
            r["component"],
            r["action"],
        )
        for r in recs
    ]


def silent_host_stream(quiet_steps: int = 10) -> list[dict[str, Any]]:
    """A and B report for 20 steps, then only B for ``quiet_steps`` more."""
    both = steady_stream([A, B], 20)
    only_b = steady_stream([B], quiet_steps, start_ms=T0_MS + 20 * INTERVAL_MS, seed=1)
    return both + only_b


# -- heartbeat rule ----------------------------------------------------------------------
def test_silent_host_gets_failover_now_with_heartbeat_reason() -> None:
    engine = Engine(CONFIG)
    recs = recs_of(feed(engine, silent_host_stream(), 50))
    assert len(recs) == 1, recs
    rec = recs[0]
    assert (rec["system"], rec["component"], rec["action"]) == ("sys-a", "comp-a", "failover_now")
    assert rec["reasons"][0]["feature"] == "heartbeat_missed_s"
    limit_s = CONFIG.heartbeat_misses * CONFIG.heartbeat_interval_s
    assert rec["reasons"][0]["value"] > limit_s
    # it fired at the first tick past the limit, not later
    last_seen = T0_MS + 19 * INTERVAL_MS
    issued = parse_ts(rec["issued_at"])
    assert last_seen + limit_s * 1000 < issued <= last_seen + limit_s * 1000 + CONFIG.tick_s * 1000
    assert rec["health"] == 0.0 and rec["model_version"] is None and rec["epoch"] == 1
    view = engine.system_view("sys-a")
    comps = {c["component"]: c for c in view["components"]}
    assert comps["comp-a"]["hosts"][0]["heartbeat_missed"] is True
    assert comps["comp-a"]["health"] == 0.0 and comps["comp-a"]["action"] == "failover_now"
    assert comps["comp-b"]["hosts"][0]["heartbeat_missed"] is False
    assert comps["comp-b"]["action"] == "none"
    assert view["health"] == 0.0  # comp-a is critical (unknown components are)
    assert comps["comp-a"]["latest_recommendation"]["recommendation_id"] == rec["recommendation_id"]


def test_no_heartbeat_rule_within_the_limit() -> None:
    engine = Engine(CONFIG)
    # 2 intervals of silence < 3 misses
    assert recs_of(feed(engine, silent_host_stream(quiet_steps=2), 50)) == []


def test_host_back_de_escalates_after_hold() -> None:
    engine = Engine(CONFIG)
    events = silent_host_stream()
    back = T0_MS + 30 * INTERVAL_MS
    hold_steps = int(CONFIG.hold_s * 1000 / INTERVAL_MS) + 3
    events += steady_stream([A, B], hold_steps, start_ms=back, seed=2)
    recs = recs_of(feed(engine, events, 64))
    assert [r["action"] for r in recs] == ["failover_now", "none"]
    t_now, t_none = (parse_ts(r["issued_at"]) for r in recs)
    assert t_none - back >= CONFIG.hold_s * 1000
    assert [r["epoch"] for r in recs] == [1, 2]


def test_without_a_model_only_the_heartbeat_rule_decides(failure_stream: SimStream) -> None:
    engine = Engine(
        CONFIG, critical=failure_stream.critical, system_venue=failure_stream.sim.fleet.system_venue
    )
    results = feed(engine, failure_stream.events, 5000)
    recs = recs_of(results)
    assert recs, "the scheduled failure silences a host"
    for r in recs:
        assert r["action"] in ("failover_now", "none")
        if r["action"] == "failover_now":
            assert r["reasons"][0]["feature"] == "heartbeat_missed_s"
        assert r["model_version"] is None and r["risk"] is None
    assert ("eq-oms", "order-gateway", "failover_now") in {
        (r["system"], r["component"], r["action"]) for r in recs
    }
    assert all(np.isnan(res.risk).all() for res in results)
    assert engine.counters["risk_scored"] == 0


# -- input checks ------------------------------------------------------------------------
def test_duplicate_out_of_order_and_future_events_are_rejected() -> None:
    engine = Engine(CONFIG)
    feed(engine, steady_stream([A, B], 10), 100)
    t = T0_MS + 10 * INTERVAL_MS
    events = [
        telemetry_event(t, *A),  # 0 fine
        telemetry_event(t, *A),  # 1 duplicate within the batch
        telemetry_event(T0_MS + 9 * INTERVAL_MS, *B),  # 2 duplicate of B's last event
        telemetry_event(t - 120_000, *B),  # 3 out of order (older than 60 s tolerance)
        telemetry_event(t + 86_400_000, *B),  # 4 a day in the future
        telemetry_event(t + 5_000, *B),  # 5 fine
        telemetry_event(t - 30_000, *B),  # 6 late but within tolerance: fine
        telemetry_event(t, *C),  # 7 fine, new entity
    ]
    res = engine.process(decode(events, CONFIG.metric_names))
    assert {r.index: r.reason for r in res.rejects} == {
        1: "duplicate",
        2: "duplicate",
        3: "out_of_order",
        4: "future_timestamp",
    }
    assert res.index.tolist() == [0, 5, 6, 7]
    assert len(res.anomaly) == len(res.risk) == len(res.health) == 4
    assert engine.watermark_ms == t + 5_000
    assert engine.counters["rejected"] == 4
    assert engine.reject_reasons == {"duplicate": 2, "out_of_order": 1, "future_timestamp": 1}
    assert engine.n_entities == 3


def test_decode_rejects_pass_through_the_engine() -> None:
    engine = Engine(CONFIG)
    res = engine.process(decode([b"{oops", telemetry_event()], CONFIG.metric_names))
    assert [(r.index, r.reason) for r in res.rejects] == [(0, "malformed_json")]
    assert res.index.tolist() == [1]
    assert engine.reject_reasons == {"malformed_json": 1}


def test_entity_capacity() -> None:
    engine = Engine(replace(CONFIG, max_entities=2))
    res = engine.process(
        decode([telemetry_event(T0_MS, *k) for k in (A, B, C)], CONFIG.metric_names)
    )
    assert [(r.index, r.reason) for r in res.rejects] == [(2, "entity_capacity")]
    assert engine.n_entities == 2


def test_future_timestamp_rejected_whatever_the_batch_size() -> None:
    """The engine promises the same outputs whatever the batching (module docstring).

    A bogus far-future stamp in a batch of its own must be rejected as it is inside a
    larger batch; accepted, it moves the watermark and fires the heartbeat rule on every
    other host.
    """
    events = steady_stream([A, B, C], 20)
    bogus = telemetry_event(T0_MS + 30 * 86_400_000, *A)
    events = events[:30] + [bogus] + events[30:]
    outcomes = []
    for size in (len(events), 1):
        engine = Engine(CONFIG)
        results = feed(engine, events, size)
        rejected = sorted(r.reason for res in results for r in res.rejects)
        outcomes.append((rejected, summary(recs_of(results)), engine.watermark_ms))
    assert outcomes[0][0] == ["future_timestamp"]
    assert outcomes[1] == outcomes[0]


# -- determinism -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(failure_stream: SimStream, small_model: RiskModel) -> tuple[list[Any], Any]:
    engine = make_engine(failure_stream, small_model)
    results = feed(engine, failure_stream.events, 5000)
    return recs_of(results), np.concatenate([r.anomaly for r in results])


def make_engine(stream: SimStream, model: RiskModel | None) -> Engine:
    return Engine(
        CONFIG, model=model, critical=stream.critical, system_venue=stream.sim.fleet.system_venue
    )


def test_reference_run_has_a_heartbeat_failover(reference: tuple[list[Any], Any]) -> None:
    recs, anomaly = reference
    assert np.all((anomaly >= 0) & (anomaly <= 1))
    hb = [r for r in recs if r["reasons"] and r["reasons"][0]["feature"] == "heartbeat_missed_s"]
    assert any(
        (r["system"], r["component"], r["action"]) == ("eq-oms", "order-gateway", "failover_now")
        for r in hb
    )
    for r in recs:
        assert r["model_version"] is not None and r["horizon_s"] > 0
        assert len(r["recommendation_id"]) == 32


@pytest.mark.parametrize("batch_size", [1, 37])
def test_recommendations_do_not_depend_on_batch_size(
    failure_stream: SimStream,
    small_model: RiskModel,
    reference: tuple[list[Any], Any],
    batch_size: int,
) -> None:
    engine = make_engine(failure_stream, small_model)
    results = feed(engine, failure_stream.events, batch_size)
    assert summary(recs_of(results)) == summary(reference[0])
    assert recs_of(results) == reference[0]  # every field, reasons and dollars included
    np.testing.assert_array_equal(np.concatenate([r.anomaly for r in results]), reference[1])


def test_epoch_strictly_increases_per_system(reference: tuple[list[Any], Any]) -> None:
    epochs: dict[str, list[int]] = defaultdict(list)
    for r in reference[0]:
        epochs[r["system"]].append(r["epoch"])
    assert epochs
    for seq in epochs.values():
        assert seq == list(range(1, len(seq) + 1))


def test_replay_gives_the_same_ids(
    failure_stream: SimStream, small_model: RiskModel, reference: tuple[list[Any], Any]
) -> None:
    """A fresh engine replaying the same input issues the same ids (idempotent effects)."""
    engine = make_engine(failure_stream, small_model)
    again = recs_of(feed(engine, failure_stream.events, 1000))
    assert [r["recommendation_id"] for r in again] == [r["recommendation_id"] for r in reference[0]]
    assert len({r["recommendation_id"] for r in again}) == len(again)


def test_snapshot_restore_continues_like_an_uninterrupted_engine(
    failure_stream: SimStream, small_model: RiskModel, reference: tuple[list[Any], Any]
) -> None:
    batch = decode(failure_stream.events, CONFIG.metric_names)
    parts = split(batch, 5000)
    cut = len(parts) // 2
    first = make_engine(failure_stream, small_model)
    recs = recs_of([first.process(p) for p in parts[:cut]])
    snap = pickle.loads(pickle.dumps(first.snapshot()))
    resumed = Engine.from_snapshot(snap, CONFIG, small_model)
    recs += recs_of([resumed.process(p) for p in parts[cut:]])
    assert recs == reference[0]
    assert resumed.counters == make_counters(failure_stream, small_model)


def make_counters(stream: SimStream, model: RiskModel) -> dict[str, int]:
    engine = make_engine(stream, model)
    feed(engine, stream.events, 5000)
    return engine.counters


def test_snapshot_does_not_alias_live_state(small_model: RiskModel) -> None:
    engine = Engine(CONFIG, model=small_model)
    feed(engine, steady_stream([A, B], 30), 100)
    snap = engine.snapshot()
    restored = Engine.from_snapshot(snap, CONFIG, small_model)
    feed(engine, steady_stream([A, B], 5, start_ms=T0_MS + 30 * INTERVAL_MS), 100)
    assert restored.watermark_ms == T0_MS + 29 * INTERVAL_MS
    assert restored.features.n[:2].tolist() == [30, 30]


# -- context and views -------------------------------------------------------------------
def test_positions_and_market_feed_the_recommendation() -> None:
    engine = Engine(CONFIG)
    assert (
        engine.add_positions(
            [
                position("sys-a", "XNYS", T0_MS, 5e6, 20e6, 7),
                position("sys-a", "XNYS", T0_MS - 60_000, 9e9, 9e9, 9),  # older: ignored
                {"ts": T0_MS, "system": "sys-a"},  # missing fields
            ]
        )[0].index
        == 2
    )
    rejects = engine.add_market(
        [
            market_state("XNYS", T0_MS, session="closing_auction", event_risk=True),
            market_state("XNYS", T0_MS, session="lunch"),
        ]
    )
    assert [(r.index, r.reason) for r in rejects] == [(1, "bad_session")]
    recs = recs_of(feed(engine, silent_host_stream(), 50))
    rec = recs[0]
    assert rec["exposure_usd"] == {"net": 5e6, "gross": 20e6, "open_orders": 7}
    assert rec["market"]["venue"] == "XNYS"
    assert rec["market"]["session"] == "closing_auction" and rec["market"]["event_risk"] is True
    assert rec["cost_switch_now_usd"] > 0 and rec["outage_loss_usd"] > 0
    assert engine.reject_reasons == {"missing_field": 1, "bad_session": 1}
    view = engine.system_view("sys-a")
    assert view["exposure_usd"]["open_orders"] == 7
    assert view["market"]["session"] == "closing_auction"


def test_unknown_system_is_an_unknown_entity_error() -> None:
    engine = Engine(CONFIG)
    feed(engine, steady_stream([A], 3), 10)
    with pytest.raises(UnknownEntityError):
        engine.system_view("nope")
    assert [s["system"] for s in engine.systems_view()] == ["sys-a"]


def test_systems_view_summarises_each_system(
    failure_stream: SimStream, small_model: RiskModel
) -> None:
    engine = make_engine(failure_stream, small_model)
    feed(engine, failure_stream.events, 5000)
    views = {v["system"]: v for v in engine.systems_view()}
    assert set(views) == {s.name for s in failure_stream.sim.fleet.systems}
    for v in views.values():
        assert 0.0 <= v["health"] <= 100.0
        assert v["health"] <= v["worst_component_health"] or v["health"] <= 100.0
        assert v["max_risk"] is None or 0.0 <= v["max_risk"] <= 1.0
        detail = engine.system_view(v["system"])
        assert detail["epoch"] == v["epoch"]
        assert len(detail["components"]) == v["components"]
        hosts = [h for c in detail["components"] for h in c["hosts"]]
        assert all(0.0 <= h["health"] <= 100.0 for h in hosts)
        assert all(0.0 <= h["anomaly_score"] <= 1.0 for h in hosts)


def test_model_with_other_features_is_refused(small_model: RiskModel) -> None:
    engine = Engine(replace(CONFIG, metric_names=("cpu_pct",)))
    with pytest.raises(ModelError):
        engine.set_model(small_model)
    assert small_model.feature_names_ == feature_names(CONFIG.metric_names)


def test_failover_is_sticky_until_the_risk_clears(small_model: RiskModel) -> None:
    """After a failover, a dip to 'prepare' level does not undo it; an all-clear does."""
    config = replace(CONFIG, hold_s=20.0, confirm_s=0.0, heartbeat_misses=10_000)
    engine = Engine(config, model=small_model)
    feed(engine, steady_stream([A], 5), 100)
    slot = engine.registry.slot[A]
    t = engine.watermark_ms or T0_MS

    def actions_after(risk: float, seconds: int) -> list[str]:
        nonlocal t
        engine.risk[slot] = risk
        out = []
        for _ in range(seconds // 10):
            t += 10_000
            out += [r["action"] for r in engine.flush(t)]
        return out

    assert actions_after(0.99, 30)[-1] in ("failover_now", "failover_at_window")
    assert actions_after(0.45, 120) == []  # prepare-level risk: the failover stands
    assert actions_after(0.01, 120) == ["none"]  # cleared for hold_s: all-clear
