"""Planner SFT examples: counts on the real splits, history shape, JSONL round trip."""

from __future__ import annotations

import pytest

from rso_lib.data.inspired import load_strategy_split
from rso_lib.data.records import RECOMMENDER, SEEKER, DataError, Dialogue, Issue, Turn
from rso_lib.data.sft import SFTExample, build_sft_examples, read_sft_examples, sft_path, write_sft_examples
from rso_lib.strategies import STRATEGY_TO_ID


def test_real_counts(data_dir):
    n = {}
    for s in ("train", "valid", "test"):
        ds, _ = load_strategy_split(data_dir, s)
        ex = build_sft_examples(ds)
        n[s] = len(ex)
        # each example: the labelled recommender turn's strategy, history = every earlier turn
        d = {x.dialog_id: x for x in ds}
        for e in ex[:200]:
            turns = d[e.dialog_id].turns
            assert turns[e.turn_index].speaker == RECOMMENDER and turns[e.turn_index].strategy == e.strategy
            assert e.history == turns[: e.turn_index]
    assert n == {"train": 14662, "valid": 1860, "test": 1764}


def test_unlabelled_turns_stay_in_history():
    d = Dialogue(
        "d",
        [
            Turn(RECOMMENDER, "hi", "offer_help"),
            Turn(SEEKER, "yo"),
            Turn(RECOMMENDER, "??", None),
            Turn(RECOMMENDER, "watch X", "encouragement"),
        ],
        "inspired",
        "train",
    )
    ex = build_sft_examples([d])
    assert [(e.turn_index, e.strategy, len(e.history)) for e in ex] == [(0, "offer_help", 0), (3, "encouragement", 3)]
    assert ex[1].history[2].text == "??" and ex[1].label == STRATEGY_TO_ID["encouragement"]


def test_roundtrip_and_bad_lines(tmp_path):
    ex = [
        SFTExample(
            "d1", 2, [Turn(RECOMMENDER, 'say "hi"', "offer_help", ["A (2000)"]), Turn(SEEKER, "ünïcode")], "credibility"
        )
    ]
    p = tmp_path / "sub" / "sft.jsonl"
    assert write_sft_examples(p, ex) == 1
    assert read_sft_examples(p) == ex
    with p.open("a") as f:
        f.write('{"dialog_id": "d2", "turn_index": 0, "strategy": "mind_control", "history": []}\n{oops\n')
    with pytest.raises(DataError, match=r"sft.jsonl:2"):
        read_sft_examples(p)
    issues: list[Issue] = []
    assert read_sft_examples(p, issues) == ex
    assert sorted((i.line, i.action) for i in issues) == [(2, "skipped"), (3, "skipped")]


def test_sft_path_convention(tmp_path, monkeypatch):
    monkeypatch.setenv("RSO_ROOT", str(tmp_path))
    assert sft_path("smoke", "train") == tmp_path / "runs" / "smoke" / "data" / "sft_train.jsonl"
