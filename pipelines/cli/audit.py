"""``precovery audit export``: the audit trail to a file (docs/audit.md).

Registered in pipelines/cli/main.py; the heavy imports (SQLAlchemy) wait inside the command.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.cli import inputs
from pipelines.cli.console import console, fail, progress
from pipelines.cli.options import STATE_DIR, Mkdir, StateDir
from predictor.errors import PrecoveryError, ValidationError

audit_app = typer.Typer(
    name="audit",
    help="The audit trail: recommendations, deliveries, approvals, model changes.",
    no_args_is_help=True,
    add_completion=False,
)

FORMATS = ("jsonl", "csv")
KINDS = ("recommendation", "delivery", "approval", "model_change")  # pipelines.records.audit.KINDS
COLUMNS = ("id", "at", "kind", "actor", "system", "subject", "payload")


@audit_app.command("export")
def export(
    out: Annotated[
        Path,
        typer.Option(
            envvar="PRECOVERY_AUDIT_OUT", help="Where to write (JSON lines, or CSV by --format)"
        ),
    ],
    since: Annotated[
        str | None,
        typer.Option(envvar="PRECOVERY_AUDIT_SINCE", help="Recorded at or after, RFC 3339"),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(envvar="PRECOVERY_AUDIT_UNTIL", help="Recorded before, RFC 3339"),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            envvar="PRECOVERY_AUDIT_KIND",
            help="recommendation, delivery, approval or model_change (default: all)",
        ),
    ] = None,
    system: Annotated[
        str | None, typer.Option(envvar="PRECOVERY_AUDIT_SYSTEM", help="One system only")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            envvar="PRECOVERY_AUDIT_FORMAT",
            help="jsonl or csv (default: csv for a .csv file, else jsonl)",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="PRECOVERY_AUDIT_URL",
            help="The audit store, any SQLAlchemy URL (default: <state-dir>/audit.sqlite)",
        ),
    ] = None,
    state_dir: StateDir = STATE_DIR,
    mkdir: Mkdir = False,
) -> None:
    """Write audit records, oldest first, to --out: one JSON object per line (id, at,
    kind, actor, system, subject, payload), or CSV with the payload as a JSON cell."""
    try:
        chosen = fmt or ("csv" if out.name.lower().endswith(".csv") else "jsonl")
        inputs.one_of(chosen, FORMATS, "--format")
        if kind is not None:
            inputs.one_of(kind, KINDS, "--kind")
        inputs.output_path(out, "--out", mkdir)
        import orjson

        from pipelines.records.audit import AuditStore, audit_url, parse_time

        since_ms = None if since is None else parse_time(since, "--since")
        until_ms = None if until is None else parse_time(until, "--until")
        if url is None and not (state_dir / "audit.sqlite").is_file():
            raise ValidationError(
                "no_audit_trail",
                f"no audit trail at {state_dir / 'audit.sqlite'} (--state-dir; the demo writes "
                "one there) and no --url / PRECOVERY_AUDIT_URL",
            )
        store = AuditStore(audit_url(state_dir, url))
        filters: dict[str, Any] = {
            "kind": kind,
            "system": system,
            "since_ms": since_ms,
            "until_ms": until_ms,
        }
        total = store.count(**filters)
        with progress("records") as bar, open(out, "w", newline="", encoding="utf-8") as fh:
            task = bar.add_task(f"exporting to {out}", total=total)
            writer = csv.writer(fh) if chosen == "csv" else None
            if writer is not None:
                writer.writerow(COLUMNS)
            n = 0
            for row in store.iter(**filters):
                if writer is not None:
                    payload = orjson.dumps(row["payload"]).decode()
                    writer.writerow([*(row[c] for c in COLUMNS[:-1]), payload])
                else:
                    fh.write(orjson.dumps(row).decode() + "\n")
                n += 1
                if n % 1000 == 0:
                    bar.update(task, completed=n)
            bar.update(task, completed=n)
        store.close()
    except (PrecoveryError, OSError) as exc:
        raise fail(exc) from exc
    console.print(f"wrote {n:,} audit records to {out} ({chosen})")
