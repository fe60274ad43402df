"""``precovery detect`` and ``precovery evaluate-detectors``: anomaly scores on telemetry.

``detect`` scores a file row by row (:mod:`pipelines.offline.detect`);
``evaluate-detectors`` judges the detectors against baselines on labelled services
(:mod:`pipelines.offline.evaluate_detectors`). Registered on the one ``precovery`` app by
:mod:`pipelines.cli.main`; pandas, river and the models are imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli import inputs, options
from pipelines.cli.console import console, fail, progress, setup_logging
from pipelines.cli.options import Detector, Mkdir, Verbose
from predictor.errors import PrecoveryError, ValidationError


def detect(
    telemetry: Annotated[Path, typer.Argument(help="Telemetry to score, CSV or Parquet")],
    out: Annotated[Path, options.out("Scores file; a name without .csv/.parquet takes --format")],
    history: Annotated[Path | None, options.history("Warm-up history, not written")] = None,
    model_dir: Annotated[Path | None, options.model_dir()] = None,
    detector: Detector = "surprise",
    metrics: Annotated[str | None, options.metrics("Comma-separated metric columns")] = None,
    fmt: Annotated[
        str | None, options.table_format("csv or parquet; default: from the --out name, else csv")
    ] = None,
    mkdir: Mkdir = False,
    verbose: Verbose = False,
) -> None:
    """Score a telemetry file row by row: anomaly_score, and risk/health with a model."""
    try:
        inputs.input_file(telemetry, "TELEMETRY")
        if history is not None:
            inputs.input_file(history, "--history")
        if model_dir is not None:
            inputs.model_dir(model_dir)
        inputs.one_of(detector, ("surprise", "surprise_hst"), "--detector")
        chosen = tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics else None
        if metrics is not None and not chosen:
            raise ValidationError("bad_option", f"--metrics {metrics!r}: no column names")
        out_format = inputs.output_format(out, fmt)
        inputs.distinct(out, [telemetry, history])
        inputs.output_path(out, "--out", mkdir)
    except PrecoveryError as exc:
        raise fail(exc) from exc
    setup_logging(verbose)
    from pipelines.files.frames import count_rows
    from pipelines.offline.detect import plan_detect, run_detect
    from pipelines.training.models import load_model

    try:
        model = load_model(model_dir) if model_dir else None
        plan = plan_detect(telemetry, out, history, model, detector, chosen, out_format)
        with progress() as bar:
            task = bar.add_task("scoring", total=count_rows(telemetry))
            summary = run_detect(plan, progress=lambda n: bar.advance(task, n))
    except (PrecoveryError, OSError, ValueError) as exc:
        raise fail(exc) from exc
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(summary.reject_reasons.items()))
    console.print(
        f"scored {summary.rows:,} rows ({summary.rejected:,} rejected{reasons and ': ' + reasons})"
        f" of {summary.entities:,} entities on {len(summary.metrics)} metrics"
        f"{' with risk' if summary.with_risk else ''} → {summary.out} ({summary.format})"
    )
    if summary.rows and summary.rejected == summary.rows:
        raise fail(
            RuntimeError(f"every row of {telemetry} was rejected ({reasons}); nothing was scored")
        )


def evaluate_detectors(
    data: Annotated[
        Path | None,
        typer.Option(
            envvar="PRECOVERY_DETECTOR_DATA",
            help="Folder of NAME.test.parquet|csv (+ NAME.history.*); default: the JumpStarter "
            "services the repository carries",
        ),
    ] = None,
    incidents: Annotated[
        Path | None,
        options.incidents(
            "CSV of host,started_at,resolved_at labelling the rows (else a label column)"
        ),
    ] = None,
    json_out: Annotated[
        Path | None, options.json_file("Write the full report here", envvar="PRECOVERY_JSON")
    ] = None,
    methods: Annotated[
        str,
        typer.Option(envvar="PRECOVERY_METHODS", help="Comma-separated detectors and baselines"),
    ] = "surprise,surprise_hst,river_hst,iforest,pca",
    verbose: Verbose = False,
) -> None:
    """Detectors vs baselines on labelled telemetry: PR-AUC, VUS-PR, recall at 1 FA/day."""

    from pipelines.offline import evaluate_detectors as ev

    setup_logging(verbose)
    try:
        if incidents is not None:
            inputs.input_file(incidents, "--incidents")
        chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
        for m in chosen:
            inputs.one_of(m, (*ev.DETECTORS, *ev.COMPARISON, *ev.BASELINES), "--methods")
        data_dir = data or ev.DEFAULT_DATA_DIR
        names = ev.list_entities(data_dir) if data_dir.is_dir() else []
        if not names:
            raise ValidationError(
                "bad_option", f"--data {data_dir}: no NAME.test.parquet or NAME.test.csv there"
            )
        with progress("entities") as bar:
            task = bar.add_task("scoring", total=len(names))
            df = ev.evaluate(
                data_dir, incidents, chosen, names, progress=lambda n: bar.advance(task, n)
            )
        report = ev.to_json(df)
        if json_out is not None:
            json_out.write_text(json.dumps(report, indent=2))
        for split in ("held_out", "tune"):
            table = ev.summarise(df, split)
            if len(table):
                console.print(f"[bold]{split}[/bold] ({ev.SPLIT_HELP[split]})")
                console.print(table.round(3).to_string())
    except (PrecoveryError, OSError, ValueError) as exc:
        raise fail(exc) from exc
