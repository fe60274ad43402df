"""The retraining notebook runs end to end on a small simulated history.

Executed with nbclient in the project's kernel, its parameters cell replaced by 6 hours of
a fleet with many failures, MLflow in a fresh SQLite store: the model is trained, logged,
registered as version 1 and, as the first champion, promoted.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbclient
import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "retraining.ipynb"


def test_committed_retraining_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_retraining_notebook_trains_registers_and_promotes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    tagged[0].source = (
        "HOURS = 6.0\nFAILURES_PER_DAY = 120.0\nSEED = 3\nHORIZON_S = 900.0\n"
        "MIN_LEAD_S = 120.0\nTELEMETRY = None\nINCIDENTS = None\n"
    )
    out = tmp_path / "summary.json"
    monkeypatch.setenv("PRECOVERY_NOTEBOOK_SUMMARY", str(out))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    summary = json.loads(out.read_text(encoding="utf-8"))
    assert summary["version"] == "1" and summary["champion_before"] is None
    assert summary["promoted"] is True and summary["reason"] == "first champion"
    rows = {r["name"]: r for r in summary["evaluation"]}
    assert set(rows) == {"model", "anomaly_score", "raw_threshold"}
    assert rows["model"]["incidents"] > 0 and rows["model"]["incidents_caught"] > 0
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts beside the SQLite store
