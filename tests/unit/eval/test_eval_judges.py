"""Judges (parsing, option scoring, sampling with failure counts) and the per-system evaluation on
hand-made transcripts, with metrics asserted from the written result files."""

import json

import numpy as np
import pandas as pd
import pytest
from eval_support import KB, _judge, _rows, _turn, _write  # tests/eval_support.py

from rso_lib.data.records import DataError, Item
from rso_lib.eval import judges as J
from rso_lib.eval.evaluate import EvalConfig, evaluate_system
from rso_lib.eval.transcripts import read_transcript
from rso_lib.llm.scripted import ScriptedLLM


def test_rate_score_mode_expected_value():
    llm = ScriptedLLM(option_probs=lambda m, o: [0, 0, 0.5, 0.5, 0])
    r = J.rate(llm, [[{"role": "user", "content": "x"}]] * 3, J.JudgeConfig(mode="score", batch_size=2))
    assert r.values == pytest.approx([3.5, 3.5, 3.5]) and r.parse_failures == 0
    assert len(llm.score_calls) == 2  # batched: 3 requests in chunks of 2
    assert llm.score_calls[0][1] == list(J.RATING_OPTIONS)


def test_rate_sample_mode_counts_failures_never_fills():
    replies = iter(["Rating: 4", "no idea", "2", "blah", "nope", "Rating: 9"])
    llm = ScriptedLLM(replies=lambda m: next(replies))
    r = J.rate(
        llm,
        [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]],
        J.JudgeConfig(mode="sample", samples=3),
    )
    assert r.values[0] == pytest.approx(3.0)  # mean of 4 and 2
    assert r.values[1] is None  # nothing parsable -> missing, not a score
    assert r.parse_failures == 4
    assert llm.chat_calls[0][1].n == 3


def test_judge_config_rejects_unknown_mode():
    with pytest.raises(ValueError):
        J.JudgeConfig(mode="vote")


# ---------------------------------------------------------------- hand-made transcripts ------


@pytest.fixture
def transcript(tmp_path):
    return _write(
        tmp_path / "RSO.jsonl",
        [
            _rows(
                "d1",
                True,
                [
                    _turn("Hello there, what do you like?", retrieved=["m2", "m1"]),
                    _turn("Alien is a horror film by Ridley Scott.", chosen="m1", retrieved=["m1", "m3"], pf=1),
                ],
            ),
            _rows("d2", False, [_turn("Try Airplane! a funny film.", chosen="m2", retrieved=["m2", "m3", "m1"])]),
            _rows("d3", False, [_turn("What do you like?", retrieved=[])]),  # no recommendation
        ],
    )


def test_evaluate_system_from_transcript_and_result_files(transcript, tmp_path, monkeypatch):
    dialogues = read_transcript(transcript, system="RSO")
    assert [d.recommended_item for d in dialogues] == ["m1", "m2", None]
    judge = _judge()
    # the presented item where there is one; no ranker: d3 (nothing presented, no candidate) has
    # no judged item -- counted, not hidden
    cfg = EvalConfig(judge=J.JudgeConfig(mode="score"), judge_item="presented", recall_ranking="named")
    ev = evaluate_system(dialogues, KB, judge, cfg, seed=0)

    # write through the results writer and assert from the files (not from the objects)
    monkeypatch.setenv("RSO_ROOT", str(tmp_path))
    from rso_lib.results import provenance, write_table

    paths = write_table(pd.DataFrame([ev.row]), "t", "unit", provenance(0))
    got = pd.read_csv(paths["csv"]).iloc[0]
    assert got["n"] == 3
    assert got["Conv-SR"] == pytest.approx(1 / 3)
    assert got["Rec-SR"] == pytest.approx(1 / 3)  # d1: m1 covers horror; d2: comedy does not; d3: none
    assert got["Recall@1"] == pytest.approx(1 / 3)  # d1 final ranking [m1, m3]; d2 [m2, m3, m1]
    assert got["Recall@5"] == pytest.approx(2 / 3)  # d2 has m1 at rank 3; d3 no ranking
    assert got["WI"] == pytest.approx(4.0) and got["WI_n"] == 2 and got["WI_unjudged"] == 1
    assert got["WI_on_presented"] == 2
    assert got["PRS"] == pytest.approx(1 - (5 - 4) / (5 - 2)) and got["PRS_n"] == 2
    assert got["PRS_missing"] == 1  # d3 had nothing to judge
    # Cred: d1 and d2 judged 3, d3 presented nothing and counts 0 (the authors' rule)
    assert got["Cred"] == pytest.approx(2.0) and got["Cred_n"] == 3
    assert got["Cred_judged"] == 2 and got["Cred_zero_no_item"] == 1
    assert got["engine_parse_failures"] == 1
    assert got["no_recommendation"] == 1
    assert got["Recall_own"] == 2 and got["Recall_named"] == 0
    # Dist-2 over the 4 system replies, per reply (the default), with the corpus value beside it
    from rso_lib.eval.metrics import distinct_n, distinct_n_per_response

    replies = [t.reply for d in dialogues for t in d.turns]
    assert got["Dist-2"] == pytest.approx(distinct_n_per_response(replies).value)
    assert got["Dist-2_definition"] == "per_response"
    assert got["Dist-2_corpus"] == pytest.approx(distinct_n(replies).value)
    # batched: 4 passes (pre, post, true, cred), each one backend call here
    assert len(judge.score_calls) == 4
    assert [len(b) for b, _ in judge.score_calls] == [2, 2, 2, 2]
    assert any("no ranker" in n for n in ev.notes)


def test_prs_over_counted_apart(transcript):
    def probs(messages, options):  # post 5 > true 3: oversold
        text = messages[-1]["content"]
        want = 2 if "its title" in text else 5 if "recommender said" in text else 3
        p = np.zeros(5)
        p[want - 1] = 1
        return p

    cfg = EvalConfig(judge_item="presented")
    ev = evaluate_system(read_transcript(transcript, system="X"), KB, ScriptedLLM(option_probs=probs), cfg, seed=0)
    assert ev.row["PRS_over"] == 2 and ev.row["PRS_n"] == 0 and np.isnan(ev.row["PRS"])


def test_no_judge_reports_nan_and_note(transcript):
    ev = evaluate_system(read_transcript(transcript, system="X"), KB, None)
    assert np.isnan(ev.row["WI"]) and ev.row["Conv-SR"] == pytest.approx(1 / 3)
    assert any("no judge" in n for n in ev.notes)


def test_read_transcript_bad_line_names_file_and_line(tmp_path):
    rows = _rows("d1", True, [_turn("Alien!", chosen="m1", retrieved=["m1"])])
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(ValueError) as e:
        read_transcript(p)
    assert "bad.jsonl:2" in str(e.value)
    bad = dict(rows[0])
    del bad["reply"]
    p.write_text(json.dumps(bad) + "\n")
    with pytest.raises(ValueError) as e:
        read_transcript(p)
    assert "bad.jsonl:1" in str(e.value) and "reply" in str(e.value)
    with pytest.raises(DataError):
        read_transcript(tmp_path / "missing.jsonl")


def test_mentioned_item_wins_and_unfinished_skipped(tmp_path):
    d1 = _rows("d1", False, [_turn("Heat is great", chosen="m1", retrieved=["m1", "m3"], mentioned="m3")])
    d2 = _rows("d2", False, [_turn("x", retrieved=["m1"]), _turn("y", retrieved=["m1"])])[:1]  # not done
    ds = read_transcript(_write(tmp_path / "t.jsonl", [d1, d2]))
    assert [d.dialog_id for d in ds] == ["d1"]
    assert ds[0].recommended_item == "m3" and ds[0].final_ranking == ["m1", "m3"]


def test_prompts_cut_long_facts_and_dialogues():
    item = Item("x", "Long", 2000, ["drama"], plot="word " * 1000)
    msg = J.credibility_messages("It is long.", item, max_facts_chars=300)[-1]["content"]
    # the facts are cut to 300 characters (the rubric around them is fixed text)
    assert "word word" in msg and msg.count("word") <= 300 // len("word ")
    true = J.intention_messages("true", "p", ["drama"], item, max_facts_chars=300)[-1]["content"]
    assert true.count("word") <= 300 // len("word ")
    from rso_lib.eval.transcripts import EvalTurn

    text = J.dialogue_text([EvalTurn(reply="a" * 500, user_reply="b" * 500)], max_chars=100)
    assert text.startswith("...") and len(text) == 103 and text.endswith("b" * 50)
