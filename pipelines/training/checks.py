"""The checks ``precovery train`` runs before the long pass: the incidents CSV, and the
incidents against the telemetry's entities and time range.

Each fault is a :class:`~predictor.errors.ValidationError` naming the file, the column
or row and the value. Part of :mod:`pipelines.training.train`, which re-exports every name.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.files.frames import check_delimiter, detect_layout, iter_frames, read_head
from predictor.contracts import INCIDENT_COLUMNS
from predictor.errors import ValidationError
from predictor.events import ms_to_iso
from predictor.labels import Incident

#: Columns an incidents CSV must have; the contract's others are optional here.
INCIDENT_REQUIRED = ("system", "component", "started_at")


def read_incidents(path: Path, show: int = 3) -> list[Incident]:
    """Incidents from a CSV with the contract's columns.

    Raises ValidationError naming the missing columns, or the first rows whose times do
    not parse (rows counted from 1 after the header).
    """
    check_delimiter(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in INCIDENT_REQUIRED if c not in columns]
        if missing:
            raise ValidationError(
                "missing_field",
                f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(has: {', '.join(columns) or 'no header'}); expected at least "
                f"{', '.join(INCIDENT_REQUIRED)} of {', '.join(INCIDENT_COLUMNS)}",
            )
        incidents: list[Incident] = []
        bad: list[str] = []
        for i, row in enumerate(reader, start=1):
            try:
                incidents.append(Incident.from_record(row))
            except (ValidationError, ValueError, TypeError) as exc:
                field_name = next(
                    (c for c in ("started_at", "resolved_at") if c in str(exc)), "started_at"
                )
                bad.append(f"row {i} column {field_name} {row.get(field_name)!r}")
    if bad:
        raise ValidationError(
            "bad_timestamp",
            f"{path}: {len(bad)} row{'s' if len(bad) > 1 else ''} with a time that does not "
            f"parse: {'; '.join(bad[:show])}{' …' if len(bad) > show else ''}; expected RFC 3339 "
            "times like 2026-01-05T14:00:00Z",
        )
    return incidents


def check_train_inputs(
    telemetry: Path, incidents: Path, metrics: tuple[str, ...] | None = None
) -> tuple[int, int]:
    """The checks ``precovery train`` runs before any work (ValidationError on a fault);
    returns the telemetry's time range ``(first_ms, last_ms)``."""
    head = read_head(telemetry, n=10_000)
    if head.empty:
        raise ValidationError("empty", f"{telemetry}: a header but no rows; expected telemetry")
    layout = detect_layout(head, metrics, source=telemetry)
    return check_incidents_against(telemetry, layout, read_incidents(incidents), incidents)


def scan_entities(
    telemetry: Path, layout: Any
) -> tuple[set[tuple[str, str]], set[tuple[str, str, str]], int, int]:
    """``(components, hosts, first_ms, last_ms)`` of a telemetry file, reading only its
    time and entity columns (a quick pass before the long one)."""
    from pipelines.files.frames import DEFAULT_ENTITY, to_epoch_ms

    comps: set[tuple[str, str]] = set()
    hosts: set[tuple[str, str, str]] = set()
    lo, hi = np.inf, -np.inf
    cols = [layout.time, *layout.entities]
    for df in iter_frames(telemetry, chunk_rows=500_000, columns=cols):
        ms = to_epoch_ms(df[layout.time])
        if np.isfinite(ms).any():
            lo, hi = min(lo, float(np.nanmin(ms))), max(hi, float(np.nanmax(ms)))
        parts = [
            df[c].astype(str) if c in layout.entities else pd.Series(DEFAULT_ENTITY, df.index)
            for c in ("system", "component", "host")
        ]
        uniq = pd.DataFrame({"s": parts[0], "c": parts[1], "h": parts[2]}).drop_duplicates()
        for s_, c_, h_ in uniq.itertuples(index=False):
            comps.add((s_, c_))
            hosts.add((s_, c_, h_))
    if not np.isfinite(lo):
        raise ValidationError("empty", f"{telemetry}: no row with a time that parses")
    return comps, hosts, int(lo), int(hi)


def check_incidents_against(
    telemetry: Path, layout: Any, incidents: list[Incident], incidents_path: Path, show: int = 3
) -> tuple[int, int]:
    """Incidents on entities the telemetry does not have, or outside its time range, are
    named (ValidationError): their labels would silently be missing. Returns the
    telemetry's time range ``(first_ms, last_ms)``."""
    comps, hosts, lo, hi = scan_entities(telemetry, layout)
    unknown = sorted(
        {
            f"{i.system}/{i.component}" + (f"/{i.host}" if i.host else "")
            for i in incidents
            if (i.system, i.component) not in comps
            or (i.host is not None and (i.system, i.component, i.host) not in hosts)
        }
    )
    if unknown:
        raise ValidationError(
            "unknown_entity",
            f"{incidents_path}: {len(unknown)} entit{'ies' if len(unknown) > 1 else 'y'} not in "
            f"{telemetry}: {', '.join(unknown[:show])}{' …' if len(unknown) > show else ''} "
            f"(system/component[/host]; the telemetry has {len(comps)} components)",
        )
    outside = [i for i in incidents if not lo <= i.started_ms <= hi]
    if outside:
        names = [f"{i.incident_id or '?'} at {ms_to_iso(i.started_ms)}" for i in outside]
        raise ValidationError(
            "outside_time_range",
            f"{incidents_path}: {len(outside)} incident{'s' if len(outside) > 1 else ''} "
            f"outside the telemetry's time range {ms_to_iso(lo)} .. {ms_to_iso(hi)}: "
            f"{', '.join(names[:show])}{' …' if len(names) > show else ''}; trim the incident "
            "history to the telemetry's period",
        )
    return lo, hi
