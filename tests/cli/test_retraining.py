"""Retraining end to end on a local MLflow store: train → registry → promote → evaluate.

One simulated history (6 h, many failures) and one SQLite MLflow store per module; the
tests run in file order and build on each other's registry (v1 from the CLI, v2 a
deliberately weak fit from the API).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli.main import app
from pipelines.training.evaluation import KEYS
from tests.factories import SimStream
from tests.unit.test_engine import split

runner = CliRunner()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("history")
    result = runner.invoke(
        app,
        [
            "simulate",
            "--hours",
            "6",
            "--failures-per-day",
            "120",
            "--seed",
            "3",
            "--out",
            str(out),
            "--format",
            "parquet",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlruns.db"


@pytest.fixture()
def mlflow_env(store: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    return store


def invoke(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    text = result.output + (result.stderr if result.stderr_bytes else "")
    return result.exit_code, text


def test_train_logs_the_run_and_registers_a_model_that_round_trips(
    history: Path, mlflow_env: str
) -> None:
    code, text = invoke(
        "train",
        "--telemetry",
        history / "telemetry.parquet",
        "--incidents",
        history / "incidents.csv",
        "--horizon",
        "15m",
    )
    assert code == 0, text
    assert "registered as failure-risk version 1" in text
    for name in ("model", "anomaly_score", "raw_threshold"):
        assert f"\n{name} " in text  # the table: model next to both baselines

    from mlflow import MlflowClient

    from pipelines.training.tracking import load_model_uri

    client = MlflowClient(mlflow_env)
    mv = client.get_model_version("failure-risk", "1")
    run = client.get_run(mv.run_id)
    assert run.data.params["horizon_s"] == "900.0"
    assert run.data.params["min_warning_s"] == "120.0"
    for k in ("pr_auc", "brier", "incidents_caught", "baseline.raw_threshold.pr_auc"):
        assert k in run.data.metrics
    tags = run.data.tags
    assert len(tags["data.sha256"]) == 64 and tags["data.from"] < tags["test.from"]
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert arts == {f"plots/{n}.png" for n in ("pr_curve", "lead_time_hist", "calibration")}

    model, resolved = load_model_uri("models:/failure-risk/1")
    assert resolved == "models:/failure-risk/1"
    assert tags["model.version"] in text  # the content hash the CLI printed
    assert model.version == f"failure-risk/1:{tags['model.version']}"  # what scores carry
    assert model.horizon_s == 900.0 and model.training_data_["sha256"] == tags["data.sha256"]
    assert model.calibration_ is not None  # the RiskModel's own state came back too

    from mlflow.models import get_model_info

    info = get_model_info("models:/failure-risk/1")
    assert info.flavors.keys() >= {"lightgbm"}
    assert info.signature is not None
    assert info.signature.inputs.input_names()[:2] == model.feature_names_[:2]


def test_promote_sets_a_first_champion_then_only_a_better_one(
    history: Path, mlflow_env: str
) -> None:
    args = ("--telemetry", history / "telemetry.parquet", "--incidents", history / "incidents.csv")
    code, text = invoke("promote", *args)
    assert code == 0 and "version 1 is now @champion (first champion)" in text, text

    # v2: a deliberately poor fit (2 leaves, 3 trees) on the same data, through the API
    from pipelines.files.frames import iter_frames
    from pipelines.settings import MlflowSettings
    from pipelines.training.tracking import Tracker
    from pipelines.training.train import TrainConfig, build_features, read_incidents, train_full

    cfg = TrainConfig(horizon_s=900.0, min_warning_s=120.0, n_estimators=3, num_leaves=2)
    data = build_features(iter_frames(history / "telemetry.parquet"), None, cfg.stride)
    result = train_full(data, read_incidents(history / "incidents.csv"), cfg)
    tracker = Tracker(MlflowSettings())
    assert tracker.log_training(result, cfg, True, data.x)["version"] == "2"

    code, text = invoke("promote", *args)
    assert code == 1 and "not promoted: version 2 does not beat champion v1" in text, text
    assert str(tracker.champion().version) == "1"

    code, text = invoke("promote", *args, "--force", "--actor", "alice")
    assert code == 0 and "version 2 is now @champion (forced by alice" in text, text
    mv = tracker.champion()
    assert str(mv.version) == "2"
    record = json.loads(mv.tags["promotion"])
    assert record["forced"] is True and record["champion"] == "1"
    assert [r["name"] for r in record["evaluation"]][:2] == ["v2", "v1 (champion)"]


def test_evaluate_writes_one_object_per_scorer(
    history: Path, mlflow_env: str, tmp_path: Path
) -> None:
    out = tmp_path / "eval.json"
    code, text = invoke(
        "evaluate",
        "--model",
        "models:/failure-risk/1",
        "--telemetry",
        history / "telemetry.parquet",
        "--incidents",
        history / "incidents.csv",
        "--json",
        out,
    )
    assert code == 0, text
    rows = json.loads(out.read_text())
    assert [r["name"] for r in rows] == ["model", "anomaly_score", "raw_threshold"]
    assert all(tuple(r) == KEYS for r in rows)
    model = rows[0]
    assert model["incidents"] > 0 and 0 < model["incidents_caught"] <= model["incidents"]
    assert model["pr_auc"] > rows[1]["pr_auc"]  # the model beats the anomaly score alone


def test_a_weak_model_is_neither_registered_nor_saved(
    history: Path, mlflow_env: str, tmp_path: Path
) -> None:
    incidents = pd.read_csv(history / "incidents.csv")
    late = pd.to_datetime(incidents["started_at"]) >= pd.Timestamp("2026-01-05T04:30:00Z")
    few = tmp_path / "few.csv"
    # every incident before 04:30, only two after: fewer than 5 in the test window
    pd.concat([incidents[~late], incidents[late].head(2)]).to_csv(few, index=False)
    from mlflow import MlflowClient

    before = len(MlflowClient(mlflow_env).search_model_versions("name='failure-risk'"))
    code, text = invoke(
        "train",
        "--telemetry",
        history / "telemetry.parquet",
        "--incidents",
        few,
        "--horizon",
        "15m",
        "--out",
        tmp_path / "m",
    )
    assert code == 1, text
    flat = " ".join(text.split())  # the console wraps long lines
    found = re.search(r"weak model: the test window holds (\d) incidents?; at least 5 are", flat)
    assert found and 1 <= int(found.group(1)) < 5, flat
    assert not (tmp_path / "m").exists()
    assert len(MlflowClient(mlflow_env).search_model_versions("name='failure-risk'")) == before


def test_the_live_state_swaps_to_a_new_champion_between_batches(
    mlflow_env: str, failure_stream: SimStream, tmp_path: Path
) -> None:
    from pipelines.embedded.live import LiveState
    from pipelines.records.audit import AuditLog, AuditStore, sqlite_url
    from pipelines.settings import MlflowSettings
    from pipelines.training.champion import follow_champion, load_champion
    from pipelines.training.tracking import Tracker
    from predictor.engine import Engine, EngineConfig
    from tests.factories import decode

    tracker = Tracker(MlflowSettings())
    model, version = load_champion(tracker)  # v2, forced above
    assert version == "2" and model.version.startswith("failure-risk/2:sha-")
    live = LiveState(Engine(EngineConfig(), model=model, critical=failure_stream.critical))
    audit = AuditLog(AuditStore(sqlite_url(tmp_path / "audit.sqlite")))
    watcher = follow_champion(tracker, live.set_model, model, version, audit, "test", 3600.0)
    try:
        batch = decode(failure_stream.events, live.engine.config.metric_names)
        half = len(batch) // 2
        first, second = split(batch, half)[:2]
        with live.lock:
            live.engine.process(first)
        assert watcher.check() is False  # nothing new yet
        tracker.set_champion("1", {"reason": "test"})
        assert watcher.check() is True and watcher.current == "1"
        assert live.engine.model is not None
        assert live.engine.model.version.startswith("failure-risk/1:sha-")
        with live.lock:
            res = live.engine.process(second)
        # every event counted once: the swap neither dropped nor replayed any
        assert live.engine.counters["events"] == len(first) + len(second)
        assert all(r["model_version"].startswith("failure-risk/1:") for r in res.recommendations)
        audit.flush()
        changes = [r for r in audit.store.query() if r["kind"] == "model_change"]
        assert changes[-1]["payload"]["to"].startswith("failure-risk/1:")
        assert changes[-1]["payload"]["from"].startswith("failure-risk/2:")
    finally:
        watcher.stop()
        audit.close()
