"""Session-wide fixtures: one small risk model and one short simulated stream.

Both are built once per test session (the model in about ten seconds) and shared by the
unit, API and CLI tests. Factories for single events live in ``tests/factories.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from pipelines.models import train_on_simulation
from pipelines.train import TrainConfig
from predictor.risk import RiskModel
from tests.factories import SimStream, failure_at, sim_stream

settings.register_profile(
    "precovery",
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
settings.load_profile("precovery")


@pytest.fixture(scope="session")
def small_model() -> RiskModel:
    """A risk model trained on a day of simulated history (50 trees): fast, not good."""
    model, _report = train_on_simulation(hours=24.0, seed=3, cfg=TrainConfig(n_estimators=50))
    return model


@pytest.fixture(scope="session")
def small_model_dir(small_model: RiskModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``small_model`` saved as a model directory."""
    return small_model.save(tmp_path_factory.mktemp("model") / "small")


@pytest.fixture(scope="session")
def failure_stream() -> SimStream:
    """45 simulated minutes of a 17-host fleet; eq-oms/order-gateway goes silent at 30 min."""
    return sim_stream(0.75, seed=5, scheduled=[failure_at(1800.0, lead_s=300.0)])
