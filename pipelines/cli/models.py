"""``precovery promote`` and ``precovery feedback-export``: the model's life cycle after
training, and the champion the demo and the stream follow.

Registered on the one ``precovery`` app by :mod:`pipelines.cli.main` (training is
:mod:`pipelines.cli.train`, judging a model :mod:`pipelines.cli.evaluate`); heavy imports
(pandas, LightGBM, MLflow) happen inside the commands. docs/retraining.md tells the whole
story.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.cli import inputs, options
from pipelines.cli.console import console, fail, progress, setup_logging
from pipelines.cli.options import Mkdir, Verbose
from predictor.errors import PrecoveryError, ValidationError


def promote(
    telemetry: Annotated[Path, options.telemetry("History both models are judged on")],
    incidents: Annotated[Path, options.incidents()],
    version: Annotated[
        str | None,
        typer.Option(help="Registered version to promote; default: the latest"),
    ] = None,
    from_ts: Annotated[
        str | None,
        options.from_ts("Evaluation window start (RFC 3339); default: the candidate's test window"),
    ] = None,
    min_lead: Annotated[str, options.min_lead("Minimum warning to count")] = "2m",
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
        min_lead_s = inputs.duration_s(min_lead, "--min-lead")
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
    out: Annotated[Path, options.out("Labels CSV to write (for train --feedback)")],
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
