"""Personas (INSPIRED seeker surveys, PC-CRS profiles) and simulation targets on the real files."""

from __future__ import annotations

import json
import warnings

import pytest

from rso_lib.data.kb import load_kb
from rso_lib.data.personas import load_pccrs_personas, load_seeker_personas
from rso_lib.data.records import DataError
from rso_lib.data.targets import apply_genre_rule, load_sim_targets, load_sim_targets_with_issues, split_reachable


def test_seeker_personas(data_dir):
    personas, issues = load_seeker_personas(data_dir)
    assert len(personas) == 894  # 1,001 survey rows, repeat seekers merged, + personality-only users
    # 8 demographic rows are shifted by one column: realigned and reported, not dropped
    assert len(issues) == 8 and {i.field for i in issues} == {"age_group"} and all(i.action == "kept" for i in issues)
    p = personas["user_188"]
    assert p.fields["age_group"] == "25 - 34" and p.fields["gender"] == "Male"
    assert p.fields["big5"]["Agreeable"] == 5.0
    assert "25-34-year-old man" in p.description and "friendly" in p.description
    assert "Protestant" not in p.description  # religion / politics stay out of the prompt
    shifted = personas["user_103"]  # line 58: age group missing, gender in its place
    assert shifted.fields["age_group"] is None and shifted.fields["gender"] == "Female"
    assert personas["user_759"].fields["age_group"] == "25 - 34"  # line 478: extra field before it
    assert len(personas["user_5"].fields["survey_ids"]) > 1


def test_pccrs_personas(data_dir):
    ps, issues = load_pccrs_personas(data_dir)
    assert len(ps) == 48 and issues == []
    assert ps[0].fields["emotion"] == "Boredom"  # BOM stripped
    assert ps[0].fields["age_group"] == "Adults" and ps[0].user_id == "pccrs_1"
    assert ps[0].description.startswith("You are easily bored")
    assert {p.fields["age_group"] for p in ps} == {"Adults", "Children", "Teens", "Seniors"}


def test_pccrs_malformed(tmp_path):
    (tmp_path / "personas").mkdir()
    f = tmp_path / "personas" / "profile.csv"
    f.write_text('\ufeffJoy---Age group=Teens,1,"long, text","short"\nbad row,2\nJoy-Teens,3,a,b\n', encoding="utf-8")
    ps, issues = load_pccrs_personas(tmp_path)
    assert [p.user_id for p in ps] == ["pccrs_1"] and ps[0].fields["long_description"] == "long, text"
    assert [(i.line, i.field) for i in issues] == [(2, None), (3, "key")]


@pytest.mark.parametrize(
    "dataset,n,first",
    [
        ("inspired", 99, ("20191125-160223_496_live.pkl", "user_184", ["action"])),
        ("redial", 198, ("20001", "user_188", ["crime", "drama", "thriller"])),
    ],
)
def test_sim_targets(data_dir, dataset, n, first):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no problem with the targets themselves
        ts = load_sim_targets(data_dir, dataset)
    assert len(ts) == n and len({t.dialog_id for t in ts}) == n
    t = ts[0]
    assert (t.dialog_id, t.user_id, t.target_genres) == first
    assert t.dataset == dataset and t.persona.user_id == t.user_id and t.persona.description
    assert all(g == g.lower() for t in ts for g in t.target_genres)
    assert not any(t.persona.fields.get("missing_survey") for t in ts)


def test_sim_targets_vs_kb(data_dir):
    """Facts the dialogue engine relies on: every ReDial target (3-genre sets) has >= 50 valid
    items in id2info; 20 INSPIRED targets name genre sets no single movie covers, 8 have none."""
    kb = load_kb(data_dir)
    red = load_sim_targets(data_dir, "redial")
    assert min(len(kb.valid_targets(t.target_genres)) for t in red) >= 50
    ins = load_sim_targets(data_dir, "inspired")
    assert sum(not t.target_genres for t in ins) == 8  # an empty target has no valid item at all
    assert sum(not kb.valid_targets(t.target_genres) for t in ins) == 20 + 8
    # the genre rule gives the 8 the authors' substitute ("Action"), so none stays empty or drops out
    for rule, unreachable in (("all", 20), ("first", 0)):
        ruled = apply_genre_rule(ins, rule)
        assert not any(not t.target_genres for t in ruled)
        assert [t.target_genres for t, o in zip(ruled, ins) if not o.target_genres] == [["action"]] * 8
        assert len(split_reachable(ruled, kb)[1]) == unreachable


def test_sim_targets_train_and_valid(data_dir):
    assert len(load_sim_targets(data_dir, "inspired", "train")) == 801
    with pytest.raises(DataError, match="inspired-valid.txt:1 \\[genre_dict\\]"):
        load_sim_targets(data_dir, "inspired", "valid")
    with pytest.raises(ValueError):
        load_sim_targets(data_dir, "redial", "train")


def test_sim_targets_mapping_problems(tmp_path, data_dir):
    # a copy of the layout with a small, partly broken mapping file
    for sub in ("inspired/survey", "inspired/strategy"):
        (tmp_path / sub).mkdir(parents=True)
    for f in ("seeker_demographic.tsv", "seeker_personality.tsv"):
        (tmp_path / "inspired/survey" / f).write_bytes((data_dir / "inspired/survey" / f).read_bytes())
    split = [
        {"dialog_id": "a", "dialog": [], "user_id": "user_1", "genre_dict": []},
        {"dialog_id": "b", "dialog": [], "user_id": "user_nobody", "genre_dict": ["drama"]},
    ]
    (tmp_path / "inspired/strategy/inspired-test.txt").write_text("\n".join(json.dumps(x) for x in split) + "\n")
    (tmp_path / "inspired/inspired_dialog_ids2user_id_and_genre_dict.jsonl").write_text(
        json.dumps({"dialog_id": "a", "user_id": "user_3", "genre_dict": ["Horror"]})
        + "\n{broken\n"
        + json.dumps({"dialog_id": "zzz", "user_id": "user_3", "genre_dict": []})
        + "\n"
    )
    ts, issues = load_sim_targets_with_issues(tmp_path, "inspired")
    assert [(t.dialog_id, t.user_id, t.target_genres) for t in ts] == [
        ("a", "user_3", ["horror"]),
        ("b", "user_nobody", ["drama"]),
    ]
    assert ts[1].persona.fields == {"missing_survey": True}
    mine = [(i.path.rsplit("/", 1)[-1], i.line, i.field) for i in issues if not i.path.endswith(".tsv")]
    assert mine == [
        ("inspired_dialog_ids2user_id_and_genre_dict.jsonl", 2, None),
        ("inspired-test.txt", 2, "user_id"),
        ("inspired_dialog_ids2user_id_and_genre_dict.jsonl", 3, "dialog_id"),
    ]


def test_targets_roundtrip(tmp_path, data_dir):
    from rso_lib.data.targets import read_sim_targets, write_sim_targets

    ts = load_sim_targets(data_dir, "redial")
    p = tmp_path / "t.jsonl"
    assert write_sim_targets(p, ts) == 198
    assert read_sim_targets(p) == ts
    p.write_text(p.read_text().splitlines()[0] + "\n{bad\n")
    with pytest.raises(DataError, match="t.jsonl:2"):
        read_sim_targets(p)
