"""The audit trail on a real PostgreSQL (``PRECOVERY_AUDIT_URL=postgresql://...``).

The server is the one ``scripts/postgres`` runs for the MLflow test (its fixture, reused):
a missing PostgreSQL is a failure with the reason, never a skip.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from pipelines.records.audit import AuditLog, AuditStore, model_changed
from tests.integration.test_mlflow_postgres import postgres  # noqa: F401  (the fixture)


def test_round_trip_filters_and_append_only_on_postgres(postgres: str) -> None:  # noqa: F811
    store = AuditStore(postgres)
    log = AuditLog(store)
    for i in range(300):
        log.recommendations(
            [{"recommendation_id": f"r{i}", "system": f"s{i % 3}", "market": {"v": i}}]
        )
    model_changed(log, "ops", "risk-v2", "risk-v1", reason="promoted")
    log.close()  # everything queued is committed

    again = AuditStore(postgres)  # a second process's view: the rows are in the database
    assert again.count() == 301
    s1 = again.query(kind="recommendation", system="s1", limit=None)
    assert [r["subject"] for r in s1] == [f"r{i}" for i in range(1, 300, 3)]
    assert s1[0]["payload"] == {"recommendation_id": "r1", "system": "s1", "market": {"v": 1}}
    paged = [r["id"] for r in again.iter(page=64)]
    assert paged == sorted(paged) and len(paged) == 301
    assert again.query(kind="model_change")[0]["payload"]["to"] == "risk-v2"

    for sql in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with again.engine.begin() as conn:
                conn.exec_driver_sql(sql)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with again.engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE audit_log")
    assert again.count() == 301
    again.close()
