"""The generated results page: built from a results directory made here, so every expectation
comes from files this test wrote, and a field the files lack must be reported as missing."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from rso_lib import report  # noqa: E402
from rso_lib.results import machine, save_figure, write_json, write_table  # noqa: E402

ROLES = {
    "actor": {"backend": "embedded", "model": "Qwen2.5-0.5B", "fingerprint": "Qwen2.5-0.5B|bfloat16|ctx=8192|sys=''"},
    "judge": {"backend": "openai", "model": "gpt-x", "fingerprint": "gpt-x@http://h|sys=''|score=1"},
}
META = {
    "git_commit": "c0ffee1234567890",
    "host": {"cpu_model": "Test CPU 9000", "cpu_flags": ["avx2", "avx512_bf16"], "cpu_count": 2, "machine": "x86_64"},
    "threads": {"threads": 2, "cpus": 2, "source": "test"},
    "packages": {"torch": "9.9"},
    "llm_roles": ROLES,
}


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("RSO_ROOT", str(tmp_path))
    return tmp_path


def _table(name, meta, rows=2):
    write_table(pd.DataFrame({"system": [f"s{i}" for i in range(rows)], "WI": [0.25 + i for i in range(rows)]}),
                name, "p", meta, caption=f"caption of {name}")  # fmt: skip


def _figure(name):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, name, "p")
    plt.close(fig)


def test_page_lists_present_tables_and_says_not_run_for_the_rest(root):
    _table("table_iv", META)
    _table("claims", META)
    _table("my_new_table", META)  # not in the paper's list: must still appear
    _figure("table_iv_cis")
    page = report.render("p", root, root / "docs" / "results").read_text()
    assert "caption of table_iv" in page and "| s1 " in page and "1.25" in page
    assert "caption of claims" in page and "caption of my_new_table" in page
    # sections the run did not reach
    table_v = page.split("## Table V")[1].split("\n## ")[0]
    assert "Not run" in table_v
    assert page.count("Not run") >= 8
    # paper order: Table IV before Fig. 3 before claims
    assert page.index("## Table IV") < page.index("## Fig. 3") < page.index("## Claims")
    # the figure is copied beside the page and linked relative to it
    assert (root / "docs" / "results" / "p" / "table_iv_cis.png").read_bytes() == (
        root / "figures" / "p" / "table_iv_cis.png"
    ).read_bytes()
    assert "](p/table_iv_cis.png)" in page


def test_header_comes_from_meta(root):
    _table("table_iv", META)
    write_json(
        {"notebooks": [{"notebook": "04_eval_tables.ipynb", "seconds": 125.0}]}, root / "results" / "p" / "chain.json"
    )
    page = report.render("p", root, root / "docs" / "results").read_text()
    assert "`c0ffee1234567890`" in page
    assert "Test CPU 9000" in page and "avx512_bf16" in page
    assert "| actor | embedded | Qwen2.5-0.5B | bfloat16 |" in page
    assert "| judge | openai | gpt-x | not recorded |" in page  # no dtype in an API fingerprint
    assert "2 min 5 s" in page and "torch 9.9" in page


def test_missing_meta_fields_are_reported_not_invented(root):
    _table("table_iv", {"git_commit": "abc"})  # an old run: no host, no roles
    page = report.render("p", root, root / "docs" / "results").read_text()
    assert "Machine: not recorded (no `host` field" in page
    assert "LLM roles: not recorded (no `llm_roles` field" in page
    assert "Wall time: not recorded" in page
    assert "Test CPU" not in page


def test_tables_from_different_commits_are_told_apart(root):
    _table("table_iv", META)
    _table("claims", {**META, "git_commit": "deadbeef"})
    page = report.render("p", root, root / "docs" / "results").read_text()
    assert "`c0ffee1234567890` (tables: table_iv)" in page and "`deadbeef` (tables: claims)" in page


def test_long_tables_are_cut_and_say_so(root):
    _table("per_dialogue_main", META, rows=50)
    page = report.render("p", root, root / "docs" / "results", max_rows=10).read_text()
    block = page.split("### `per_dialogue_main`")[1].split("###")[0]
    assert "| s9 " in block and "| s10 " not in block
    assert "First 10 of 50 rows" in block


def test_stale_figures_of_an_earlier_run_are_removed(root):
    _table("table_iv", META)
    stale = root / "docs" / "results" / "p" / "old_fig.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    report.render("p", root, root / "docs" / "results")
    assert not stale.exists()


def test_no_results_is_a_clear_error(root, capsys):
    assert report.main(["--profile", "nothing", "--root", str(root)]) == 1
    assert "no results directory" in capsys.readouterr().err
    assert report.main(["--profile", "../x", "--root", str(root)]) == 1


def test_meta_written_by_provenance_holds_the_machine(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 fma avx512f\n\nprocessor\t: 1\n")
    m = machine(info)
    assert m["cpu_model"] == "Some CPU" and m["cpu_flags"] == ["avx2", "fma", "avx512f"]
    assert "cpu_model" not in machine(tmp_path / "absent")  # unreadable: left out, not guessed


def test_time_by_role_sums_the_runs_of_each_table(root):
    info = {
        "inspired/RSO": {"wall_s": 100.0, "judge_s": 300.0, "turns": 20, "new_dialogues": 10,
                         "model_s_by_role": {"actor": 40.0, "rewarder": 50.0}},
        "redial/RSO": {"wall_s": 80.0, "judge_s": 120.0, "turns": 14, "new_dialogues": 10,
                       "model_s_by_role": {"actor": 30.0, "simulator": 25.0}},
    }  # fmt: skip
    _table("table_iv", {**META, "run_info": info})
    _table("table_v", {**META, "run_info": info})  # the same runs: the same row
    _table("claims", META)  # no run_info: no row
    page = report.render("p", root, root / "docs" / "results").read_text()
    section = page.split("## Where the evaluation's time went")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if "`table_iv`" in line]
    assert len(rows) == 1 and rows[0].startswith("| `table_iv`, `table_v` |")
    row = rows[0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == ["2", "20", "34", "3 min 0 s"]
    assert cells[5] == "actor 1 min 10 s, rewarder 50 s, simulator 25 s"  # largest first
    assert cells[6:] == ["7 min 0 s", "70%"]  # 420 of 600 s
    assert "`claims`" not in section


def test_no_run_info_no_time_section(root):
    _table("table_iv", META)
    assert "Where the evaluation's time went" not in report.render("p", root, root / "docs" / "results").read_text()
