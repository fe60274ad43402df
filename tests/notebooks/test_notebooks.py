"""The exploration notebooks run end to end, and the JumpStarter benchmark is sound.

The notebook is executed with nbclient in a ``python3`` kernel (ipykernel installed in
the project's venv), its parameters cell replaced to score three services only. The data
is the slice of JumpStarter that the repository carries (tests/data/jumpstarter, MIT);
a missing folder fails, it never skips.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbclient
import nbformat
import numpy as np
import pytest

from benchmarks.bench_detectors import (
    COLUMNS,
    default_data_dir,
    evaluate_jumpstarter,
    load_service,
    summarise,
)

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "detectors_jumpstarter.ipynb"
SERVICES = [0, 1, 2]


@pytest.fixture(scope="module")
def data_dir() -> Path:
    path = default_data_dir()
    if not (path / "service0.test.parquet").is_file():
        pytest.fail(
            f"JumpStarter dataset2 missing at {path}: the repository carries services 0-2 in "
            "tests/data/jumpstarter (or set PRECOVERY_JUMPSTARTER_DIR)"
        )
    return path


def _parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    return tagged[0]


def test_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_jumpstarter_notebook_runs(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    _parameters_cell(nb).source = f'SERVICES = {SERVICES!r}\nDETECTORS = ("ewmaz", "hst")\n'
    # Both reach the kernel through its inherited environment.
    out = tmp_path / "summary.json"
    monkeypatch.setenv("PRECOVERY_NOTEBOOK_SUMMARY", str(out))
    monkeypatch.setenv("PRECOVERY_JUMPSTARTER_DIR", str(data_dir))
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))

    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in errors if o.output_type == "error"]
    assert Path(nb.cells[-1].outputs[0].text.strip()).resolve() == Path(sys.executable).resolve()

    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["services"] == SERVICES
    summary = {row["detector"]: row for row in payload["summary"]}
    assert set(summary) == {"ewmaz", "hst", "static_z", "random"}
    assert summary["ewmaz"]["pr_auc"] > summary["random"]["pr_auc"]


def test_evaluate_one_service(data_dir: Path) -> None:
    df = evaluate_jumpstarter(data_dir, services=[0])
    assert list(df.columns) == list(COLUMNS)
    assert list(df["detector"]) == ["ewmaz", "hst", "static_z", "random"]
    _, test, label = load_service(data_dir, 0)
    assert (df["rows"] == len(test)).all()
    assert (df["positives"] == int(label.sum())).all()
    scores = df[["roc_auc", "pr_auc", "best_f1", "segment_recall", "alert_rate"]].to_numpy()
    assert np.isfinite(scores).all()
    assert ((scores >= 0) & (scores <= 1)).all()

    base_rate = label.mean()
    rnd = df.set_index("detector").loc["random"]
    assert abs(rnd["pr_auc"] - base_rate) < 0.02
    assert abs(rnd["roc_auc"] - 0.5) < 0.05

    summary = summarise(df)
    assert list(summary.index) == ["ewmaz", "hst", "static_z", "random"]
    assert (summary["services"] == 1).all()


def test_missing_data_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset2"):
        evaluate_jumpstarter(tmp_path / "nope", services=[0])
