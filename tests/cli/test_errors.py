"""Each first-hour mistake of issue 12 gets one line naming the fault and a non-zero exit.

Exit codes: 2 for usage errors (a bad option or input), 1 for a failure while working,
0 only when the job did what was asked. Inputs are checked before any work starts.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

import pipelines.training.train
from pipelines.cli.console import progress
from pipelines.cli.main import app

runner = CliRunner()


def run(*args: str | Path) -> tuple[int, str]:
    """Exit code and the one error line (asserting there is exactly one)."""
    result = runner.invoke(app, [str(a) for a in args])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == (1 if result.exit_code else 0), (result.output, result.exception)
    return result.exit_code, errors[0] if errors else ""


def series_csv(path: Path, n: int = 120, start: str = "2026-01-05", sep: str = ",") -> Path:
    ts = pd.date_range(start, periods=n, freq="1min", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    values = np.round(100 + np.random.default_rng(0).standard_normal(n), 3)
    pd.DataFrame({"timestamp": ts, "value": values}).to_csv(path, index=False, sep=sep)
    return path


@pytest.fixture()
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any feature computation means the inputs were not checked first."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("features computed before the inputs were checked")

    monkeypatch.setattr(pipelines.training.train, "build_features", boom)


# -- simulate / evaluate: durations ------------------------------------------------------
@pytest.mark.parametrize("hours", ["-1", "0", "nan"])
def test_simulate_refuses_a_non_positive_duration(tmp_path: Path, hours: str) -> None:
    code, line = run("simulate", "--hours", hours, "--out", tmp_path / "sim")
    assert code == 2
    assert f"--hours must be a number above 0 hours, got {hours}" in line
    assert not (tmp_path / "sim").exists()


def test_the_hours_progress_bar_counts_hours_not_rows() -> None:
    bar = progress("hours")
    task = bar.add_task("simulating", total=6)
    bar.update(task, completed=4.5)
    out = io.StringIO()
    Console(file=out, width=200).print(bar.make_tasks_table(bar.tasks))
    assert "4.5/6 h" in out.getvalue() and "rows" not in out.getvalue()


@pytest.mark.parametrize("hours", ["0", "1", "-3"])
def test_evaluate_refuses_hours_within_the_warm_up(hours: str) -> None:
    code, line = run("evaluate", "--hours", hours)
    assert code == 2
    assert "--hours must be more than the 1 h warm-up" in line and f"got {hours}" in line
    assert "nan" not in line


# -- detect: cells, delimiter, history ---------------------------------------------------
def test_detect_names_the_text_cells_of_a_numeric_column(tmp_path: Path) -> None:
    src = series_csv(tmp_path / "cpu.csv")
    df = pd.read_csv(src, dtype={"value": object})
    df.loc[[4, 70], "value"] = ["abc", "n/a!"]
    df.to_csv(src, index=False)
    code, line = run("detect", src, "--out", tmp_path / "s.csv")
    assert code == 2
    assert f"{src}: 2 text cells in numeric metric column value" in line
    assert "row 5 column value 'abc'; row 71 column value 'n/a!'" in line
    assert "expected numbers" in line
    assert not (tmp_path / "s.csv").exists()


def test_detect_names_text_cells_past_the_first_chunk_and_leaves_no_output(
    tmp_path: Path,
) -> None:
    from pipelines.offline.detect import detect_file
    from predictor.errors import ValidationError

    src = series_csv(tmp_path / "long.csv", n=300)
    df = pd.read_csv(src, dtype={"value": object})
    df.loc[250, "value"] = "oops"
    df.to_csv(src, index=False)
    out = tmp_path / "s.csv"
    with pytest.raises(ValidationError, match=r"row 251 column value 'oops'"):
        detect_file(src, out, chunk_rows=100)  # the head check sees all 300 rows...
    with pytest.raises(ValidationError, match=r"row 251 column value 'oops'"):
        from pipelines.files.frames import Layout
        from pipelines.offline.detect import DetectPlan, run_detect

        plan = DetectPlan(src, out, "csv", Layout("timestamp", (), ("value",)))
        run_detect(plan, chunk_rows=100)  # ...and so does each streamed chunk
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_detect_says_which_delimiter_it_found(tmp_path: Path) -> None:
    src = series_csv(tmp_path / "semi.csv", sep=";")
    code, line = run("detect", src, "--out", tmp_path / "s.csv")
    assert code == 2
    assert f"{src}: the header is split by ';' (semicolon, 2 columns), not ','" in line


def test_detect_refuses_a_history_that_follows_the_file(tmp_path: Path) -> None:
    src = series_csv(tmp_path / "cpu.csv", start="2026-01-05")
    hist = series_csv(tmp_path / "hist.csv", start="2026-01-06")
    code, line = run("detect", src, "--history", hist, "--out", tmp_path / "s.csv")
    assert code == 2
    assert f"--history {hist} follows {src}: for default the history runs" in line
    assert "the history runs 2026-01-06T00:00:00.000Z to 2026-01-06T01:59:00.000Z" in line
    assert "expected history that ends before the file begins" in line
    assert not (tmp_path / "s.csv").exists()


def test_detect_refuses_a_history_that_overlaps_the_file(tmp_path: Path) -> None:
    src = series_csv(tmp_path / "cpu.csv", start="2026-01-05T01:00")
    hist = series_csv(tmp_path / "hist.csv", start="2026-01-05T00:30")
    code, line = run("detect", src, "--history", hist, "--out", tmp_path / "s.csv")
    assert code == 2 and f"--history {hist} overlaps {src}" in line


def test_detect_with_history_before_the_file_works(tmp_path: Path) -> None:
    src = series_csv(tmp_path / "cpu.csv", start="2026-01-05T02:00")
    hist = series_csv(tmp_path / "hist.csv", start="2026-01-05T00:00")
    code, _ = run("detect", src, "--history", hist, "--out", tmp_path / "s.csv")
    assert code == 0 and len(pd.read_csv(tmp_path / "s.csv")) == 120


def test_detect_fails_when_every_row_is_rejected(tmp_path: Path) -> None:
    src = tmp_path / "dup.csv"
    src.write_text("timestamp,value\n" + "2026-01-05T00:00:00Z,1\n" * 5)
    src.write_text("timestamp,value\n" + "".join(f"not a time {i},1\n" for i in range(5)))
    code, line = run("detect", src, "--out", tmp_path / "s.csv")
    assert code == 1
    assert f"every row of {src} was rejected (bad_timestamp 5); nothing was scored" in line


# -- detect: paths and formats -----------------------------------------------------------
def test_detect_reports_a_wrong_path(tmp_path: Path) -> None:
    code, line = run("detect", tmp_path / "nope.csv", "--out", tmp_path / "s.csv")
    assert (
        code == 2 and line == f"error: not_found: TELEMETRY {tmp_path / 'nope.csv'} does not exist"
    )


def test_detect_refuses_an_output_folder_that_does_not_exist(tmp_path: Path) -> None:
    src = series_csv(tmp_path / "cpu.csv")
    out = tmp_path / "nonexistent_dir" / "x.csv"
    code, line = run("detect", src, "--out", out)
    assert code == 2
    assert f"--out {out}: folder {out.parent} does not exist (create it, or pass --mkdir)" in line
    assert not out.parent.exists()
    code, _ = run("detect", src, "--out", out, "--mkdir")
    assert code == 0 and len(pd.read_csv(out)) == 120


def test_detect_writes_a_name_without_suffix_in_the_chosen_format(tmp_path: Path) -> None:
    src = series_csv(tmp_path / "cpu.csv")
    code, _ = run("detect", src, "--out", tmp_path / "scores")
    assert code == 0
    assert list(pd.read_csv(tmp_path / "scores").columns) == [
        "timestamp",
        "anomaly_score",
        "reject_reason",
    ]
    code, _ = run("detect", src, "--out", tmp_path / "scores.out", "--format", "parquet")
    assert code == 0 and len(pd.read_parquet(tmp_path / "scores.out")) == 120
    code, line = run("detect", src, "--out", tmp_path / "s.csv", "--format", "parquet")
    assert code == 2 and "is a .csv name but --format is parquet" in line


def test_detect_refuses_a_missing_model_and_one_whose_metrics_are_absent(
    tmp_path: Path, small_model_dir: Path
) -> None:
    src = series_csv(tmp_path / "cpu.csv")
    code, line = run("detect", src, "--model", tmp_path / "m", "--out", tmp_path / "s.csv")
    assert code == 2 and f"--model {tmp_path / 'm'} does not exist" in line
    code, line = run("detect", src, "--model", small_model_dir, "--out", tmp_path / "s.csv")
    assert code == 2 and "needs metric columns the file lacks: cpu_pct" in line


def test_detect_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    src = series_csv(tmp_path / "cpu.csv")
    code, line = run("detect", src, "--out", src)
    assert code == 2 and "is also an input" in line
    assert len(pd.read_csv(src)) == 120


# -- train: incidents --------------------------------------------------------------------
def test_train_names_the_missing_metric_columns(tmp_path: Path, no_training: None) -> None:
    tele = tmp_path / "t.csv"
    tele.write_text("ts,system,component,host,cpu_pct\n2026-01-05T00:00:00Z,a,b,c,1\n")
    inc = tmp_path / "incidents.csv"
    inc.write_text("incident_id,system,when\ni1,eq-oms,2026-01-05T00:00:00Z\n")
    code, line = run(
        "train",
        "--telemetry",
        tele,
        "--incidents",
        inc,
        "--out",
        tmp_path / "m",
        "--metrics",
        "cpu_pct,mem_pct",
    )
    assert code == 2
    # the telemetry lacks metrics too; the first fault named is the telemetry's
    assert f"{tele}: metric columns not in the file: mem_pct" in line


def test_train_checks_incident_columns_before_any_work(
    tmp_path: Path, sim_csv: Path, no_training: None
) -> None:
    inc = tmp_path / "incidents.csv"
    inc.write_text("incident_id,system,when\ni1,eq-oms,2026-01-05T00:00:00Z\n")
    code, line = run(
        "train",
        "--telemetry",
        sim_csv / "telemetry.csv",
        "--incidents",
        inc,
        "--out",
        tmp_path / "m",
    )
    assert code == 2
    assert f"{inc}: missing columns component, started_at (has: incident_id, system, when)" in line
    assert not (tmp_path / "m").exists()


def test_train_reports_a_wrong_incidents_path_before_any_work(
    tmp_path: Path, sim_csv: Path, no_training: None
) -> None:
    code, line = run(
        "train",
        "--telemetry",
        sim_csv / "telemetry.csv",
        "--incidents",
        tmp_path / "nope.csv",
        "--out",
        tmp_path / "m",
    )
    assert code == 2 and f"--incidents {tmp_path / 'nope.csv'} does not exist" in line


def test_train_names_incident_rows_whose_times_do_not_parse(
    tmp_path: Path, sim_csv: Path, no_training: None
) -> None:
    inc = tmp_path / "incidents.csv"
    inc.write_text("system,component,started_at\neq-oms,db,2026-01-05T00:00:00Z\neq-oms,db,soon\n")
    code, line = run(
        "train",
        "--telemetry",
        sim_csv / "telemetry.csv",
        "--incidents",
        inc,
        "--out",
        tmp_path / "m",
    )
    assert (
        code == 2
        and "1 row with a time that does not parse: row 2 column started_at 'soon'" in line
    )


@pytest.fixture(scope="module")
def sim_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim_small")
    result = runner.invoke(
        app, ["simulate", "--hours", "0.1", "--out", str(out), "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    return out
