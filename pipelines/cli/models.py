"""``precovery train``, ``promote`` and ``evaluate`` on a history: the model's life cycle.

Kept out of pipelines/cli/main.py (registered there); heavy imports (pandas, LightGBM, MLflow)
happen inside the commands. docs/retraining.md tells the whole story.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.cli import inputs
from pipelines.cli.console import Mkdir, Verbose, console, fail, progress, setup_logging
from predictor.errors import PrecoveryError, ValidationError

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def duration_s(text: str, option: str) -> float:
    """Seconds from ``30m``, ``2h``, ``90s`` or a plain number of seconds.

    >>> duration_s("30m", "--horizon"), duration_s("1800", "--horizon"), duration_s("2h", "-")
    (1800.0, 1800.0, 7200.0)
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", text.lower())
    if not m or m.group(2) not in _UNITS or float(m.group(1)) <= 0:
        raise ValidationError(
            "bad_option",
            f"{option} {text!r}: expected a positive duration like 30m, 2h, 90s or 1800",
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


def _passive_openmp() -> None:
    # Before LightGBM loads OpenMP: idle threads sleep instead of spinning, which matters
    # on a machine shared with the stream or other jobs.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def train(
    telemetry: Annotated[
        Path, typer.Option(envvar="PRECOVERY_TELEMETRY", help="Telemetry history, CSV or Parquet")
    ],
    incidents: Annotated[
        Path, typer.Option(envvar="PRECOVERY_INCIDENTS", help="Incident history, CSV")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            envvar="PRECOVERY_MODEL_OUT", help="Also write the model directory here (optional)"
        ),
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
        typer.Option(
            envvar="PRECOVERY_MIN_LEAD",
            help="An incident counts as caught only with this much warning (2m, 300s, …)",
        ),
    ] = "2m",
    metrics: Annotated[
        str | None,
        typer.Option(
            envvar="PRECOVERY_METRICS",
            help="Comma-separated metric columns; default: every numeric one (the model "
            "declares them)",
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
        horizon_s = duration_s(horizon, "--horizon")
        min_lead_s = duration_s(min_lead, "--min-lead")
        inputs.at_least(stride, 1, "--stride")
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

    cfg = TrainConfig(horizon_s=horizon_s, min_warning_s=min_lead_s, stride=stride)
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


def promote(
    telemetry: Annotated[
        Path,
        typer.Option(envvar="PRECOVERY_TELEMETRY", help="History both models are judged on"),
    ],
    incidents: Annotated[
        Path, typer.Option(envvar="PRECOVERY_INCIDENTS", help="Incident history, CSV")
    ],
    version: Annotated[
        str | None,
        typer.Option(help="Registered version to promote; default: the latest"),
    ] = None,
    from_ts: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Evaluation window start (RFC 3339); default: the candidate's test window",
        ),
    ] = None,
    min_lead: Annotated[
        str, typer.Option(envvar="PRECOVERY_MIN_LEAD", help="Minimum warning to count")
    ] = "2m",
    force: Annotated[
        bool, typer.Option(help="Promote even if it does not beat the champion (recorded)")
    ] = False,
    actor: Annotated[
        str, typer.Option(envvar="USER", help="Who promotes (recorded in the audit)")
    ] = "cli",
    verbose: Verbose = False,
) -> None:
    """Set the champion alias on a registered version if it beats the champion.

    Both are judged on the same window of the same history (caught incidents, then
    PR-AUC); --force promotes anyway and says so in the record.
    """
    try:
        inputs.input_file(telemetry, "--telemetry")
        inputs.csv_file(incidents, "--incidents")
        min_lead_s = duration_s(min_lead, "--min-lead")
    except PrecoveryError as exc:
        raise fail(exc) from exc
    setup_logging(verbose)
    from pipelines.settings import get_settings
    from pipelines.training.champion import promote as do_promote
    from pipelines.training.evaluation import format_table
    from pipelines.training.tracking import Tracker

    settings = get_settings()
    audit = _audit_log(settings)
    try:
        tracker = Tracker(settings.mlflow)
        with progress() as bar:
            task = bar.add_task("features", total=None)
            record = do_promote(
                tracker,
                version,
                telemetry,
                incidents,
                force=force,
                actor=actor,
                min_lead_s=min_lead_s,
                from_ts=from_ts,
                audit=audit,
                progress=lambda n: bar.advance(task, n),
            )
    except (PrecoveryError, OSError) as exc:
        raise fail(exc) from exc
    finally:
        if audit is not None:
            audit.close()
    if "window" in record:
        w = record["window"]
        console.print(f"window {w['from']} .. {w['to']}: {w['incidents']} incidents")
        for line in format_table(record["evaluation"]):
            console.print(line, highlight=False)
    if record["promoted"]:
        console.print(
            f"{tracker.name} version {record['candidate']} is now @champion ({record['reason']})"
        )
    else:
        console.print(f"not promoted: version {record['candidate']} {record['reason']}")
        raise typer.Exit(1)


def _audit_log(settings: Any) -> Any:
    try:
        from pipelines.records.audit import AuditLog, AuditStore, audit_url
    except ImportError:  # pragma: no cover - the audit trail ships with the service
        return None
    try:
        return AuditLog(AuditStore(audit_url(settings.state_dir, settings.audit_url)))
    except (PrecoveryError, OSError) as exc:
        console.print(f"[yellow]no audit trail:[/] {exc}")
        return None


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
        min_lead_s = duration_s(min_lead, "--min-lead")
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


def champion_source(settings: Any) -> tuple[Any, Any, str] | None:
    """``(tracker, champion model, its version)`` when the demo or stream follows the
    registry's champion (``PRECOVERY_MLFLOW__CHAMPION=true``); None otherwise."""
    if not settings.mlflow.champion:
        return None
    from pipelines.training.champion import load_champion
    from pipelines.training.tracking import Tracker

    tracker = Tracker(settings.mlflow)
    model, version = load_champion(tracker)
    console.print(f"serving {tracker.name} @champion: version {version} ({model.version})")
    return tracker, model, version


def feedback_export(
    out: Annotated[
        Path,
        typer.Option(envvar="PRECOVERY_OUT", help="Labels CSV to write (for train --feedback)"),
    ],
    db: Annotated[
        Path | None,
        typer.Option(
            envvar="PRECOVERY_API__FEEDBACK_DB",
            help="Feedback store (SQLite); default: <state_dir>/feedback.sqlite",
        ),
    ] = None,
    mkdir: Mkdir = False,
) -> None:
    """Export SREs' verdicts (false_alarm, confirmed, missed) as training labels.

    The latest verdict per recommendation; `precovery train --feedback FILE` folds them
    into the next training run (docs/retraining.md says how they weigh).
    """
    from pipelines.settings import get_settings

    settings = get_settings()
    path = db or settings.api.feedback_db or settings.state_dir / "feedback.sqlite"
    try:
        if not path.is_file():
            raise ValidationError("not_found", f"--db {path} does not exist: no feedback yet")
        inputs.output_path(out, "--out", mkdir)
    except PrecoveryError as exc:
        raise fail(exc) from exc
    from pipelines.records.feedback import FeedbackStore

    store = FeedbackStore(path)
    try:
        n = store.export_labels(out)
    except OSError as exc:
        raise fail(exc) from exc
    finally:
        store.close()
    console.print(f"{n} verdicts from {path} written to {out}")
