"""The notebooks' set-up helper, and that every notebook uses it the same way."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import nbformat
import pandas as pd
import pytest
from repo_paths import REPO_ROOT

from rso_lib import notebook

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _setup_cell(nb) -> tuple[int, str]:
    """Index and source of the first code cell after the ``parameters`` cell."""
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    i = next(i for i in range(params + 1, len(nb.cells)) if nb.cells[i].cell_type == "code")
    return i, nb.cells[i].source


@pytest.fixture
def clean_env(monkeypatch):
    for k in notebook.ENV_DEFAULTS:
        monkeypatch.delenv(k, raising=False)
    for m in notebook.READ_AT_IMPORT:
        monkeypatch.delitem(sys.modules, m, raising=False)  # restored after the test
    with pd.option_context("display.width", 80, "display.max_columns", 20, "display.max_colwidth", 50):
        yield monkeypatch


def test_setup_sets_the_defaults_and_display(clean_env):
    clean_env.setenv("HF_HUB_OFFLINE", "0")  # a user who wants the hub keeps it
    new = notebook.setup(max_columns=40, max_colwidth=120)
    assert os.environ["HF_HUB_OFFLINE"] == "0"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert set(new) == set(notebook.ENV_DEFAULTS) - {"HF_HUB_OFFLINE"}
    assert pd.get_option("display.width") == notebook.DISPLAY_WIDTH
    assert (pd.get_option("display.max_columns"), pd.get_option("display.max_colwidth")) == (40, 120)


def test_setup_refuses_to_run_after_the_hub_client_was_imported(clean_env):
    clean_env.setitem(sys.modules, "huggingface_hub", type(sys)("huggingface_hub"))
    with pytest.raises(RuntimeError, match="after huggingface_hub was imported.*HF_HUB_OFFLINE"):
        notebook.setup()


def test_setup_may_run_late_when_the_environment_is_already_set(clean_env):
    for k, v in notebook.ENV_DEFAULTS.items():
        clean_env.setenv(k, v)
    clean_env.setitem(sys.modules, "huggingface_hub", type(sys)("huggingface_hub"))
    assert notebook.setup() == {}  # e.g. the set-up cell run twice in one kernel


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_calls_setup_once_after_all_its_imports(path):
    nb = nbformat.read(path, as_version=4)
    idx, src = _setup_cell(nb)
    body = ast.parse(src).body
    kinds = [isinstance(n, (ast.Import, ast.ImportFrom)) for n in body]
    n_imports = kinds.index(False)
    assert not any(kinds[n_imports:]), f"{path.name}: an import after code in the set-up cell"
    first = body[n_imports]
    assert isinstance(first, ast.Expr) and ast.unparse(first.value.func) == "setup", (
        f"{path.name}: the set-up cell's first statement after its imports is not setup()"
    )
    calls = [c for c in nb.cells if c.cell_type == "code" and "setup(" in c.source]
    assert len(calls) == 1, f"{path.name}: setup() called in {len(calls)} cells"
    assert "os.environ" not in src, f"{path.name}: environment set by hand; setup() does it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_a_what_to_look_at_note_before_its_parameters(path):
    nb = nbformat.read(path, as_version=4)
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    notes = [c for c in nb.cells[:params] if c.cell_type == "markdown" and c.source.startswith("## What to look at")]
    assert len(notes) == 1, f"{path.name}: no 'What to look at' note above the parameters cell"


def test_set_up_cell_imports_load_no_library_that_reads_the_offline_switches():
    """setup() runs after the set-up cell's imports: they must not import the hub client first."""
    lines = []
    for path in NOTEBOOKS:
        body = ast.parse(_setup_cell(nbformat.read(path, as_version=4))[1]).body
        lines += [ast.unparse(n) for n in body if isinstance(n, (ast.Import, ast.ImportFrom))]
    code = "\n".join(
        [*lines, "import sys", f"print(sorted(m for m in {notebook.READ_AT_IMPORT!r} if m in sys.modules))"]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600)
    assert out.stdout.strip() == "[]", f"imported by the set-up cells: {out.stdout.strip()}"
