"""MLflow: training runs tracked, the model registered as ``failure-risk``, the champion.

Where: the tracking URI is ``PRECOVERY_MLFLOW__TRACKING_URI``, else
``MLFLOW_TRACKING_URI``, else a SQLite file in the working directory, ``./mlruns.db``;
a SQLite store keeps its artifacts in ``mlartifacts/`` next to the file (what
``scripts/mlflow-ui`` opens). A team points
every machine at one MLflow tracking server backed by PostgreSQL (docs/retraining.md).

What a training run holds: its parameters (the training settings and LightGBM's),
the metrics of the test window for the model and each baseline (``baseline.<name>.*``),
the data's SHA-256 and time range and the declared inputs (tags and ``inputs.json``),
three plots (precision-recall curve, lead-time histogram, calibration curve), the
report (``report.json``) and the model in MLflow's native LightGBM flavour with its
signature; the rest of the :class:`~predictor.risk.RiskModel` (calibration, declared
inputs, horizon, detector) rides in the MLmodel file's ``metadata`` under
``risk_model``, so ``models:/failure-risk@champion`` loads back into the same
RiskModel, with the same version hash.

MLflow is imported lazily (seconds) and with its import-time warnings silenced: they
are about MLflow's own GenAI types, not ours.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from predictor.errors import EdgeError, ModelError
from predictor.risk import RiskModel

if TYPE_CHECKING:
    from pipelines.settings import MlflowSettings
    from pipelines.training.train import TrainConfig, TrainResult

logger = logging.getLogger(__name__)

#: The alias the stream serves.
CHAMPION = "champion"


@contextmanager
def quiet() -> Iterator[None]:
    """MLflow's own warnings (deprecations in its dependencies) off; ours stay errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _mlflow() -> Any:
    with quiet():
        import mlflow
        import mlflow.lightgbm  # noqa: F401

    return mlflow


def resolve_uri(settings: MlflowSettings) -> str:
    """The tracking URI (see the module doc for the order)."""
    uri = settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path('mlruns.db').resolve()}"


class Tracker:
    """The MLflow edge: log a training run, register, promote, load by alias."""

    def __init__(self, settings: MlflowSettings) -> None:
        self.settings = settings
        self.uri = resolve_uri(settings)
        self.name = settings.model_name
        self.mlflow = _mlflow()
        with quiet():
            from mlflow import MlflowClient

            self.mlflow.set_tracking_uri(self.uri)
            self.client = MlflowClient(self.uri)

    def _experiment_id(self) -> str:
        name = self.settings.experiment
        try:
            with quiet():
                exp = self.client.get_experiment_by_name(name)
                if exp is not None:
                    return str(exp.experiment_id)
                # The local SQLite default keeps artifacts next to it; a server decides.
                location = None
                if self.uri.startswith("sqlite:///"):
                    db = Path(self.uri[len("sqlite:///") :])
                    folder = self.settings.artifacts_dir or db.parent / "mlartifacts"
                    location = folder.resolve().as_uri()
                return str(self.client.create_experiment(name, artifact_location=location))
        except Exception as exc:  # MLflow raises many types; name the store
            raise EdgeError(f"MLflow at {self.uri}: {exc}") from exc

    # -- training runs -----------------------------------------------------------------
    def log_training(
        self,
        result: TrainResult,
        cfg: TrainConfig,
        register: bool,
        sample_x: np.ndarray,
        extra_params: dict[str, Any] | None = None,
        run_name: str | None = None,
    ) -> dict[str, Any]:
        """Log a training run; register the model when ``register``.

        Returns ``{"run_id", "model_uri", "version"}`` (``version`` None unregistered).
        """
        model, report = result.model, result.report
        text, meta = model.to_state()
        data = model.training_data_ or {}
        params = {**asdict(cfg), **model.get_params(), **(extra_params or {})}
        metrics: dict[str, float] = {
            k: float(v) for k, v in report["metrics"].items() if isinstance(v, int | float)
        }
        for row in report.get("evaluation", [])[1:]:
            for k, v in row.items():
                if k != "name" and isinstance(v, int | float):
                    metrics[f"baseline.{row['name']}.{k}"] = float(v)
        tags = {
            "data.sha256": str(data.get("sha256")),
            "data.from": str(data.get("from")),
            "data.to": str(data.get("to")),
            "data.rows": str(data.get("rows")),
            "test.from": str(report["window"]["test_from"]),
            "test.to": str(report["window"]["test_to"]),
            "model.version": model.version,
            "model.detector": str(model.detector_),
        }
        exp = self._experiment_id()
        mlflow = self.mlflow
        try:
            with quiet(), mlflow.start_run(experiment_id=exp, run_name=run_name) as run:
                mlflow.log_params({k: _param(v) for k, v in params.items()})
                mlflow.log_metrics(metrics)
                mlflow.set_tags(tags)
                mlflow.log_dict(model.inputs, "inputs.json")
                mlflow.log_dict(_jsonable(report), "report.json")
                import matplotlib.pyplot as plt

                for name, fig in plots(result).items():
                    mlflow.log_figure(fig, f"plots/{name}.png")
                    plt.close(fig)
                info = self._log_model(model, sample_x, meta, register)
                run_id = run.info.run_id
        except EdgeError:
            raise
        except Exception as exc:
            raise EdgeError(f"MLflow at {self.uri}: logging the run failed: {exc}") from exc
        version = info.registered_model_version
        if version is not None:
            with quiet():
                for k in ("test.from", "test.to", "data.sha256", "model.version"):
                    self.client.set_model_version_tag(self.name, str(version), k, tags[k])
        logger.info("MLflow run %s, model %s version %s", run_id, self.name, version)
        del text
        return {
            "run_id": run_id,
            "model_uri": info.model_uri,
            "version": None if version is None else str(version),
        }

    def _log_model(
        self, model: RiskModel, sample_x: np.ndarray, meta: dict[str, Any], register: bool
    ) -> Any:
        import lightgbm as lgb
        import pandas as pd
        from mlflow.models import infer_signature

        sample = pd.DataFrame(
            np.asarray(sample_x[:50], dtype=np.float32), columns=list(model.feature_names_)
        )
        signature = infer_signature(sample, model.booster_.predict(sample.to_numpy()))
        return self.mlflow.lightgbm.log_model(
            model.booster_,
            name="model",
            signature=signature,
            metadata={"risk_model": _jsonable(meta)},
            registered_model_name=self.name if register else None,
            # Listing what the model needs by hand skips MLflow's slow inference (≈10 s).
            pip_requirements=[f"lightgbm=={lgb.__version__}"],
        )

    # -- registry ----------------------------------------------------------------------
    def champion(self) -> Any | None:
        """The champion's ModelVersion, or None when there is none."""
        with quiet():
            try:
                return self.client.get_model_version_by_alias(self.name, CHAMPION)
            except Exception as exc:
                if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
                    return None
                raise EdgeError(f"MLflow at {self.uri}: {exc}") from exc

    def version(self, version: str) -> Any:
        with quiet():
            try:
                return self.client.get_model_version(self.name, version)
            except Exception as exc:
                raise EdgeError(
                    f"MLflow at {self.uri}: no version {version} of {self.name!r}: {exc}"
                ) from exc

    def latest_version(self) -> str | None:
        with quiet():
            found = self.client.search_model_versions(f"name='{self.name}'")
        return max((str(v.version) for v in found), key=int, default=None)

    def set_champion(self, version: str, record: dict[str, Any]) -> None:
        """Point ``@champion`` at ``version`` and record why on the version."""
        with quiet():
            self.client.set_registered_model_alias(self.name, CHAMPION, version)
            self.client.set_model_version_tag(
                self.name, version, "promotion", json.dumps(_jsonable(record))[:4900]
            )

    def load(self, version: str) -> RiskModel:
        return load_model_uri(f"models:/{self.name}/{version}", self)[0]


def load_model_uri(uri: str, tracker: Tracker | None = None) -> tuple[RiskModel, str]:
    """A RiskModel from an MLflow model URI; returns ``(model, uri resolved)``.

    ``models:/failure-risk@champion`` resolves the alias to its version first, so the
    caller knows which version it got (``models:/failure-risk/3``).
    """
    if tracker is None:
        from pipelines.settings import get_settings

        tracker = Tracker(get_settings().mlflow)
    mlflow = tracker.mlflow
    resolved = uri
    if uri.startswith("models:/") and "@" in uri:
        name, alias = uri[len("models:/") :].split("@", 1)
        with quiet():
            try:
                mv = tracker.client.get_model_version_by_alias(name, alias)
            except Exception as exc:
                raise ModelError(f"{uri}: no such model alias in {tracker.uri} ({exc})") from exc
        resolved = f"models:/{name}/{mv.version}"
    with tempfile.TemporaryDirectory() as tmp, quiet():
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=resolved, dst_path=tmp))
            import yaml

            mlmodel = yaml.safe_load((local / "MLmodel").read_text())
            text = (local / "model.lgb").read_text()
        except Exception as exc:
            raise ModelError(f"cannot load {uri} from {tracker.uri}: {exc}") from exc
    meta = (mlmodel.get("metadata") or {}).get("risk_model")
    if not meta:
        raise ModelError(f"{uri} is not a Precovery risk model (no risk_model metadata)")
    model = RiskModel.from_state(meta, model_text=text)
    if resolved.startswith("models:/"):
        model.registered_as_ = resolved[len("models:/") :]
    return model, resolved


def plots(result: TrainResult) -> dict[str, Any]:
    """The run's figures: ``pr_curve``, ``lead_time_hist``, ``calibration``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve

    y, risk = result.y_test, result.risk_test
    figs: dict[str, Any] = {}
    fig, ax = plt.subplots(figsize=(5, 4))
    if len(np.unique(y)) == 2:
        prec, rec, _ = precision_recall_curve(y, risk)
        ax.plot(rec, prec, label=f"model (PR-AUC {result.report['metrics']['pr_auc']:.3f})")
    ax.axhline(float(np.mean(y)) if len(y) else 0.0, ls="--", c="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test window")
    ax.legend()
    figs["pr_curve"] = fig
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, leads in result.leads_s.items():
        if leads:
            ax.hist(np.asarray(leads) / 60.0, bins=20, alpha=0.5, label=name)
    ax.axvline(result.report["window"]["min_lead_s"] / 60.0, ls="--", c="k", label="min lead")
    ax.set(xlabel="lead time (min)", ylabel="incidents", title="Warning before incidents")
    ax.legend()
    figs["lead_time_hist"] = fig
    fig, ax = plt.subplots(figsize=(5, 4))
    if len(np.unique(y)) == 2:
        frac, mean = calibration_curve(y, risk, n_bins=10, strategy="quantile")
        ax.plot(mean, frac, "o-", label="model")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", label="perfect")
    ax.set(xlabel="predicted risk", ylabel="observed frequency", title="Calibration, test")
    ax.legend()
    figs["calibration"] = fig
    for f in figs.values():
        f.tight_layout()
    return figs


def _param(v: Any) -> Any:
    return v if isinstance(v, int | float | str | bool) or v is None else json.dumps(v)


def _jsonable(obj: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN to None."""
    return json.loads(json.dumps(obj, default=_default).replace("NaN", "null"))


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
