"""Session-wide fixtures: one small risk model and one short simulated stream.

Both are built once per test session (the model in a few seconds) and shared by the
unit, API and CLI tests. Factories for single events live in ``tests/factories.py``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from tests.factories import SimStream, failure_at, sim_stream

if TYPE_CHECKING:
    from predictor.risk import RiskModel

# LightGBM trains with OpenMP threads; on a busy 2-core machine libgomp's default
# spin-waiting makes a fit ten times slower. Set before any test module loads LightGBM
# (and inherited by the CLI subprocesses): this module must not import LightGBM or
# scikit-learn at the top. Only speed depends on it, never a result.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# No test writes MLflow runs into the checkout (``precovery train`` logs every run): a
# throwaway store for the session; tests that look at the registry set their own.
_MLFLOW_DIR = tempfile.mkdtemp(prefix="precovery-mlflow-")
atexit.register(shutil.rmtree, _MLFLOW_DIR, ignore_errors=True)
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_MLFLOW_DIR}/mlruns.db"

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
    """A risk model trained on 16 h of a 17-host fleet with many failures (50 trees).

    Features and labels as in ``pipelines.training.train`` (the stream's engine over simulated
    history), on a small fleet and one LightGBM thread: a few seconds, and good enough
    to rank.
    """
    import numpy as np

    from pipelines.training.train import build_features, sim_frames
    from predictor.labels import Incident, make_labels
    from predictor.risk import RiskModel
    from predictor.sim import SimConfig, Simulator

    hours = 16.0
    sim = Simulator(SimConfig(seed=3, failures_per_day=72.0, hosts_per_component=1))
    data = build_features(sim_frames(sim, hours), stride=3)
    incidents = [Incident.from_record(r) for r in sim.incidents(hours)]
    y, keep = make_labels(data.keys, data.ts_ms, incidents, horizon_s=1800.0)
    order = np.argsort(data.ts_ms, kind="stable")
    order = order[keep[order]]
    model = RiskModel(horizon_s=1800.0, n_estimators=50, num_threads=1)
    return model.fit(data.x[order], y[order], data.feature_names)


@pytest.fixture(scope="session")
def small_model_dir(small_model: RiskModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``small_model`` saved as a model directory."""
    from pipelines.training.models import save_model

    return save_model(small_model, tmp_path_factory.mktemp("model") / "small")


@pytest.fixture(scope="session")
def failure_stream() -> SimStream:
    """45 simulated minutes of a 17-host fleet; eq-oms/order-gateway goes silent at 30 min."""
    return sim_stream(0.75, seed=5, scheduled=[failure_at(1800.0, lead_s=300.0)])


@pytest.fixture(scope="session")
def api_stream() -> SimStream:
    """``failure_stream`` plus fx-pricing/database going silent at 36 min: the API tests
    need a few recommendations whatever the model (the heartbeat rule gives them)."""
    return sim_stream(
        0.75,
        seed=5,
        scheduled=[
            failure_at(1800.0, lead_s=300.0),
            failure_at(2160.0, "fx-pricing", "database", lead_s=300.0),
        ],
    )
