"""``precovery evaluate-detectors``: detectors and baselines through one code path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from pipelines.cli.main import app
from pipelines.offline import evaluate_detectors as ev

runner = CliRunner()


def _small_copy(tmp: Path, n_hist: int = 800, n_test: int = 2000) -> Path:
    """Services 1 and 2 of the repository's JumpStarter slice, shortened, as CSV."""
    out = tmp / "data"
    out.mkdir()
    for n in (1, 2):
        h = pd.read_parquet(ev.DEFAULT_DATA_DIR / f"service{n}.history.parquet")
        t = pd.read_parquet(ev.DEFAULT_DATA_DIR / f"service{n}.test.parquet")
        h.tail(n_hist).to_csv(out / f"service{n}.history.csv", index=False)
        t.head(n_test).to_csv(out / f"service{n}.test.csv", index=False)
    return out


def test_repository_carries_every_service() -> None:
    names = ev.list_entities(ev.DEFAULT_DATA_DIR)
    assert names == [f"service{i}" for i in range(30)]
    assert ev.split_of("service3") == "held_out" and ev.split_of("service4") == "tune"
    big = [p for p in ev.DEFAULT_DATA_DIR.iterdir() if p.stat().st_size >= 5_000_000]
    assert not big
    assert (ev.DEFAULT_DATA_DIR.parent / "LICENSE").is_file()


def test_evaluate_detectors_json(tmp_path: Path) -> None:
    data = _small_copy(tmp_path)
    out = tmp_path / "report.json"
    result = runner.invoke(
        app,
        ["evaluate-detectors", "--data", str(data), "--json", str(out)]
        + ["--methods", "surprise,pca"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["settings"]["k_rows"] == ev.K_ROWS
    rows = report["entities"]
    assert {(r["entity"], r["method"]) for r in rows} == {
        (f"service{n}", m) for n in (1, 2) for m in ("surprise", "pca")
    }
    for r in rows:
        assert r["days"] > 6.0  # 2,000 five-minute rows
        if r["events"]:
            assert 0.0 <= r["pr_auc"] <= 1.0 and 0.0 <= r["vus_pr"] <= 1.0
            assert 0.0 <= r["recall_at_1fa"] <= 1.0
    ours = [r for r in rows if r["method"] == "surprise"]
    assert all(r["fixed_fa_per_day"] is not None for r in ours)
    assert "held_out" in result.output


def test_comparison_detectors_are_evaluated_not_run(tmp_path: Path) -> None:
    """``ewmaz`` and ``hst`` do not lead the baselines: evaluate-detectors scores them,
    ``detect`` (like the demo and the stream) refuses them by name."""
    data = _small_copy(tmp_path, n_hist=200, n_test=600)
    out = tmp_path / "report.json"
    result = runner.invoke(
        app,
        ["evaluate-detectors", "--data", str(data), "--json", str(out), "--methods", "ewmaz"],
    )
    assert result.exit_code == 0, result.output
    assert {r["method"] for r in json.loads(out.read_text())["entities"]} == {"ewmaz"}
    for name in ("ewmaz", "hst"):
        result = runner.invoke(
            app,
            ["detect", str(data / "service1.test.csv"), "--out", str(tmp_path / "s.csv")]
            + ["--detector", name],
        )
        assert result.exit_code == 2, result.output
        assert name in result.output and "surprise_hst" in result.output


def test_evaluate_detectors_bad_data_dir(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate-detectors", "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "no NAME.test.parquet" in result.output


def test_metrics_on_a_known_case() -> None:
    label = np.zeros(600, dtype=np.int8)
    label[300:320] = 1
    score = np.zeros(600)
    score[298:322] = 5.0  # opens 2 rows early
    score[100] = 4.0  # one false alarm
    m = ev.score_metrics(score, label, days=600 * 300 / 86400, step_s=300.0, calibrated=False)
    assert m["recall_at_1fa"] == 1.0
    assert m["median_lead_s"] == 600.0
    assert m["pr_auc"] > 0.8 and m["vus_pr"] > 0.7
