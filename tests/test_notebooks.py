"""Every notebook in notebooks/ runs top to bottom offline (nbclient), and is saved with its outputs and figures."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient


ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def figures(notebook) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def test_there_are_notebooks():
    assert [path.name for path in NOTEBOOKS] == ["finetuning.ipynb", "pretraining.ipynb", "quickstart.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_and_is_saved_with_its_figures(path, monkeypatch):
    saved = nbformat.read(path, as_version=4)
    assert figures(saved) >= 3, "saved without its figures"
    assert all(cell.execution_count is not None for cell in saved.cells if cell.cell_type == "code")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    errors = [
        o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"
    ]
    assert errors == []
    assert figures(notebook) == figures(saved)
