"""The ``precovery`` console script: simulate, detect, train and demo, end to end."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines.cli.main import app
from pipelines.training.models import load_model
from predictor.detectors.calibration import score_from_bits
from predictor.events import SESSIONS, parse_ts
from predictor.features import DEFAULT_METRICS
from predictor.health import risk_term
from predictor.risk import RiskModel

runner = CliRunner()
ID_COLUMNS = ["ts", "system", "component", "host"]
INCIDENT_COLUMNS = [
    "incident_id",
    "system",
    "component",
    "host",
    "started_at",
    "resolved_at",
    "severity",
    "kind",
    "summary",
]
POSITION_COLUMNS = [
    "ts",
    "system",
    "venue",
    "net_notional_usd",
    "gross_notional_usd",
    "open_orders",
]
MARKET_COLUMNS = [
    "ts",
    "venue",
    "volatility_bps_per_min",
    "spread_bps",
    "depth_usd",
    "session",
    "event_risk",
]


def invoke(*args: str | Path) -> str:
    """Run the CLI in-process; returns its output with whitespace collapsed (rich wraps)."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return squash(result.output)


def squash(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def sim_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim_csv")
    invoke("simulate", "--hours", "2", "--out", out, "--format", "csv", "--seed", "7")
    return out


@pytest.fixture(scope="module")
def sim_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim_parquet")
    invoke("simulate", "--hours", "2", "--out", out, "--format", "parquet", "--seed", "7")
    return out


# -- simulate ----------------------------------------------------------------------------
def test_simulate_csv_writes_the_contracts(sim_csv: Path) -> None:
    assert {p.name for p in sim_csv.iterdir()} == {
        "telemetry.csv",
        "positions.csv",
        "market.csv",
        "incidents.csv",
    }
    tele = pd.read_csv(sim_csv / "telemetry.csv")
    assert list(tele.columns[:4]) == ID_COLUMNS
    assert set(DEFAULT_METRICS) <= set(tele.columns)
    assert tele["ts"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").all()
    ts = np.array([parse_ts(t) for t in tele["ts"]])
    assert np.all(np.diff(ts) >= 0)
    assert ts.max() - ts.min() == pytest.approx(2 * 3_600_000, abs=20_000)
    assert tele["host"].nunique() > 10 and tele["system"].nunique() == 3
    pos = pd.read_csv(sim_csv / "positions.csv")
    assert list(pos.columns) == POSITION_COLUMNS and (pos["gross_notional_usd"] >= 0).all()
    market = pd.read_csv(sim_csv / "market.csv")
    assert list(market.columns) == MARKET_COLUMNS
    assert set(market["session"]) <= set(SESSIONS)
    incidents = pd.read_csv(sim_csv / "incidents.csv")
    assert list(incidents.columns) == INCIDENT_COLUMNS


def test_simulate_parquet_matches_csv(sim_parquet: Path, sim_csv: Path) -> None:
    assert {p.name for p in sim_parquet.iterdir()} == {
        "telemetry.parquet",
        "positions.parquet",
        "market.parquet",
        "incidents.csv",
    }
    ts_type = pq.read_schema(sim_parquet / "telemetry.parquet").field("ts").type
    assert str(ts_type).startswith("timestamp[") and ts_type.tz == "UTC"
    tele = pd.read_parquet(sim_parquet / "telemetry.parquet")
    csv = pd.read_csv(sim_csv / "telemetry.csv")
    assert len(tele) == len(csv) and list(tele.columns) == list(csv.columns)
    np.testing.assert_allclose(tele["cpu_pct"].to_numpy(), csv["cpu_pct"].to_numpy())
    ms = tele["ts"].astype("datetime64[ms, UTC]").astype("int64").to_numpy()
    assert ms.tolist() == [parse_ts(t) for t in csv["ts"]]
    assert list(pd.read_parquet(sim_parquet / "market.parquet").columns) == MARKET_COLUMNS


def test_simulate_rejects_an_unknown_format(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["simulate", "--hours", "1", "--out", str(tmp_path), "--format", "xlsx"]
    )
    assert result.exit_code == 2
    assert not any(tmp_path.iterdir())


# -- detect ------------------------------------------------------------------------------
def test_detect_single_metric_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 400
    ts = pd.date_range("2026-01-05", periods=n, freq="1min", tz="UTC")
    stamps = ts.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
    values: list[float | str] = list(np.round(100 + rng.standard_normal(n), 3))
    values[300] = 140.0  # a spike
    values[200] = ""  # a missing reading: scored, not rejected
    stamps[150] = "not a time"
    stamps[250] = stamps[249]  # a duplicate
    src = tmp_path / "series.csv"
    pd.DataFrame({"timestamp": stamps, "value": values}).to_csv(src, index=False)
    out = tmp_path / "scores.csv"
    text = invoke("detect", src, "--out", out)
    assert "2 rejected" in text and "1 entities" in text

    got = pd.read_csv(out, keep_default_na=False, na_values={"anomaly_score": [""]})
    assert list(got.columns) == ["timestamp", "anomaly_score", "reject_reason"]
    assert len(got) == n
    assert got["timestamp"].tolist() == stamps  # one row per input row, same order
    rejected = got["reject_reason"] != ""
    assert got.loc[rejected, "reject_reason"].to_dict() == {150: "bad_timestamp", 250: "duplicate"}
    score = got["anomaly_score"]
    assert score[rejected].isna().all() and score[~rejected].notna().all()
    assert score[~rejected].between(0.0, 1.0).all()
    # The spike (40 sd) ranks first and sits far in the tail: at least 20 bits of surprise
    # (a chance rate under one in a million rows; the old probability scale read 0.99).
    assert score[300] == score.max() and score[300] > score_from_bits(np.array([20.0]))[0]
    assert (score[~rejected].drop(index=300) < score[300]).all()  # no tie at the top
    assert score.iloc[:20].eq(0.0).all()  # no evidence before warm-up


def test_detect_epoch_seconds_csv(tmp_path: Path) -> None:
    n = 60
    src = tmp_path / "epoch.csv"
    pd.DataFrame(
        {"timestamp": 1_767_571_200 + 60 * np.arange(n), "value": np.linspace(1.0, 2.0, n)}
    ).to_csv(src, index=False)
    out = tmp_path / "epoch_scores.csv"
    invoke("detect", src, "--out", out)
    got = pd.read_csv(out, keep_default_na=False, na_values={"anomaly_score": [""]})
    assert len(got) == n and (got["reject_reason"] == "").all()
    assert got["anomaly_score"].between(0.0, 1.0).all()


def _split_history(sim_parquet: Path, tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    tele = pd.read_parquet(sim_parquet / "telemetry.parquet")
    cut = tele["ts"].min() + pd.Timedelta(hours=1)
    hist, test = tele[tele["ts"] < cut], tele[tele["ts"] >= cut].reset_index(drop=True)
    hist_path, test_path = tmp_path / "history.parquet", tmp_path / "test.parquet"
    hist.to_parquet(hist_path, index=False)
    test.to_parquet(test_path, index=False)
    return hist_path, test_path, test


def test_detect_multi_entity_parquet_with_history(sim_parquet: Path, tmp_path: Path) -> None:
    hist_path, test_path, test = _split_history(sim_parquet, tmp_path)
    warm, cold = tmp_path / "warm.parquet", tmp_path / "cold.parquet"
    invoke("detect", test_path, "--history", hist_path, "--out", warm)
    invoke("detect", test_path, "--out", cold)
    for path in (warm, cold):
        got = pd.read_parquet(path)
        assert list(got.columns) == [*ID_COLUMNS, "anomaly_score", "reject_reason"]
        assert len(got) == len(test)
        assert got["host"].tolist() == test["host"].tolist()
        assert (got["ts"] == test["ts"]).all()
        assert (got["reject_reason"] == "").all()
        assert got["anomaly_score"].between(0.0, 1.0).all()
    warm_df, cold_df = pd.read_parquet(warm), pd.read_parquet(cold)
    first = ~test.duplicated("host")
    assert (cold_df.loc[first, "anomaly_score"] == 0.0).all()  # no evidence without history
    assert (warm_df.loc[first, "anomaly_score"] > 0.0).mean() > 0.5  # warmed up by history


def test_detect_with_a_model_adds_risk_and_health(
    sim_parquet: Path, small_model_dir: Path, small_model: RiskModel, tmp_path: Path
) -> None:
    out = tmp_path / "risk.csv"
    text = invoke(
        "detect", sim_parquet / "telemetry.parquet", "--model", small_model_dir, "--out", out
    )
    assert "with risk" in text
    got = pd.read_csv(
        out, keep_default_na=False, na_values={"anomaly_score": [""], "risk": [""], "health": [""]}
    )
    assert list(got.columns) == [*ID_COLUMNS, "anomaly_score", "risk", "health", "reject_reason"]
    assert len(got) == pq.ParquetFile(sim_parquet / "telemetry.parquet").metadata.num_rows
    assert got["risk"].between(0.0, 1.0).all()
    assert got["health"].between(0.0, 100.0).all()
    assert got["risk"].nunique() > 1
    # Health never reads better than the risk allows (predictor/health.py: risk below the
    # policy's watch threshold is background; above, health falls linearly to 0).
    assert (got["health"] <= 100.0 * (1.0 - risk_term(got["risk"].to_numpy())) + 1e-6).all()


def test_detect_missing_file_fails_cleanly(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["detect", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 2
    assert "not_found" in squash(result.output) and "does not exist" in squash(result.output)


# -- train -------------------------------------------------------------------------------
def test_train_writes_model_meta_and_report(tmp_path: Path) -> None:
    data = tmp_path / "history"
    invoke(
        "simulate",
        "--hours",
        "8",
        "--failures-per-day",
        "120",
        "--seed",
        "3",
        "--out",
        data,
        "--format",
        "parquet",
    )
    model_dir = tmp_path / "model"
    text = invoke(
        "train",
        "--telemetry",
        data / "telemetry.parquet",
        "--incidents",
        data / "incidents.csv",
        "--out",
        model_dir,
        "--horizon-s",
        "900",
    )
    assert {p.name for p in model_dir.iterdir()} >= {"model.lgb", "meta.json", "report.json"}
    meta = json.loads((model_dir / "meta.json").read_text())
    report = json.loads((model_dir / "report.json").read_text())
    model = load_model(model_dir)
    assert meta["version"] == model.version and meta["version"] in text
    assert model.horizon_s == 900.0
    m = report["metrics"]
    assert m["rows_train"] > 0 and m["rows_test"] > 0 and m["test_incidents"] > 0
    assert 0.5 < m["roc_auc"] <= 1.0
    assert 0.0 <= m["pr_auc"] <= 1.0
    assert m["pr_auc"] > m["base_rate_test"]  # ranks better than chance
    assert len(report["per_incident"]) == m["test_incidents"]


def test_train_without_incidents_in_the_data_fails_cleanly(sim_csv: Path, tmp_path: Path) -> None:
    empty = tmp_path / "incidents.csv"
    empty.write_text(",".join(INCIDENT_COLUMNS) + "\n")
    result = runner.invoke(
        app,
        [
            "train",
            "--telemetry",
            str(sim_csv / "telemetry.csv"),
            "--incidents",
            str(empty),
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert result.exit_code == 2
    assert not (tmp_path / "m").exists()


def test_train_refuses_a_test_window_bound_that_is_no_duration(
    sim_csv: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "--telemetry",
            str(sim_csv / "telemetry.csv"),
            "--incidents",
            str(sim_csv / "incidents.csv"),
            "--test-max",
            "0d",
        ],
    )
    assert result.exit_code == 2
    assert "--test-max" in result.output and "'0d'" in result.output


# -- demo --------------------------------------------------------------------------------
def test_demo_runs_serves_and_summarises(small_model_dir: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "precovery"
    summary_path = tmp_path / "summary.json"
    cmd = [
        str(exe),
        "demo",
        "--duration",
        "8",
        "--speed",
        "300",
        "--port",
        "0",
        "--model",
        str(small_model_dir),
        "--summary-json",
        str(summary_path),
    ]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    stdout: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()
    with (
        (tmp_path / "stderr.txt").open("w") as err,
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env) as proc,
    ):

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            port = None
            deadline = time.monotonic() + 60
            while port is None and time.monotonic() < deadline:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                if line is None:
                    break
                stdout.append(line)
                match = re.search(r"API on http://127\.0\.0\.1:(\d+)", line)
                if match:
                    port = int(match.group(1))
            assert port, "".join(stdout) + (tmp_path / "stderr.txt").read_text()
            base = f"http://127.0.0.1:{port}"
            health = httpx.get(f"{base}/healthz", timeout=5).json()
            assert health["status"] == "ok" and health["model_version"].startswith("sha-")
            time.sleep(2.0)
            systems = httpx.get(f"{base}/v1/systems", timeout=5).json()
            assert {s["system"] for s in systems} == {"eq-oms", "fx-pricing", "md-feed"}
            assert httpx.get(f"{base}/v1/systems/eq-oms", timeout=5).status_code == 200
            assert proc.wait(timeout=90) == 0, (tmp_path / "stderr.txt").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
    while (line := lines.get()) is not None:
        stdout.append(line)
    text = "".join(stdout)
    assert "Demo summary" in text
    events_row = re.search(r"events processed\D+([\d,]+)", text)
    assert events_row and int(events_row.group(1).replace(",", "")) > 0
    summary = json.loads(summary_path.read_text())
    assert summary["events"] > 0
    assert f"{summary['events']:,}" in text
    assert summary["rejected"] == sum(summary["reject_reasons"].values()) > 0  # bad inputs
    assert summary["recommendations"] >= summary["failovers_recommended"] >= 0
    assert summary["failures_foreseen"] <= summary["failures_in_run"]
