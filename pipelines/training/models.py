"""Where the risk model comes from: a directory, or a training run on the simulator.

The repository ships a baseline in ``models/baseline`` (trained by
``precovery train-sim``); when it is missing, the main job trains one on simulated
history first (34 s here) and saves it there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.training.train import (
    StreamSample,
    TrainConfig,
    build_features,
    sim_frames,
    train_model,
)
from predictor.errors import ModelError
from predictor.labels import Incident
from predictor.risk import RiskModel
from predictor.sim import SimConfig, Simulator

logger = logging.getLogger(__name__)

#: The shipped baseline, next to the packages (an editable install or a clone).
BASELINE_DIR = Path(__file__).resolve().parents[2] / "models" / "baseline"

#: Simulated history the shipped baseline is trained on (``precovery train-sim``).
BASELINE_HOURS = 168.0
#: History for the fallback trained on first run when no model is present: shorter, so
#: the main job starts in well under 2 minutes (34 s measured here; fewer incidents: a
#: somewhat weaker model).
FIRST_RUN_HOURS = 72.0
BASELINE_SEED = 11
BASELINE_FAILURES_PER_DAY = 24.0


def train_on_simulation(
    hours: float = BASELINE_HOURS,
    seed: int = BASELINE_SEED,
    failures_per_day: float = BASELINE_FAILURES_PER_DAY,
    cfg: TrainConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[RiskModel, dict[str, Any]]:
    """Simulate ``hours`` of fleet history and train on it (no files needed)."""
    cfg = cfg or TrainConfig()
    sim = Simulator(
        SimConfig(
            seed=seed, failures_per_day=failures_per_day, start=datetime(2026, 1, 5, tzinfo=UTC)
        )
    )
    # Incidents first: the calm rows the fit would not see are dropped while streaming.
    incidents = [Incident.from_record(r) for r in sim.incidents(hours)]
    end_ms = sim.start_ms + int(hours * 3_600_000)
    sample = StreamSample(incidents, cfg, sim.start_ms, end_ms)
    data = build_features(
        sim_frames(sim, hours), stride=cfg.stride, progress=progress, sample=sample
    )
    model, report = train_model(data, incidents, cfg)
    report["data"] = {
        "source": "simulator",
        "hours": hours,
        "seed": seed,
        "failures_per_day": failures_per_day,
        "rows": int(len(data.x)),
    }
    return model, report


def save_model(model: RiskModel, path: Path) -> Path:
    """Write ``model`` as a directory: ``model.lgb`` (LightGBM's text) and ``meta.json``."""
    text, meta = model.to_state()
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.lgb").write_text(text)
    (path / "meta.json").write_text(json.dumps(meta, indent=2))
    return path


def load_model(path: Path) -> RiskModel:
    """Read a model directory written by :func:`save_model` (ModelError naming the file)."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        text = (path / "model.lgb").read_text()
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a risk model from {path}: {exc}") from exc
    try:
        return RiskModel.from_state(meta, model_text=text)
    except ModelError as exc:
        raise ModelError(f"cannot load a risk model from {path}: {exc}") from exc


def is_model_uri(ref: str) -> bool:
    """True for an MLflow model URI (``models:/failure-risk@champion``, ``runs:/…``).

    >>> is_model_uri("models:/failure-risk@champion"), is_model_uri("models/baseline")
    (True, False)
    """
    return ref.startswith(("models:/", "runs:/"))


def load_any(ref: str | Path) -> RiskModel:
    """A model from a directory or an MLflow model URI."""
    if isinstance(ref, str) and is_model_uri(ref):
        from pipelines.training.tracking import load_model_uri

        return load_model_uri(ref)[0]
    return load_model(Path(ref))


def load_or_train(
    model_dir: Path, progress: Callable[[int], None] | None = None
) -> tuple[RiskModel, bool]:
    """Load the model in ``model_dir``; train and save one there if there is none.

    Returns ``(model, trained_now)``.
    """
    if (model_dir / "model.lgb").exists():
        return load_model(model_dir), False
    logger.info("no risk model in %s: training one on simulated history", model_dir)
    model, report = train_on_simulation(hours=FIRST_RUN_HOURS, progress=progress)
    try:
        save_model(model, model_dir)
    except OSError as exc:
        raise ModelError(f"trained a model but cannot save it to {model_dir}: {exc}") from exc
    logger.info("trained model %s: %s", model.version, report["metrics"])
    return model, True
