"""The contracts module and docs/contracts.md say the same, and the outputs follow them."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from predictor import contracts
from tests.factories import failure_at, sim_stream

DOC = (Path(__file__).resolve().parents[2] / "docs" / "contracts.md").read_text()


@pytest.mark.parametrize(
    "record",
    [
        contracts.TelemetryV1,
        contracts.PositionV1,
        contracts.MarketV1,
        contracts.IncidentV1,
        contracts.RecommendationV1,
        contracts.HealthV1,
    ],
)
def test_every_field_is_documented(record: type) -> None:
    for name in typing.get_type_hints(record):
        assert re.search(rf"`{re.escape(name)}`|\"{re.escape(name)}\"", DOC), name


def test_names_are_documented() -> None:
    for name in (*contracts.ACTIONS, *contracts.SESSIONS, *contracts.DEFAULT_METRICS):
        assert name in DOC, name
    for topic in (contracts.TOPIC_TELEMETRY, contracts.TOPIC_DLQ, contracts.TOPIC_HEALTH):
        assert f"`{topic}`" in DOC
    for header in contracts.DLQ_HEADERS:
        assert f"`{header}`" in DOC


def test_recommendations_and_health_carry_exactly_the_contract_fields(
    small_model: typing.Any,
) -> None:
    from pipelines.driver import health_records
    from predictor.engine import Engine, EngineConfig
    from tests.factories import decode

    stream = sim_stream(0.6, seed=5, scheduled=[failure_at(1500.0, lead_s=300.0)])
    engine = Engine(EngineConfig(), model=small_model)
    engine.add_market(stream.market)
    engine.add_positions(stream.positions)
    recs = engine.process(decode(stream.events, engine.config.metric_names)).recommendations
    assert recs
    want = set(typing.get_type_hints(contracts.RecommendationV1))
    assert all(set(r) == want for r in recs)
    assert all(r["action"] in contracts.ACTIONS for r in recs)
    import orjson

    health = [orjson.loads(r.value) for r in health_records(engine, _topics())]
    assert health and all(set(h) == set(typing.get_type_hints(contracts.HealthV1)) for h in health)


def _topics() -> typing.Any:
    from pipelines.driver import Topics

    return Topics()
