"""The papermill chain runner: parameter checking (papermill itself only warns) and a real run."""

from __future__ import annotations

import json
import os

import nbformat
import pytest

from rso_lib import run
from rso_lib.paths import repo_root


def _nb(path, params_src, body_src):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params_src)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test"), p, nbformat.v4.new_code_cell(body_src)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def tmp_repo(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params").mkdir()
    monkeypatch.setenv("RSO_ROOT", str(tmp_path))
    return tmp_path


def test_declared_parameters_reads_literals(tmp_path):
    nb = _nb(
        tmp_path / "01_a.ipynb", 'PROFILE = "smoke"  # profile\nN = 3  # count\nLLM = {"backend": "embedded"}\n', ""
    )
    assert run.declared_parameters(nb) == {"PROFILE": "smoke", "N": 3, "LLM": {"backend": "embedded"}}


def test_parameters_cell_rejects_derived_values(tmp_path):
    nb = _nb(tmp_path / "01_a.ipynb", "N = 3\nM = N * 2\n", "")
    with pytest.raises(run.ParamsError, match=r"01_a.ipynb: parameters cell line 2: M is not a literal"):
        run.declared_parameters(nb)


def test_undeclared_names_fail_naming_notebook_and_key(tmp_repo):
    _nb(tmp_repo / "notebooks" / "01_a.ipynb", 'PROFILE = "smoke"\nN = 3\n', "")
    _nb(tmp_repo / "notebooks" / "02_b.ipynb", 'PROFILE = "smoke"\nM = 1\n', "")
    params = {"common": {"PROFILE": "x", "TYPO_COMMON": 1}, "01_a": {"N": 4, "M": 2}, "09_missing": {"X": 1}}
    with pytest.raises(run.ParamsError) as exc:
        run.plan(params, run.notebooks())
    msg = str(exc.value)
    assert "01_a: 'M' is not declared" in msg
    assert "common key 'TYPO_COMMON' is declared by no notebook" in msg
    assert "section '09_missing' names no notebook" in msg


def test_plan_passes_common_only_where_declared(tmp_repo):
    _nb(tmp_repo / "notebooks" / "01_a.ipynb", 'PROFILE = "smoke"\nN = 3\n', "")
    _nb(tmp_repo / "notebooks" / "02_b.ipynb", "M = 1\n", "")
    todo = run.plan({"common": {"PROFILE": "p", "N": 5}, "02_b": {"M": 2}}, run.notebooks())
    assert {nb.stem: p for nb, p in todo.items()} == {"01_a": {"PROFILE": "p", "N": 5}, "02_b": {"M": 2}}


def test_later_params_files_override_and_merge(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("common:\n  SEED: 0\n  LLM: {default: {backend: embedded}, actor: {model: x}}\n")
    b.write_text("common:\n  LLM: {default: {backend: vllm}}\n")
    merged = run.load_params([a, b])
    assert merged["common"] == {"SEED": 0, "LLM": {"default": {"backend": "vllm"}, "actor": {"model": "x"}}}


def test_bad_yaml_names_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("common: [1, 2\n")
    with pytest.raises(run.ParamsError, match="bad.yaml: not valid YAML"):
        run.load_params([f])


@pytest.mark.slow
def test_chain_executes_in_order_with_parameters(tmp_repo):
    """A real papermill run: executed copies land in runs/<profile>/notebooks with the injected values."""
    out = tmp_repo / "out.txt"
    _nb(
        tmp_repo / "notebooks" / "01_a.ipynb", 'PROFILE = "smoke"\nN = 3\n', f"open({str(out)!r}, 'a').write(f'a{{N}}')"
    )
    _nb(tmp_repo / "notebooks" / "02_b.ipynb", 'PROFILE = "smoke"\n', f"open({str(out)!r}, 'a').write('b')")
    (tmp_repo / "params" / "base.yaml").write_text("common:\n  PROFILE: t\n")
    (tmp_repo / "params" / "t.yaml").write_text("01_a:\n  N: 7\n")
    log = run.run_chain("t")
    assert out.read_text() == "a7b"
    assert [n["notebook"] for n in log["notebooks"]] == ["01_a.ipynb", "02_b.ipynb"]
    executed = nbformat.read(tmp_repo / "runs" / "t" / "notebooks" / "01_a.ipynb", as_version=4)
    assert any("N = 7" in c.source for c in executed.cells)  # papermill's injected-parameters cell
    assert json.loads((tmp_repo / "runs" / "t" / "chain.json").read_text())["profile"] == "t"
    # the chain ends by writing its results page, with the wall time of each notebook it ran
    page = (tmp_repo / "docs" / "results" / "t.md").read_text()
    assert "over 2 notebooks" in page and "01_a.ipynb" in page and "02_b.ipynb" in page


def test_a_partial_rerun_keeps_the_other_notebooks_times(tmp_path):
    log_path = tmp_path / "chain.json"
    log_path.write_text(
        json.dumps(
            {"notebooks": [{"notebook": "01_a.ipynb", "seconds": 10.0}, {"notebook": "02_b.ipynb", "seconds": 5.0}]}
        )
    )
    merged = run.merge_chain_log(log_path, {"profile": "t", "notebooks": [{"notebook": "02_b.ipynb", "seconds": 7.0}]})
    by_name = {n["notebook"]: n for n in merged["notebooks"]}
    assert by_name["01_a.ipynb"]["earlier_run"] and by_name["01_a.ipynb"]["seconds"] == 10.0
    assert by_name["02_b.ipynb"]["seconds"] == 7.0 and "earlier_run" not in by_name["02_b.ipynb"]
    assert merged["total_seconds"] == 17.0


def test_strip_outputs(tmp_path):
    nb_path = _nb(tmp_path / "01_a.ipynb", "N = 1\n", "print(1)")
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells[2].execution_count = 1
    nbformat.write(nb, nb_path)
    assert run.strip_outputs(nb_path) is True
    assert all(not c.get("outputs") for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == "code")
    assert run.strip_outputs(nb_path) is False


# --- the repository itself ---------------------------------------------------------------------

REPO_NBS = run.notebooks(repo_root())


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_repo_params_profiles_match_notebooks(profile, monkeypatch):
    monkeypatch.delenv("RSO_ROOT", raising=False)
    if not REPO_NBS:
        pytest.skip("no notebooks yet")
    params = run.load_params(run.profile_files(profile))
    run.plan(params, REPO_NBS)  # raises on any undeclared name


def test_vllm_cpu_override_matches_notebooks(monkeypatch):
    """params/vllm-cpu.yaml (the smoke chain on the in-process vLLM backend): every LLM role and
    07's backbone on backend vllm, under its own profile name."""
    monkeypatch.delenv("RSO_ROOT", raising=False)
    extra = [repo_root() / "params" / "vllm-cpu.yaml"]
    todo = run.plan(run.load_params(run.profile_files("smoke", extra)), REPO_NBS)
    llm_nbs = [nb for nb, p in todo.items() if "LLM" in p]
    assert len(llm_nbs) >= 5
    for nb in llm_nbs:  # no role left on another backend by a per-role override
        assert {spec.get("backend") for spec in todo[nb]["LLM"].values() if isinstance(spec, dict)} == {"vllm"}
    assert {p["PROFILE"] for p in todo.values() if "PROFILE" in p} == {"smoke-vllm"}
    (scale,) = (p for nb, p in todo.items() if nb.stem == "07_scale")
    assert all(b["llm"]["backend"] == "vllm" for b in scale["BACKBONES"])


@pytest.mark.parametrize("nb", REPO_NBS, ids=lambda p: p.name)
def test_repo_notebooks_committed_without_outputs(nb):
    cells = nbformat.read(nb, as_version=4).cells
    assert not [i for i, c in enumerate(cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    run.declared_parameters(nb)  # exactly one literal-only parameters cell


def test_smoke_profile_equals_notebook_defaults(monkeypatch):
    """nbval runs the notebooks with their parameters-cell defaults, `make reproduce` with
    params/smoke.yaml: the two must be the same run."""
    monkeypatch.delenv("RSO_ROOT", raising=False)
    if not REPO_NBS:
        pytest.skip("no notebooks yet")
    todo = run.plan(run.load_params(run.profile_files("smoke")), REPO_NBS)
    diffs = [
        f"{nb.stem}.{k}: yaml {v!r} != notebook {run.declared_parameters(nb)[k]!r}"
        for nb, params in todo.items()
        for k, v in params.items()
        if run.declared_parameters(nb)[k] != v
    ]
    assert not diffs, "\n".join(diffs)


def test_papermill_parses_every_declared_parameter():
    """papermill's own inspector (what it uses to type and override parameters) must see every
    name a parameters cell declares: an "=" or an odd quote in a comment makes it skip the line."""
    import nbformat
    from papermill.translators import PythonTranslator

    for nb_path in run.notebooks():
        cell = next(c for c in nbformat.read(nb_path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
        seen = {p.name for p in PythonTranslator.inspect(cell)}
        assert set(run.declared_parameters(nb_path)) <= seen, nb_path.name


@pytest.mark.parametrize(
    "override,needle",
    [
        ({"N_DIALOGUES": "abc"}, "N_DIALOGUES = 'abc': expected an integer"),
        ({"MAX_TURNS": -3}, "MAX_TURNS = -3: outside [1, inf]"),
        ({"SIMULATOR": "human"}, "SIMULATOR = 'human': one of 'agenda', 'llm'"),
        ({"STOP_THRESHOLD": 1.5}, "STOP_THRESHOLD = 1.5: outside [0, 1]"),
        ({"PROFILE": "/tmp/x"}, "PROFILE = '/tmp/x': a plain name"),
        ({"SAMPLE_STRATEGY": 1}, "SAMPLE_STRATEGY = 1: expected a bool"),
    ],
)
def test_bad_parameter_values_fail_before_any_work(override, needle):
    """Types come from the notebook defaults, ranges and choices from run.RANGES / CHOICES; the
    error names the parameter, the value and what is allowed."""
    params = run.load_params(run.profile_files("smoke", []))
    params["04_eval_tables"] = {**params.get("04_eval_tables", {}), **override}
    with pytest.raises(run.ParamsError) as e:
        run.plan(params, run.notebooks())
    assert needle in str(e.value)


def test_unknown_notebook_in_only_fails(capsys):
    assert run.main(["--profile", "smoke", "--only", "01", "99"]) == 2
    assert "no notebook named '99'" in capsys.readouterr().err


def test_a_second_chain_of_the_same_profile_is_refused(tmp_repo):
    import subprocess
    import sys

    with run.profile_lock("p") as lock:
        assert lock.read_text().split()[0] == str(os.getpid())
        with (
            pytest.raises(run.ParamsError, match=rf"another chain of profile 'p' is running \(pid {os.getpid()}"),
            run.profile_lock("p"),
        ):
            pass
    assert not lock.exists()
    # a lock left by a process that is gone is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(dead.stdout.strip() + " then\n")
    with run.profile_lock("p"):
        assert lock.read_text().split()[0] == str(os.getpid())


@pytest.mark.slow
def test_a_failing_notebook_is_one_clear_line(tmp_repo, capsys):
    _nb(tmp_repo / "notebooks" / "01_a.ipynb", 'PROFILE = "smoke"\nPATH = "nowhere.json"\n', "open(PATH).read()")
    (tmp_repo / "params" / "base.yaml").write_text("common: {}\n")
    (tmp_repo / "params" / "smoke.yaml").write_text("common: {PROFILE: smoke}\n")
    assert run.main(["--profile", "smoke"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    import re

    assert re.search(r"01_a.ipynb, cell \d+: FileNotFoundError", err) and "nowhere.json" in err
    assert "full trace in" in err and "runs/smoke/notebooks/01_a.ipynb" in err
