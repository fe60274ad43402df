"""``precovery replay`` and ``precovery evaluate``: a history or a simulated day through
the stream's own driver, and a model judged.

``replay`` writes what the stream would publish for a history folder;
``evaluate`` judges a model either on a history (``--telemetry``/``--incidents``: the
model next to the baselines, :func:`pipelines.training.champion.evaluate_history`) or by
replaying a simulated day through the full loop (:mod:`pipelines.offline.replay`).
Registered on the one ``precovery`` app by :mod:`pipelines.cli.main`; the engine, the
models and pandas are imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli import inputs, options
from pipelines.cli.console import console, fail, progress, setup_logging
from pipelines.cli.options import Mkdir, TopologyFile, Verbose
from predictor.errors import PrecoveryError, ValidationError

#: Hours at the start of an evaluation replay that only warm the baselines up.
EVALUATE_WARMUP_H = 1.0


def replay(
    history: Annotated[
        Path,
        options.history(
            "History folder: telemetry.(parquet|csv), optionally positions.*, market.*"
        ),
    ],
    out: Annotated[Path, options.out("recommendations.v1 records, one JSON object per line")],
    model_dir: Annotated[
        Path | None, options.model_dir("Risk model directory (default: baseline)")
    ] = None,
    topology: TopologyFile = None,
    mkdir: Mkdir = False,
    verbose: Verbose = False,
) -> None:
    """Run a history through the stream's own driver; write its recommendations as JSON lines.

    The same records, in the same order, the stream would see on Kafka; the output is
    byte for byte what it would publish on recommendations.v1.
    """
    try:
        if not history.is_dir():
            raise ValidationError("not_found", f"--history {history} is not a folder")
        if not any((history / f"telemetry.{ext}").is_file() for ext in ("parquet", "csv")):
            raise ValidationError(
                "not_found", f"--history {history}: no telemetry.parquet or telemetry.csv"
            )
        if model_dir is not None:
            inputs.model_dir(model_dir)
        inputs.output_path(out, "--out", mkdir)
    except PrecoveryError as exc:
        raise fail(exc) from exc
    setup_logging(verbose)
    from pipelines.offline.replay import replay_history
    from pipelines.settings import engine_config, get_settings
    from pipelines.training.models import BASELINE_DIR, load_model

    tmp = out.with_name(out.name + ".partial")
    try:
        model = load_model(model_dir or BASELINE_DIR)
        config = engine_config(get_settings(), topology=topology)
        with progress("records") as bar, open(tmp, "wb") as fh:
            task = bar.add_task("replaying", total=None)
            report = replay_history(
                history, fh, config, model, progress=lambda n: bar.advance(task, n)
            )
        tmp.replace(out)
    except (PrecoveryError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise fail(exc) from exc
    console.print(
        f"{report['events']:,} events ({report['rejected']:,} rejected) → "
        f"{report['recommendations']:,} recommendations {report['actions']} in {out}"
    )


def evaluate(
    hours: Annotated[float, options.hours("Simulated hours to replay")] = 24.0,
    seed: Annotated[int, options.seed("Simulator seed (unlike the training one)")] = 2027,
    model_ref: Annotated[
        str | None,
        options.model_dir(
            "Risk model directory or MLflow URI (models:/failure-risk@champion); "
            "default: the baseline"
        ),
    ] = None,
    out: Annotated[Path | None, options.out("Write the full report (JSON) here")] = None,
    # No environment variables for the history mode (see pipelines.cli.options).
    telemetry: Annotated[
        Path | None,
        options.telemetry(
            "Judge the model on this history (CSV or Parquet) instead of a replay", envvar=None
        ),
    ] = None,
    incidents: Annotated[
        Path | None,
        options.incidents("The history's incidents, CSV (with --telemetry)", envvar=None),
    ] = None,
    json_out: Annotated[
        Path | None,
        options.json_file("With --telemetry: the table as JSON, one object per scorer"),
    ] = None,
    from_ts: Annotated[
        str | None,
        options.from_ts("With --telemetry: window start (RFC 3339); default: latest 70 %"),
    ] = None,
    min_lead: Annotated[
        str,
        options.min_lead("With --telemetry: minimum warning to count (2m, 300s)", envvar=None),
    ] = "2m",
    champion: Annotated[
        bool, typer.Option(help="With --telemetry: add the registry's @champion to the table")
    ] = False,
    mkdir: Mkdir = False,
    verbose: Verbose = False,
) -> None:
    """Judge a model: on a history with --telemetry/--incidents (model vs baselines), else
    by replaying a simulated day through the full loop (lead times and false alarms)."""
    if telemetry is not None or incidents is not None:
        if telemetry is None or incidents is None:
            raise fail(ValidationError("bad_option", "--telemetry and --incidents go together"))
        setup_logging(verbose)
        from pipelines.training.models import BASELINE_DIR

        evaluate_history_cli(
            model_ref or str(BASELINE_DIR),
            telemetry,
            incidents,
            json_out,
            from_ts,
            min_lead,
            champion,
        )
        return
    try:
        if not hours > EVALUATE_WARMUP_H:  # also catches NaN
            raise ValidationError(
                "bad_option",
                f"--hours must be more than the {EVALUATE_WARMUP_H:g} h warm-up (only what "
                f"follows it is scored), got {hours:g}",
            )
        if model_ref is not None and not model_ref.startswith(("models:/", "runs:/")):
            inputs.model_dir(Path(model_ref))
        if out is not None:
            inputs.output_path(out, "--out", mkdir)
    except PrecoveryError as exc:
        raise fail(exc) from exc
    setup_logging(verbose)
    from pipelines.offline.replay import ReplayConfig, replay
    from pipelines.training.models import BASELINE_DIR, load_any

    try:
        model = load_any(model_ref or BASELINE_DIR)
        cfg = ReplayConfig(hours=hours, seed=seed, warmup_h=EVALUATE_WARMUP_H)
        with progress("hours") as bar:
            task = bar.add_task("replaying", total=hours)
            report = replay(model, cfg, progress=lambda f: bar.update(task, completed=f * hours))
        if out:
            out.write_text(json.dumps(report, indent=2))
    except (PrecoveryError, OSError) as exc:
        raise fail(exc) from exc
    for name in ("failover", "prepare_or_failover"):
        r = report[name]
        lead = r["median_lead_time_s"]
        console.print(
            f"{name}: {r['caught']}/{r['incidents']} incidents foreseen with ≥ "
            f"{r['min_warning_s']:.0f} s warning ({r['caught_any_warning']} with any), "
            f"median lead time {'—' if lead is None else f'{lead:.0f} s'}, "
            f"{r['false_alarms']} false alarms "
            f"({r['false_alarms_per_entity_day']:.3f} per entity-day)"
        )
    console.print(
        f"{report['events']:,} events, {report['entities']} hosts, "
        f"{report['recommendations']} recommendations, model {report['model_version']}"
    )


def evaluate_history_cli(
    model: str,
    telemetry: Path,
    incidents: Path,
    json_out: Path | None,
    from_ts: str | None,
    min_lead: str,
    champion: bool,
) -> None:
    """``precovery evaluate --telemetry``: the table for a model on any history."""
    try:
        inputs.input_file(telemetry, "--telemetry")
        inputs.csv_file(incidents, "--incidents")
        min_lead_s = inputs.duration_s(min_lead, "--min-lead")
        from pipelines.training.models import is_model_uri

        if not is_model_uri(model):
            inputs.model_dir(Path(model))
        if json_out is not None:
            inputs.output_path(json_out, "--json")
    except PrecoveryError as exc:
        raise fail(exc) from exc
    from pipelines.training.champion import evaluate_history
    from pipelines.training.evaluation import format_table, public
    from pipelines.training.models import load_any
    from predictor.events import parse_ts

    try:
        models = {"model": load_any(model)}
        if champion:
            from pipelines.settings import get_settings
            from pipelines.training.tracking import CHAMPION

            s = get_settings().mlflow
            models["champion"] = load_any(f"models:/{s.model_name}@{CHAMPION}")
        with progress() as bar:
            task = bar.add_task("features", total=None)
            rows, window = evaluate_history(
                models,
                telemetry,
                incidents,
                parse_ts(from_ts) if from_ts else None,
                min_lead_s,
                progress=lambda n: bar.advance(task, n),
            )
        if json_out is not None:
            json_out.write_text(json.dumps(public(rows), indent=2))
    except (PrecoveryError, OSError) as exc:
        raise fail(exc) from exc
    console.print(
        f"window {window['from']} .. {window['to']}: {window['incidents']} incidents, "
        f"{window['rows']:,} rows, horizon {window['horizon_s']:g} s, min lead "
        f"{window['min_lead_s']:g} s"
    )
    for line in format_table(rows):
        console.print(line, highlight=False)
