"""``precovery audit export``: JSON lines and CSV, filters, and clear errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli.main import app
from pipelines.records.audit import AuditStore, Record, parse_time, sqlite_url

runner = CliRunner()
T0 = parse_time("2026-01-05T12:00:00Z", "t0")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    store = AuditStore(sqlite_url(tmp_path / "audit.sqlite"))
    store.append(
        Record(T0 + i * 60_000, kind, "stream", system, f"r{i}", {"i": i, "note": 'a,b\n"c"'})
        for i, (kind, system) in enumerate(
            [
                ("recommendation", "eq-oms"),
                ("delivery", "eq-oms"),
                ("recommendation", "fx-pricing"),
                ("approval", "eq-oms"),
                ("model_change", None),
            ]
        )
    )
    store.close()
    return tmp_path


def export(state: Path, *args: str) -> tuple[int, str]:
    r = runner.invoke(app, ["audit", "export", "--state-dir", str(state), *args])
    return r.exit_code, r.output


def test_export_json_lines_with_filters(state: Path) -> None:
    out = state / "recs.jsonl"
    code, text = export(state, "--out", str(out), "--kind", "recommendation")
    assert code == 0, text
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["subject"], r["system"], r["payload"]["i"]) for r in rows] == [
        ("r0", "eq-oms", 0),
        ("r2", "fx-pricing", 2),
    ]
    assert set(rows[0]) == {"id", "at", "kind", "actor", "system", "subject", "payload"}
    assert rows[0]["at"] == "2026-01-05T12:00:00.000Z"
    assert "wrote 2 audit records" in text

    window = state / "window.jsonl"
    code, _ = export(
        state,
        "--out",
        str(window),
        "--since",
        "2026-01-05T12:01:00Z",
        "--until",
        "2026-01-05T12:03:00Z",
    )
    assert code == 0
    assert [json.loads(x)["subject"] for x in window.read_text().splitlines()] == ["r1", "r2"]


def test_export_csv_round_trips_the_payload(state: Path) -> None:
    out = state / "all.csv"
    code, text = export(state, "--out", str(out), "--system", "eq-oms")
    assert code == 0, text
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["kind"] for r in rows] == ["recommendation", "delivery", "approval"]
    assert json.loads(rows[0]["payload"]) == {"i": 0, "note": 'a,b\n"c"'}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--kind", "gossip"], "--kind"),
        (["--since", "last week"], "--since"),
        (["--format", "xml"], "--format"),
    ],
)
def test_bad_options_are_usage_errors(state: Path, args: list[str], says: str) -> None:
    code, text = export(state, "--out", str(state / "x.jsonl"), *args)
    assert code == 2 and says in text


def test_missing_trail_and_missing_folder(tmp_path: Path, state: Path) -> None:
    code, text = export(tmp_path / "empty", "--out", str(tmp_path / "x.jsonl"))
    assert code == 2 and "no audit trail" in text
    code, text = export(state, "--out", str(state / "nope" / "x.jsonl"))
    assert code == 2 and "--mkdir" in text
