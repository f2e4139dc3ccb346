"""KB_SOURCE per dataset (issue 20, item 8): each dataset reads its own knowledge base, a missing
INSPIRED movie database stops the run saying how to fetch it, and every results file records
which source each dataset used. Tiny scripted data directories only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from rso_lib import run
from rso_lib.data.kb import INSPIRED_KB, REDIAL_KB, kb_source_map, load_kbs
from rso_lib.data.records import DataError, Persona, SimTarget
from rso_lib.eval.evaluate import EvalConfig
from rso_lib.experiments import RunContext, RunSpec, _run_config, run_provenance

BOTH = {"inspired": "inspired", "redial": "redial"}


def _write_redial(data: Path) -> Path:
    p = data / REDIAL_KB
    p.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "1": {"name": "Police Academy (1984)", "genre": ["comedy"], "plot": "Cadets.", "star": ["Steve Guttenberg"]},
        "2": {"name": "Heat (1995)", "genre": ["crime", "drama"], "plot": "A heist.", "director": ["Michael Mann"]},
    }
    p.write_text(json.dumps(info), encoding="utf-8")
    return p


def _write_inspired(data: Path) -> Path:
    """Columns as INSPIRED's database names them (``title``, ``year``, ``genre``, ``actors``, the
    plots): the aliases ``load_inspired_kb`` matches."""
    p = data / INSPIRED_KB
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(
        "title\tyear\tgenre\tdirector\tactors\tshort_plot\tlong_plot\n"
        "Frozen II\t2019\tAnimation, Adventure, Comedy\tChris Buck\tIdina Menzel\tElsa goes north.\tElsa and Anna.\n"
        "Joker\t2019\tCrime, Drama, Thriller\tTodd Phillips\tJoaquin Phoenix\tA man.\tArthur Fleck.\n"
        "Coco\t2017\tAnimation, Family\tLee Unkrich\tAnthony Gonzalez\tA boy.\tMiguel dreams.\n",
        encoding="utf-8",
    )
    return p


@pytest.fixture
def data(tmp_path) -> Path:
    d = tmp_path / "data"
    _write_redial(d)
    _write_inspired(d)
    return d


def _ctx(data: Path, kb_source) -> RunContext:
    return RunContext(
        profile="kbsrc-test", data_dir=data, llm_cfg={"default": {"backend": "embedded"}}, kb_source=kb_source
    )


# --- the parameter ----------------------------------------------------------------------------------


def test_a_string_is_one_source_for_both_datasets_and_a_mapping_chooses_per_dataset():
    assert kb_source_map("redial") == {"inspired": "redial", "redial": "redial"}
    assert kb_source_map("inspired") == {"inspired": "inspired", "redial": "inspired"}
    assert kb_source_map({"redial": "redial", "inspired": "inspired"}) == BOTH


@pytest.mark.parametrize(
    "value, names",
    [
        ("imdb", ["KB_SOURCE", "'imdb'", "'redial'", "'inspired'"]),
        ({"inspired": "movielens", "redial": "redial"}, ["KB_SOURCE['inspired']", "'movielens'"]),
        ({"inspired": "inspired", "redial": "redial", "durecdial": "redial"}, ["KB_SOURCE", "durecdial"]),
        ({"inspired": "inspired"}, ["KB_SOURCE", "no source for ['redial']"]),
        (["redial"], ["KB_SOURCE", "list"]),
    ],
)
def test_a_bad_kb_source_names_the_parameter_and_the_key(value, names):
    with pytest.raises(ValueError) as e:
        kb_source_map(value)
    for n in names:
        assert n in str(e.value)
    why = run.check_value("KB_SOURCE", value, "redial")  # the chain's params check says the same
    assert why == str(e.value)


def test_the_params_check_accepts_a_mapping_and_rejects_a_bad_key(tmp_path, monkeypatch):
    monkeypatch.delenv("RSO_ROOT", raising=False)
    nbs = run.notebooks()
    if not nbs:
        pytest.skip("no notebooks")
    assert run.check_value("KB_SOURCE", BOTH, "redial") is None  # not one type: no type complaint
    bad = tmp_path / "bad.yaml"
    bad.write_text("common:\n  KB_SOURCE: {inspired: inspired, redail: redial}\n", encoding="utf-8")
    with pytest.raises(run.ParamsError, match=r"01_data_prep: KB_SOURCE: unknown dataset key\(s\) \['redail'\]"):
        run.plan(run.load_params(run.profile_files("smoke", [bad])), nbs)
    # the paper profile's mapping passes, every notebook that declares KB_SOURCE gets it whole
    todo = run.plan(run.load_params(run.profile_files("paper")), nbs)
    got = {nb.stem: p["KB_SOURCE"] for nb, p in todo.items() if "KB_SOURCE" in p}
    assert got and all(v == BOTH for v in got.values())


# --- loading per dataset ----------------------------------------------------------------------------


def test_the_mapping_loads_each_datasets_own_knowledge_base(data):
    ctx = _ctx(data, BOTH)
    ins, red = ctx.kb_for("inspired"), ctx.kb_for("redial")
    assert (ins.source, ins.path) == ("inspired", str(data / INSPIRED_KB))
    assert (red.source, red.path) == ("redial", str(data / REDIAL_KB))
    assert ins.lookup("Frozen II", 2019) is not None and ins.lookup("Police Academy") is None
    assert red.lookup("Police Academy", 1984) is not None and red.lookup("Frozen II") is None
    coco = ins.get(ins.lookup("Coco").item_id)
    assert coco.genres == ["animation", "family"] and coco.stars == ["Anthony Gonzalez"]
    assert coco.plot == "Miguel dreams."  # the long plot, as the authors' INSPIRED items carry it
    assert "Plot: Miguel dreams." in coco.facts()
    assert ctx.kb_for("inspired") is ins  # loaded once
    # one source for both: one object, read once
    same = _ctx(data, "redial")
    assert same.kb_for("inspired") is same.kb_for("redial")
    kbs = load_kbs(data, {"inspired": "redial", "redial": "redial"})
    assert kbs["inspired"] is kbs["redial"] and kbs["inspired"].source == "redial"


def test_targets_are_reached_in_the_datasets_own_catalogue(data, monkeypatch):
    """A user who wants animation is reachable in INSPIRED's database and not in the (tiny) ReDial
    catalogue: with the mapping, INSPIRED keeps them; with ReDial for both, they are left out."""
    import rso_lib.data.targets as targets_mod

    def fake_targets(data_dir, dataset, split="test"):
        p = Persona("u", "a user")
        return [
            SimTarget("d1", dataset, "u1", p, ["animation"]),
            SimTarget("d2", dataset, "u2", p, ["crime", "drama"]),
        ]

    monkeypatch.setattr(targets_mod, "load_sim_targets", fake_targets)
    ctx = _ctx(data, BOTH)
    assert [t.dialog_id for t in ctx.targets("inspired", 0)] == ["d1", "d2"]
    assert [t.dialog_id for t in ctx.targets("redial", 0)] == ["d2"]
    assert ctx.left_out == {"inspired": 0, "redial": 1}
    red_only = _ctx(data, "redial")
    assert [t.dialog_id for t in red_only.targets("inspired", 0)] == ["d2"]


def test_one_retriever_per_knowledge_base(data, monkeypatch):
    """The retriever of a dataset indexes that dataset's catalogue; datasets sharing a source share
    one retriever (no model is loaded here: the index builder is replaced by a recorder)."""
    import rso_lib.experts.retriever as retriever_mod
    import rso_lib.llm as llm_mod

    built = []

    class Recorder:
        def __init__(self, items, embedder, **kw):
            self.items = {it.item_id: it for it in items}
            built.append(self)

    monkeypatch.setattr(retriever_mod, "FactRetriever", Recorder)
    monkeypatch.setattr(llm_mod, "load_embedder", lambda name: object())
    ctx = _ctx(data, BOTH)
    r_ins, r_red = ctx.retriever("inspired"), ctx.retriever("redial")
    assert r_ins is not r_red and len(built) == 2
    assert {it.title for it in r_ins.items.values()} == {"Frozen II", "Joker", "Coco"}
    assert {it.title for it in r_red.items.values()} == {"Police Academy", "Heat"}
    assert ctx.retriever("inspired") is r_ins and len(built) == 2
    same = _ctx(data, "redial")
    assert same.retriever("inspired") is same.retriever("redial") and len(built) == 3


# --- a missing INSPIRED database ------------------------------------------------------------------


def test_a_missing_inspired_database_stops_with_the_fetch_command_and_never_falls_back(data):
    (data / INSPIRED_KB).unlink()
    ctx = _ctx(data, BOTH)
    assert ctx.kb_for("redial").source == "redial"  # ReDial's own is there
    with pytest.raises(DataError) as e:
        ctx.kb_for("inspired")
    msg = str(e.value)
    assert "inspired/movie_database.tsv" in msg and str(data) in msg
    assert "python -m rso_lib.data.fetch --dest DATA_DIR --only inspired/movie_database.tsv" in msg
    assert "KB_SOURCE" in msg
    with pytest.raises(DataError, match="movie_database.tsv"):
        load_kbs(data, BOTH)  # what notebooks 01-03 call first


# --- provenance -----------------------------------------------------------------------------------


def test_every_results_file_records_each_datasets_source(data, monkeypatch):
    import rso_lib.llm as llm_mod

    ctx = _ctx(data, BOTH)
    ctx.kb_for("inspired"), ctx.kb_for("redial")
    # no model is built for the record: the roles' description is not what is tested here
    monkeypatch.setattr(llm_mod, "role_llms", lambda cfg: {})
    monkeypatch.setattr(llm_mod, "describe", lambda llms: {})
    meta = run_provenance(ctx, [], EvalConfig(), {})
    assert meta["kb_source"] == BOTH
    ins_file = meta["kb_files"]["inspired"]
    assert ins_file["path"] == str(data / INSPIRED_KB) and ins_file["items"] == 3
    assert ins_file["sha256"] == hashlib.sha256((data / INSPIRED_KB).read_bytes()).hexdigest()
    assert meta["kb_files"]["redial"]["items"] == 2
    # each transcript's config names its dataset's source (a change of source starts the run over)
    spec = RunSpec("PROMPT_ONLY", "PROMPT_ONLY")
    assert _run_config(ctx, spec, "inspired", None, False)["kb_source"] == "inspired"
    assert _run_config(ctx, spec, "redial", None, False)["kb_source"] == "redial"
    # one source for both: recorded per dataset too
    meta = run_provenance(_ctx(data, "redial"), [], EvalConfig(), {})
    assert meta["kb_source"] == {"inspired": "redial", "redial": "redial"}
