"""Situation reports: every report_every_s while a system is at prepare_standby or worse."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import orjson

from pipelines.driver import Driver, Topics
from predictor import contracts
from predictor.engine import Engine, EngineConfig
from predictor.events import parse_ts
from predictor.ports import RawRecord
from tests.factories import INTERVAL_MS, T0_MS, decode, position, steady_stream

A = ("sys-a", "comp-a", "h1")
B = ("sys-a", "comp-b", "h2")
DOC = (Path(__file__).resolve().parents[2] / "docs" / "contracts.md").read_text()


def run(engine: Engine, quiet_steps: int, back_steps: int = 0) -> list[dict[str, Any]]:
    """A and B for 20 steps; only B for ``quiet_steps`` (A is dead); then both again."""
    events = steady_stream([A, B], 20)
    events += steady_stream([B], quiet_steps, start_ms=T0_MS + 20 * INTERVAL_MS, seed=1)
    if back_steps:
        start = T0_MS + (20 + quiet_steps) * INTERVAL_MS
        events += steady_stream([A, B], back_steps, start_ms=start, seed=2)
    reports = []
    for i in range(0, len(events), 40):
        engine.process(decode(events[i : i + 40], engine.config.metric_names))
        reports += engine.take_reports()
    return reports


def test_reports_every_five_minutes_while_failing_then_stop() -> None:
    engine = Engine(EngineConfig())
    engine.add_positions([position("sys-a", "XNYS", T0_MS, 5e6, 20e6, 7)])
    reports = run(engine, quiet_steps=20 + 70, back_steps=100)
    assert len(reports) >= 2, reports
    first, second = reports[0], reports[1]
    assert set(first) == set(typing.get_type_hints(contracts.SituationReportV1))
    assert first["kind"] == "situation_report" and first["system"] == "sys-a"
    assert first["action"] == "failover_now"
    assert [f["component"] for f in first["failing"]] == ["comp-a"]
    assert first["changes"] == ["first report at failover_now"]
    assert first["exposure_usd"]["gross"] == 20e6
    assert first["epoch"] >= 1  # the current epoch, not raised by the report
    gap_s = (parse_ts(second["issued_at"]) - parse_ts(first["issued_at"])) / 1000
    assert gap_s == engine.config.report_every_s
    assert second["since"] == first["issued_at"]
    assert second["changes"] and second["report_id"] != first["report_id"]
    # A came back: the failover holds hold_s, then de-escalates; no reports after that
    last = parse_ts(reports[-1]["issued_at"])
    assert last < T0_MS + (20 + 90 + 100) * INTERVAL_MS
    assert engine.escalation.action[0] < 2


def test_no_reports_below_prepare_standby_or_when_disabled() -> None:
    calm = Engine(EngineConfig())
    assert run(calm, quiet_steps=0, back_steps=60) == []
    off = Engine(EngineConfig(report_every_s=0))
    assert run(off, quiet_steps=100) == []


def test_reports_are_deterministic_and_survive_a_snapshot() -> None:
    a, b = Engine(EngineConfig()), Engine(EngineConfig())
    assert run(a, quiet_steps=100) == run(b, quiet_steps=100)
    restored = Engine.from_snapshot(a.snapshot(), EngineConfig())
    assert restored.sitreps.last == a.sitreps.last
    assert (restored.sitreps.last_ms[:1] == a.sitreps.last_ms[:1]).all()


def test_the_driver_publishes_them_on_recommendations_with_their_id() -> None:
    engine = Engine(EngineConfig())
    topics = Topics()
    driver = Driver(engine, topics)
    events = steady_stream([A, B], 20) + steady_stream(
        [B], 100, start_ms=T0_MS + 20 * INTERVAL_MS, seed=1
    )
    out, taken = [], []
    for i, ev in enumerate(events):
        raw = RawRecord(topics.telemetry, orjson.dumps(ev), b"sys-a", 0, i)
        step = driver.step([raw])
        out += step.out
        taken += step.reports  # what the demo hands to the orchestrator's outbox
    reports = [
        r for r in out if r.topic == topics.recommendations and b"situation_report" in r.value
    ]
    assert reports
    rep = orjson.loads(reports[0].value)
    assert dict(reports[0].headers)["idempotency-key"] == rep["report_id"].encode()
    assert [orjson.loads(r.value) for r in reports] == taken
    published = [orjson.loads(r.value) for r in out if r.topic == topics.recommendations]
    times = [p["issued_at"] for p in published]
    assert times == sorted(times)  # reports and recommendations in time order
    epochs = [p["epoch"] for p in published]
    assert epochs == sorted(epochs)  # so no report trails a newer epoch (fencing)


def test_a_step_merges_reports_after_its_recommendations_by_time() -> None:
    from pipelines.driver import in_time_order

    recs = [{"issued_at": "2026-01-05T14:00:10.000Z", "epoch": 4}]
    reps = [
        {"issued_at": "2026-01-05T14:00:00.000Z", "epoch": 3, "kind": "situation_report"},
        {"issued_at": "2026-01-05T14:00:10.000Z", "epoch": 4, "kind": "situation_report"},
    ]
    assert [(r["epoch"], "kind" in r) for r in in_time_order(recs, reps)] == [
        (3, True),
        (4, False),
        (4, True),
    ]


def test_reports_queue_in_the_orchestrator_outbox_by_report_id(tmp_path: Path) -> None:
    from pipelines.outbound.orchestrator import Outbox

    reports = run(Engine(EngineConfig()), quiet_steps=100)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    try:
        assert outbox.add(reports) == len(reports) >= 2
        assert outbox.add(reports) == 0  # idempotent by report_id
        head = outbox.due(now=float("inf"))
        assert [item.rec_id for item in head] == [reports[0]["report_id"]]
    finally:
        outbox.close()


def test_every_report_field_is_documented() -> None:
    for name in typing.get_type_hints(contracts.SituationReportV1):
        assert f"`{name}`" in DOC, name


def test_the_reference_orchestrator_notes_reports_without_fencing_them(tmp_path: Path) -> None:
    from serve.orchestrator import Ledger

    engine = Engine(EngineConfig())
    rep = run(engine, quiet_steps=100)[0]
    ledger = Ledger(tmp_path / "orch.jsonl")
    rec = {**rep, "recommendation_id": "r1"}
    del rec["kind"]
    rec["component"] = "comp-a"
    assert ledger.offer(rec, orjson.dumps(rec))[0] == 200  # the recommendation at this epoch
    status, body = ledger.offer(rep, orjson.dumps(rep))  # a report at the same epoch
    assert (status, body["status"]) == (200, "accepted") and "note the situation" in body["would"]
    assert ledger.offer(rep, orjson.dumps(rep))[1]["status"] == "duplicate"
