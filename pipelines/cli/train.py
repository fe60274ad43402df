"""``precovery train`` and ``precovery train-sim``: fit the failure-risk model.

``train`` learns from a telemetry and incident history and logs the run to MLflow
(docs/retraining.md); ``train-sim`` fits the baseline that ships in models/baseline on
simulated history. The work is :mod:`pipelines.training.train`; registered on the one
``precovery`` app by :mod:`pipelines.cli.main`; pandas, LightGBM and MLflow are imported
inside the commands.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.cli import inputs, options
from pipelines.cli.console import console, fail, progress, setup_logging
from pipelines.cli.options import Mkdir, Seed, Verbose
from predictor.errors import PrecoveryError


def _passive_openmp() -> None:
    # Before LightGBM loads OpenMP: idle threads sleep instead of spinning, which matters
    # on a machine shared with the stream or other jobs.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def train(
    telemetry: Annotated[Path, options.telemetry("Telemetry history, CSV or Parquet")],
    incidents: Annotated[Path, options.incidents()],
    out: Annotated[
        Path | None, options.model_out("Also write the model directory here (optional)")
    ] = None,
    horizon: Annotated[
        str,
        typer.Option(
            "--horizon",
            "--horizon-s",
            envvar="PRECOVERY_HORIZON",
            help="Label horizon: a row is positive when an incident starts within it (30m, "
            "2h, or seconds)",
        ),
    ] = "30m",
    min_lead: Annotated[
        str,
        options.min_lead("An incident counts as caught only with this much warning (2m, 300s, …)"),
    ] = "2m",
    metrics: Annotated[
        str | None,
        options.metrics(
            "Comma-separated metric columns; default: every numeric one (the model declares them)"
        ),
    ] = None,
    stride: Annotated[
        int,
        typer.Option(
            envvar="PRECOVERY_STRIDE",
            help="Keep every n-th telemetry row as a training row (3: one per 30 s at a 10 s "
            "interval; 1 for sparse data such as 5-minute samples)",
        ),
    ] = 3,
    test_max: Annotated[
        str,
        typer.Option(
            "--test-max",
            envvar="PRECOVERY_TEST_MAX",
            help="Longest test window (the latest 30 % of the history, at most this: 3d, "
            "72h, …); the calibration slice is at most a third of it (bounded memory)",
        ),
    ] = "3d",
    feedback: Annotated[
        Path | None,
        typer.Option(
            envvar="PRECOVERY_FEEDBACK_LABELS",
            help="SREs' verdicts (CSV from precovery feedback-export) weighing the rows",
        ),
    ] = None,
    register: Annotated[
        bool,
        typer.Option(
            envvar="PRECOVERY_REGISTER",
            help="Log the run to MLflow and register the model as failure-risk",
        ),
    ] = True,
    allow_weak: Annotated[
        bool,
        typer.Option(
            envvar="PRECOVERY_ALLOW_WEAK",
            help="Register (and save) a model whose test window holds too few incidents",
        ),
    ] = False,
    mkdir: Mkdir = False,
    verbose: Verbose = False,
) -> None:
    """Train the failure-risk model from telemetry and incident history; log it to MLflow.

    Labels from the incidents, features from the stream's own code, a time-ordered split
    with a purge gap, calibration; the test window is judged next to two baselines. A
    model whose test window holds too few incidents is not registered unless
    --allow-weak.
    """
    chosen = tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics else None
    try:
        inputs.input_file(telemetry, "--telemetry")
        inputs.csv_file(incidents, "--incidents")
        horizon_s = inputs.duration_s(horizon, "--horizon")
        min_lead_s = inputs.duration_s(min_lead, "--min-lead")
        inputs.at_least(stride, 1, "--stride")
        test_max_s = inputs.duration_s(test_max, "--test-max")
        if feedback is not None:
            inputs.csv_file(feedback, "--feedback")
        if out is not None:
            inputs.output_dir(out, "--out", mkdir)
    except PrecoveryError as exc:
        raise fail(exc) from exc
    setup_logging(verbose)
    _passive_openmp()
    from pipelines.files.frames import count_rows, iter_frames
    from pipelines.training.train import (
        StreamSample,
        TrainConfig,
        apply_feedback,
        build_features,
        check_train_inputs,
        read_incidents,
        train_full,
    )

    cfg = TrainConfig(
        horizon_s=horizon_s,
        min_warning_s=min_lead_s,
        stride=stride,
        max_test_s=test_max_s,
        max_calibration_s=test_max_s / 3.0,
    )
    try:
        first_ms, last_ms = check_train_inputs(telemetry, incidents, chosen)
        found = read_incidents(incidents)
        # Without feedback the calm rows the fit would not see are dropped while streaming
        # (bounded memory); feedback adds incidents after the pass, so it keeps every row.
        sample = StreamSample(found, cfg, first_ms, last_ms) if feedback is None else None
        with progress() as bar:
            task = bar.add_task("features", total=count_rows(telemetry))
            data = build_features(
                iter_frames(telemetry),
                chosen,
                cfg.stride,
                lambda n: bar.advance(task, n),
                source=telemetry,
                sample=sample,
            )
        if feedback is not None:
            found = apply_feedback(data, found, feedback, cfg)
        console.print(f"fitting on {len(data.x):,} rows × {len(data.feature_names)} features …")
        result = train_full(data, found, cfg)
    except (PrecoveryError, OSError) as exc:
        raise fail(exc) from exc
    _finish(result, cfg, data.x, out, register, allow_weak, {"telemetry": str(telemetry)})


def _finish(
    result: Any,
    cfg: Any,
    sample_x: Any,
    out: Path | None,
    register: bool,
    allow_weak: bool,
    extra: dict[str, Any],
) -> None:
    """Print the table; refuse a weak model; save and log it (train and train-sim)."""
    from pipelines.training.evaluation import format_table

    report, model = result.report, result.model
    m = report["metrics"]
    w = report["window"]
    console.print(
        f"test window {w['test_from']} .. {w['test_to']}: {m['test_incidents']} incidents, "
        f"{m['rows_test']:,} rows (training rows end {cfg.horizon_s:g} s before it)"
    )
    for line in format_table(report["evaluation"]):
        console.print(line, highlight=False)
    weak = m["test_incidents"] < cfg.min_test_incidents
    if weak:
        console.print(
            f"[yellow]weak model:[/] the test window holds {m['test_incidents']} incident"
            f"{'s' if m['test_incidents'] != 1 else ''}; at least {cfg.min_test_incidents} are "
            "needed to judge the model. Give more history"
            + (" (kept anyway: --allow-weak)." if allow_weak else ".")
        )
        if not allow_weak:
            console.print("not registered and not saved (--allow-weak to keep it anyway)")
            raise typer.Exit(1)
    try:
        if out is not None:
            from pipelines.training.models import save_model

            save_model(model, out)
            (out / "report.json").write_text(json.dumps(report, indent=2))
            console.print(f"model {model.version} saved to {out}")
        if register:
            from pipelines.settings import get_settings
            from pipelines.training.tracking import Tracker

            tracker = Tracker(get_settings().mlflow)
            logged = tracker.log_training(
                result, cfg, register=True, sample_x=sample_x, extra_params=extra
            )
            console.print(
                f"model {model.version} registered as {tracker.name} version "
                f"{logged['version']} (MLflow run {logged['run_id']} at {tracker.uri})"
            )
    except (PrecoveryError, OSError) as exc:
        raise fail(exc) from exc
    if weak:
        console.print("[yellow]kept a weak model[/] (--allow-weak)")


def train_sim(
    out: Annotated[Path, options.model_out("Model directory to write")] = Path("models/baseline"),
    hours: Annotated[float, options.hours("Simulated hours of history")] = 168.0,
    seed: Seed = 11,
    mkdir: Mkdir = False,
    verbose: Verbose = False,
) -> None:
    """Train the baseline model on simulated history (what ships in models/baseline)."""
    try:
        inputs.positive(hours, "--hours", "hours")
        inputs.output_dir(out, "--out", mkdir)
    except PrecoveryError as exc:
        raise fail(exc) from exc
    setup_logging(verbose)
    _passive_openmp()
    from pipelines.training.models import save_model, train_on_simulation

    try:
        with progress() as bar:
            task = bar.add_task("features", total=None)
            model, report = train_on_simulation(
                hours, seed, progress=lambda n: bar.advance(task, n)
            )
        save_model(model, out)
        (out / "report.json").write_text(json.dumps(report, indent=2))
    except (PrecoveryError, OSError) as exc:
        raise fail(exc) from exc
    _print_metrics(report["metrics"])
    console.print(f"model {model.version} saved to {out}")


def _print_metrics(metrics: dict[str, object]) -> None:
    units = {
        "median_lead_time_s": "s",
        "fit_s": "s",
        "false_alarms_per_entity_day": "per entity-day",
    }
    for k, v in metrics.items():
        shown = f"{v:.4g}" if isinstance(v, float) else str(v)
        console.print(f"  {k}: {shown} {units.get(k, '')}")
