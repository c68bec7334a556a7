"""Execute docs/tutorial.ipynb and save it with its outputs (the docs site shows them).

    python tools/run_notebook.py           # execute in place (about 30 s on 2 cores)
    python tools/run_notebook.py --check   # exit 1 if the code changed since the last run

The saved notebook records the sha256 of its code cells (``metadata.userchoice``), so the
tests can tell that the outputs shown on the site came from the code shown beside them;
``tests/test_docs.py`` also executes the notebook afresh and fails on any cell error.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Any

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"
TIMEOUT = 600  # seconds per cell


def sources_sha256(notebook: Any) -> str:
    """sha256 of the notebook's code cells, in order (what its outputs depend on)."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.encode() + b"\0")
    return digest.hexdigest()


def recorded_sha256(notebook: Any) -> str | None:
    return notebook.metadata.get("userchoice", {}).get("sources_sha256")


def execute(path: str | Path, workdir: str | Path) -> Any:
    """Run every cell (kernel ``python3``, working directory ``workdir``); a failing cell
    raises ``nbclient.exceptions.CellExecutionError`` with its traceback."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(str(path), as_version=4)
    NotebookClient(notebook, timeout=TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return notebook


def main(argv: list[str]) -> int:
    import nbformat

    if "--check" in argv:
        notebook = nbformat.read(str(NOTEBOOK), as_version=4)
        if recorded_sha256(notebook) != sources_sha256(notebook):
            print(f"{NOTEBOOK}: its code changed since its outputs were saved: run "
                  f"python tools/run_notebook.py")
            return 1
        return 0
    with tempfile.TemporaryDirectory() as workdir:  # nothing the notebook writes lands in docs/
        notebook = execute(NOTEBOOK, workdir)
    for cell in notebook.cells:  # run-specific noise: execution times
        cell.metadata.pop("execution", None)
    notebook.metadata["userchoice"] = {"sources_sha256": sources_sha256(notebook)}
    nbformat.write(notebook, str(NOTEBOOK))
    print(f"executed and saved {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
