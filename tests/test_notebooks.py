"""Every notebook in ``notebooks/`` is stored without outputs and runs top to bottom on the CPU in
under five minutes, in a fresh kernel that imports this repository's pescore_nb.

The zoo model the notebooks load is trained (or found in the cache) once per session, before any
notebook's clock starts; a first training takes a minute or two on 2 cores.
"""
import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
NAMES = [path.stem for path in NOTEBOOKS]
LIMIT_SECONDS = 300
EXPECTED = ["01_quickstart", "02_explorer", "03_workshop", "04_your_model"]
CHECK_IMPORT = ("import pescore_nb, pathlib\n"
                "assert pathlib.Path(pescore_nb.__file__).resolve().is_relative_to({repo!r}), pescore_nb.__file__")


@pytest.fixture(scope="session")
def trained_zoo():
    """Train (or load) the zoo model the notebooks use, once, outside their time limit."""
    from pescore_nb import zoo
    zoo.load("vgg", "shapes", progress=False)


def test_the_four_notebooks_are_there():
    assert NAMES == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, \
                f"{path.name} is stored with outputs; clear them (jupyter nbconvert --clear-output --inplace {path})"


def test_workshop_answers_are_collapsed_code_cells():
    notebook = nbformat.read(REPO / "notebooks" / "03_workshop.ipynb", as_version=4)
    answers = [cell for cell in notebook.cells if cell.metadata.get("jupyter", {}).get("source_hidden")]
    assert len(answers) >= 2
    assert all(cell.cell_type == "code" and cell.source.startswith("# Answer") for cell in answers)


@pytest.mark.slow
@pytest.mark.timeout(LIMIT_SECONDS + 120, func_only=True)  # the zoo fixture's training is not timed
@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_runs_top_to_bottom_in_under_five_minutes(path, tmp_path, monkeypatch, trained_zoo):
    """Runs in ``tmp_path`` (files the notebook writes, and its temporary folders, stay there)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(CHECK_IMPORT.format(repo=str(REPO))))
    start = time.monotonic()
    NotebookClient(notebook, timeout=LIMIT_SECONDS, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    elapsed = time.monotonic() - start
    print(f"{path.name}: {elapsed:.1f} s")
    assert elapsed < LIMIT_SECONDS, f"{path.name} took {elapsed:.0f} s (limit {LIMIT_SECONDS} s)"
    errors = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
              if output.output_type == "error"]
    assert not errors, errors
