"""The compression notebook executes top to bottom in its reduced form."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "compress_posteriors.ipynb"


def test_compression_notebook_runs(tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("GWTOOLS_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("GWTOOLS_NOTEBOOK_OUTPUT", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = "".join(
        out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert "h0 = " in outputs and "held-out" in outputs
    for name in ("GW150914.weights.npz", "GW150914.expr.json", "corner_weights.png",
                 "corner_expressions.png", "pp_weights.png"):
        assert (tmp_path / name).is_file(), name
