"""The failure-risk model: learns, calibrates, explains, persists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pipelines.training.models import load_model, save_model
from predictor.errors import ModelError
from predictor.risk import RiskModel

N_FEATURES = 6
NAMES = [f"feat_{i}" for i in range(N_FEATURES)]


def separable(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positives where feat_1 + feat_3 is high, with noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_FEATURES)).astype(np.float32)
    logit = 2.5 * x[:, 1] + 1.5 * x[:, 3] - 2.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return x, y


@pytest.fixture(scope="module")
def fitted() -> RiskModel:
    x, y = separable(4000, seed=0)
    return RiskModel(n_estimators=60, min_child_samples=20, num_threads=1).fit(x, y, NAMES)


def test_beats_chance_on_held_out_rows(fitted: RiskModel) -> None:
    x, y = separable(2000, seed=1)
    p = fitted.predict_risk(x)
    assert p.shape == (2000,)
    assert np.all((p >= 0) & (p <= 1))
    assert roc_auc_score(y, p) > 0.8
    # calibrated: mean predicted risk near the base rate
    assert abs(float(p.mean()) - float(y.mean())) < 0.05


def test_predict_proba_columns(fitted: RiskModel) -> None:
    x, _ = separable(50, seed=2)
    proba = fitted.predict_proba(x)
    assert proba.shape == (50, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(proba[:, 1], fitted.predict_risk(x))


def test_calibration_keeps_the_ranking(fitted: RiskModel) -> None:
    x, _ = separable(500, seed=3)
    raw = fitted.booster_.predict(x)
    cal = fitted.predict_risk(x)
    order = np.argsort(raw)
    assert np.all(np.diff(cal[order]) >= -1e-12)


def test_save_load_round_trip(fitted: RiskModel, tmp_path: Path) -> None:
    x, _ = separable(300, seed=4)
    path = save_model(fitted, tmp_path / "m")
    assert {p.name for p in path.iterdir()} >= {"model.lgb", "meta.json"}
    meta = json.loads((path / "meta.json").read_text())
    assert meta["version"] == fitted.version and meta["feature_names"] == NAMES
    loaded = load_model(path)
    assert loaded.version == fitted.version
    assert loaded.feature_names_ == fitted.feature_names_
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.predict_risk(x), fitted.predict_risk(x))
    assert [[r.as_dict() for r in rows] for rows in loaded.explain(x[:5])] == [
        [r.as_dict() for r in rows] for rows in fitted.explain(x[:5])
    ]


def test_training_is_deterministic() -> None:
    x, y = separable(1500, seed=5)
    a = RiskModel(n_estimators=20, num_threads=1).fit(x, y, NAMES)
    b = RiskModel(n_estimators=20, num_threads=1).fit(x, y, NAMES)
    assert a.version == b.version
    c = RiskModel(n_estimators=20, seed=8, num_threads=1).fit(x, y, NAMES)
    assert c.version != a.version


@pytest.mark.parametrize("top_k", [1, 3, 5])
def test_explain_gives_top_k_sorted_reasons(fitted: RiskModel, top_k: int) -> None:
    x, _ = separable(20, seed=6)
    out = fitted.explain(x, top_k=top_k)
    assert len(out) == 20
    for row, reasons in zip(x, out, strict=True):
        assert len(reasons) == top_k
        contribs = [r.contribution for r in reasons]
        assert contribs == sorted(contribs, reverse=True)
        for r in reasons:
            assert r.value == pytest.approx(float(row[NAMES.index(r.feature)]))
    # the informative features lead the explanation of the riskiest row
    riskiest = int(np.argmax(fitted.predict_risk(x)))
    assert out[riskiest][0].feature in ("feat_1", "feat_3")


def test_reason_as_dict_handles_nan() -> None:
    x, _ = separable(1, seed=7)
    x[0, :] = np.nan
    model = RiskModel(n_estimators=5, min_child_samples=5, num_threads=1).fit(
        *separable(500, seed=8), NAMES
    )
    d = model.explain(x, top_k=1)[0][0].as_dict()
    assert d["value"] is None and isinstance(d["contribution"], float)


def test_wrong_feature_count_is_a_model_error(fitted: RiskModel) -> None:
    with pytest.raises(ModelError):
        fitted.predict_risk(np.zeros((3, N_FEATURES + 1)))
    with pytest.raises(ModelError):
        fitted.predict_risk(np.zeros(N_FEATURES))


def test_unfitted_and_one_class_and_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        RiskModel().predict_risk(np.zeros((1, 3)))
    with pytest.raises(ModelError):
        RiskModel().fit(np.zeros((100, 3)), np.zeros(100))
    with pytest.raises(ModelError):
        load_model(tmp_path / "nowhere")


def test_empty_input(fitted: RiskModel) -> None:
    assert fitted.predict_risk(np.zeros((0, N_FEATURES))).shape == (0,)
    assert fitted.explain(np.zeros((0, N_FEATURES))) == []


def test_a_model_declares_its_inputs_whatever_the_metric_names(tmp_path: Path) -> None:
    """Train on metrics nobody named in advance; the model says what it takes."""
    import pandas as pd

    from pipelines.training.train import build_features
    from predictor.engine import Engine, EngineConfig

    rng = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame(
        {
            "ts": 1_767_571_200_000 + np.arange(n) * 10_000,
            "system": "s",
            "component": "c",
            "host": "h",
            "queue.len": rng.normal(10, 1, n),
            "Temp (C)": rng.normal(40, 2, n),
        }
    )
    data = build_features([df], None, stride=1)
    assert data.metric_names == ("queue.len", "Temp (C)")
    assert data.source is not None and data.source["rows"] == n and data.source["sha256"]
    y = (np.arange(len(data.x)) % 7 == 0).astype(np.int8)
    model = RiskModel(n_estimators=5, min_child_samples=5).fit(data.x, y, data.feature_names)
    model.metric_names_, model.training_data_ = data.metric_names, data.source
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert loaded.metric_names_ == ("queue.len", "Temp (C)")
    assert loaded.inputs["training_data"]["sha256"] == data.source["sha256"]
    assert loaded.inputs["feature_names"] == data.feature_names
    # a stream configured from the model takes it; one tracking other metrics refuses it
    Engine(EngineConfig(metric_names=loaded.metric_names_), model=loaded)
    with pytest.raises(ModelError, match="queue.len"):
        Engine(EngineConfig(metric_names=("cpu_pct",)), model=loaded)
