"""The audit store (SQLite through SQLAlchemy): round trip, filters, order, append-only,
and the batching writer that must lose nothing on a clean close."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from pipelines.cli import audit as cli_audit
from pipelines.records.audit import (
    KINDS,
    AuditLog,
    AuditStore,
    Record,
    audit_url,
    iso_ms,
    model_changed,
    parse_time,
    sqlite_url,
)
from predictor.errors import ConfigError, ValidationError

T0 = parse_time("2026-01-05T12:00:00Z", "t0") / 1000.0


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        self.t += 1.0  # one second per record: times are distinct and ordered
        return self.t


def rec(system: str, rid: str, action: str = "failover_now") -> dict[str, Any]:
    return {
        "recommendation_id": rid,
        "epoch": 1,
        "system": system,
        "component": "db",
        "action": action,
        "exposure_usd": {"net": 5e6, "gross": 2e7, "open_orders": 7},
        "market": {"venue": "XNYS", "session": "continuous", "volatility_bps_per_min": 2.5},
        "expected_loss_stay_usd": 123_456.0,
    }


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return AuditStore(sqlite_url(tmp_path / "audit.sqlite"))


def test_round_trip_keeps_every_field_and_the_payload(store: AuditStore) -> None:
    log = AuditLog(store, clock=FakeClock())
    r = rec("eq-oms", "r1")
    log.recommendations([r])
    log.delivery("r1", "eq-oms", 1, 1, "retry", "ConnectError: refused")
    log.record("approval", "alice (k1)", system="eq-oms", subject="r1", payload={"decision": "x"})
    model_changed(log, "ops", "risk-v2", "risk-v1", reason="promoted", run_id="abc")
    log.flush()
    rows = store.query()
    assert [row["kind"] for row in rows] == list(KINDS)
    first = rows[0]
    assert first["payload"] == r  # the exposure and market snapshot survive as they were
    assert (first["actor"], first["system"], first["subject"]) == ("stream", "eq-oms", "r1")
    assert first["at"] == "2026-01-05T12:00:01.000Z"
    assert rows[1]["payload"] == {
        "outcome": "retry",
        "attempt": 1,
        "epoch": 1,
        "detail": "ConnectError: refused",
    }
    assert rows[3]["payload"] == {
        "from": "risk-v1",
        "to": "risk-v2",
        "reason": "promoted",
        "run_id": "abc",
    }
    assert [row["id"] for row in rows] == sorted(row["id"] for row in rows)
    log.close()


def test_filters_cursor_and_time_window(store: AuditStore) -> None:
    store.append(
        Record(int((T0 + i) * 1000), kind, "t", system, f"s{i}", {"i": i})
        for i, (kind, system) in enumerate(
            [
                ("recommendation", "a"),
                ("delivery", "a"),
                ("recommendation", "b"),
                ("approval", "a"),
                ("recommendation", "a"),
            ]
        )
    )
    assert [r["payload"]["i"] for r in store.query(kind="recommendation")] == [0, 2, 4]
    assert [r["payload"]["i"] for r in store.query(system="a")] == [0, 1, 3, 4]
    assert [r["payload"]["i"] for r in store.query(kind="recommendation", system="a")] == [0, 4]
    assert [r["payload"]["i"] for r in store.query(subject="s3")] == [3]
    # since is inclusive, until exclusive
    since, until = int((T0 + 1) * 1000), int((T0 + 3) * 1000)
    assert [r["payload"]["i"] for r in store.query(since_ms=since, until_ms=until)] == [1, 2]
    assert store.count(kind="recommendation", since_ms=since) == 2
    page1 = store.query(limit=2)
    page2 = store.query(after_id=page1[-1]["id"], limit=2)
    page3 = store.query(after_id=page2[-1]["id"], limit=2)
    assert [r["payload"]["i"] for r in page1 + page2 + page3] == [0, 1, 2, 3, 4]
    # the streamed iterator pages the same way as one query
    assert [r["id"] for r in store.iter(page=2)] == [r["id"] for r in store.query()]


def test_the_table_is_append_only(store: AuditStore, tmp_path: Path) -> None:
    store.append([Record(1, "recommendation", "stream", "a", "r1", {"x": 1})])
    db = sqlite3.connect(tmp_path / "audit.sqlite")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit_log SET actor = 'mallory'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit_log")
    db.close()
    assert store.query()[0]["actor"] == "stream"
    assert not hasattr(store, "delete") and not hasattr(store, "update")
    # reopening an existing trail keeps it (and its triggers)
    again = AuditStore(sqlite_url(tmp_path / "audit.sqlite"))
    assert again.count() == 1


def test_close_writes_everything_queued_from_many_threads(tmp_path: Path) -> None:
    store = AuditStore(sqlite_url(tmp_path / "audit.sqlite"))
    log = AuditLog(store, batch=64)

    def produce(t: int) -> None:
        for i in range(500):
            log.recommendations([rec(f"sys-{t}", f"r{t}-{i}")])

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    log.close()  # no flush before: close alone must write all 2,000
    reopened = AuditStore(sqlite_url(tmp_path / "audit.sqlite"))
    assert reopened.count() == 2000
    for t in range(4):  # each producer's records in the order it queued them
        subjects = [r["subject"] for r in reopened.iter(system=f"sys-{t}")]
        assert subjects == [f"r{t}-{i}" for i in range(500)]
    with pytest.raises(Exception, match="closed"):
        log.recommendations([rec("a", "late")])


def test_wait_returns_only_once_committed(store: AuditStore) -> None:
    log = AuditLog(store)
    log.record("approval", "bob", system="a", subject="r9", payload={"d": 1}, wait=True)
    assert store.query(subject="r9")[0]["actor"] == "bob"  # no flush needed
    with pytest.raises(ValueError, match="kind"):
        log.record("gossip", "bob")
    log.close()


def test_urls_times_and_bad_input() -> None:
    assert audit_url(Path("/s")) == "sqlite:////s/audit.sqlite"
    assert audit_url(Path("/s"), "postgresql://u@db/p") == "postgresql://u@db/p"
    assert iso_ms(parse_time("2026-01-05T12:00:00.250+00:00", "x")) == "2026-01-05T12:00:00.250Z"
    assert parse_time("2026-01-05", "x") == parse_time("2026-01-05T00:00:00Z", "x")
    with pytest.raises(ValidationError, match="--until"):
        parse_time("soon", "--until")
    with pytest.raises(ConfigError, match="cannot be used") as err:
        AuditStore("nosuchdb://user:hunter2@host/db")
    assert "hunter2" not in str(err.value)  # never a password in a message


def test_the_cli_knows_the_same_kinds() -> None:
    assert cli_audit.KINDS == KINDS


def test_the_kafka_deliverer_audits_every_attempt(store: AuditStore) -> None:
    from collections import deque
    from types import SimpleNamespace

    import httpx
    import orjson

    from pipelines.kafka.delivery import KafkaDeliverer
    from pipelines.outbound.orchestrator import DeliveryConfig

    answers = iter([503, 200])
    transport = httpx.MockTransport(lambda req: httpx.Response(next(answers), json={}))
    log = AuditLog(store)
    worker = KafkaDeliverer(
        "127.0.0.1:1",
        "recommendations.v1",
        DeliveryConfig("http://orch/v1/recommendations", backoff_base_s=1e-9),
        transport=transport,
        audit=log,
    )
    body = orjson.dumps(rec("eq-oms", "r1") | {"epoch": 4})
    record = SimpleNamespace(
        headers=[("idempotency-key", b"r1")], value=body, key=b"eq-oms", offset=10
    )
    worker.consumer = SimpleNamespace(commit=lambda offsets: None)
    worker.pending[0] = deque([record])
    while worker.pending[0]:  # the broker's part (poll, assign) is the integration test's
        worker._deliver_heads()
    log.close()
    rows = store.query(kind="delivery")
    assert [(r["subject"], r["system"]) for r in rows] == [("r1", "eq-oms")] * 2
    assert [(r["payload"]["outcome"], r["payload"]["attempt"]) for r in rows] == [
        ("retry", 1),
        ("delivered", 2),
    ]
    assert rows[0]["payload"]["epoch"] == 4 and rows[0]["actor"] == "delivery"
