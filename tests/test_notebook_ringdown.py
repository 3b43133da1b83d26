"""The GW150914 walk-through notebook executes top to bottom (reduced: few live points)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "gw150914_ringdown.ipynb"


@pytest.mark.slow
def test_notebook_runs_to_the_bayes_factor(tmp_path, monkeypatch, project_data):
    monkeypatch.setenv("GWTOOLS_NOTEBOOK_NLIVE", "30")
    monkeypatch.setenv("GWTOOLS_NOTEBOOK_OUTPUT", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = "".join(
        out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert "ln B(220+221 vs 220) at the peak" in outputs
    assert "geocentre peak: 1126259462.408" in outputs
    assert sorted(p.suffix for p in tmp_path.iterdir() if p.suffix == ".png") == [".png"] * 4
    assert (tmp_path / "notebook_220+221_summary.md").is_file()
