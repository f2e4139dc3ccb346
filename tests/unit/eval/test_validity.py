"""The validity card's checks on scripted instruments whose behaviour is known: an honest one must
pass, a broken one must fail (a judge that always says 5, a Rewarder that passes tau with no
recommendation, a user who accepts anything or names its target)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from eval_support import _rows, _write  # tests/eval_support.py

from rso_lib.data.records import Item, Persona, SimTarget
from rso_lib.dialogue.config import EngineConfig
from rso_lib.dialogue.simulators import AgendaSimulator, LLMSimulator, SimulatorReward
from rso_lib.eval import known_answers as K
from rso_lib.eval import transcript_checks as T
from rso_lib.eval import validity as V
from rso_lib.eval.judges import JudgeConfig
from rso_lib.eval.titles import TitleIndex
from rso_lib.experts.rewarder import Rewarder
from rso_lib.llm.scripted import ScriptedLLM

GENRES = ["comedy", "horror", "drama", "sci-fi", "romance", "western"]
WORDS = ["Silent", "Golden", "Broken", "Midnight", "Crimson", "Hidden", "Frozen", "Burning"]


def _kb() -> list[Item]:
    items = []
    for k in range(24):
        g = [GENRES[k % 6], GENRES[(k + 1) % 6]] if k % 2 else [GENRES[k % 6]]
        items.append(
            Item(
                f"m{k}",
                f"The {WORDS[k % 8]} {['River', 'Road', 'House'][k % 3]} {k}",
                1970 + k,
                g,
                plot=f"A story number {k} about people who travel far and learn about the world together.",
                director=[f"Director {k}"],
                stars=[f"Star {k}a", f"Star {k}b", f"Star {k}c"],
            )
        )
    return items


ITEMS = _kb()
TH = V.Thresholds()
CFG = JudgeConfig(mode="score", batch_size=64)


def _judge(rating) -> ScriptedLLM:
    """A score-mode judge whose rating is ``rating(messages)`` (all probability on that digit)."""

    def probs(messages, options):
        r = rating(messages)
        return [1.0 if o == str(r) else 0.0 for o in options]

    return ScriptedLLM(option_probs=probs)


def _by_check(rows, metric=None) -> dict[str, dict]:
    return {r["check"]: r for r in rows if metric is None or r["metric"] in (metric, "")}


def test_rows_one_per_metric_and_nan_fails():
    r = V.rows("c", "judge", ["Rec-SR", "Recall@1"], "m", 0.95, 0.9, True, 10)
    assert [x["metric"] for x in r] == ["Rec-SR", "Recall@1"] and all(x["passed"] for x in r)
    assert not V.rows("c", "judge", [], "m", float("nan"), 0.9, True, 0)[0]["passed"]
    assert not V.rows("c", "judge", [], "m", 0.3, 0.2, False, 5)[0]["passed"]
    with pytest.raises(ValueError, match="unknown metric"):
        V.rows("c", "judge", ["BLEU"], "m", 1.0, 0.5, True, 1)


def test_a_judge_that_always_says_5_fails_every_cred_discrimination():
    rows, _ = V.cred_checks(_judge(lambda m: 5), CFG, ITEMS, 10, 0, TH)
    by = _by_check(rows)
    for c in ("cred_true_vs_false", "cred_true_vs_vague", "cred_true_vs_invented"):
        assert by[c]["value"] == 0.5 and not by[c]["passed"], c
    assert by["cred_order_flip_rate"]["passed"]  # it never changes its mind: no flips


def _reply_in(messages) -> str:
    return re.search(r'The recommender said:\n"(.*)"\n\n', messages[-1]["content"], re.S).group(1)


def test_an_oracle_judge_passes_and_an_order_sensitive_one_fails_the_order_check():
    cases = V.cred_cases(ITEMS, 10, 0)
    truth = {r.text for k in ("true", "true_padded") for r in cases[k]}
    oracle = _judge(lambda m: 5 if _reply_in(m) in truth | {r.text for r in cases["true_reordered"]} else 1)
    by = _by_check(V.cred_checks(oracle, CFG, ITEMS, 10, 0, TH)[0])
    assert all(r["passed"] for r in by.values()), [r for r in by.values() if not r["passed"]]
    # believes the reordered false claims and doubts the reordered true ones: verdicts flip
    flipped = {r.text for r in cases["false_reordered"]}
    biased = _judge(lambda m: 5 if _reply_in(m) in truth | flipped else 1)
    by = _by_check(V.cred_checks(biased, CFG, ITEMS, 10, 0, TH)[0])
    assert by["cred_order_flip_rate"]["value"] == 1.0 and not by["cred_order_flip_rate"]["passed"]
    assert by["cred_true_vs_false"]["passed"] and by["cred_length_flip_rate"]["passed"]


def test_agreement_with_the_reference_procedure():
    cases = V.cred_cases(ITEMS, 8, 0)
    truth = {r.text for r in cases["true"]}

    def judge(agree: bool) -> ScriptedLLM:
        def reasoned(m):
            good = (_reply_in(m) in truth) == agree
            return json.dumps({"Evidence": "checked", "Truthfulness": 5 if good else 1})

        probs = _judge(lambda m: 5 if _reply_in(m) in truth else 1)._option_probs
        return ScriptedLLM(replies=reasoned, option_probs=probs)

    for agree, passed in ((True, True), (False, False)):
        llm = judge(agree)
        _, judged = V.cred_checks(llm, CFG, ITEMS, 8, 0, TH)
        row = V.reference_agreement_rows(llm, CFG, judged, 4, TH)[0]
        assert row["passed"] is passed and row["n"] == 16 and row["value"] == (1.0 if agree else -1.0)
    llm = ScriptedLLM(replies=["no idea"], option_probs=judge(True)._option_probs)
    _, judged = V.cred_checks(llm, CFG, ITEMS, 8, 0, TH)
    row = V.reference_agreement_rows(llm, CFG, judged, 4, TH)[0]
    assert not row["passed"] and row["parse_failures"] == 16 and "16 unreadable" in row["detail"]


def test_sample_mode_counts_parse_failures():
    judge = ScriptedLLM(replies=["I cannot rate this.", "Rating: 4"])
    cfg = JudgeConfig(mode="sample", samples=2, batch_size=64)
    rows = V.wi_checks(judge, cfg, ITEMS, 6, 0, TH)
    pf = _by_check(rows)["judge_parse_failures:WI"]
    assert pf["parse_failures"] == 12 and pf["n"] == 24 and pf["value"] == 0.5 and not pf["passed"]


def test_wi_and_prs_judges_on_personas():
    def wi(m):
        text = m[-1]["content"]
        if "I hate" in text:
            return 1
        return 5 if "starring" in text or "Here is everything" in text else 2

    by = _by_check(V.wi_checks(_judge(wi), CFG, ITEMS, 6, 0, TH) + V.prs_checks(_judge(wi), CFG, ITEMS, 6, 0, TH))
    assert by["wi_lover_vs_hater"]["value"] == 1.0 and by["wi_lover_vs_hater"]["passed"]
    prs = by["prs_explanation_vs_title_only"]
    assert prs["value"] == 1.0 and "PRS explanation 1.00" in prs["detail"] and "PRS title-only 0.00" in prs["detail"]
    flat = _by_check(V.prs_checks(_judge(lambda m: 3), CFG, ITEMS, 6, 0, TH))["prs_explanation_vs_title_only"]
    assert not flat["passed"] and "not measurable" in flat["detail"]


def _targets(n=6) -> list[SimTarget]:
    return [SimTarget(f"d{k}", "inspired", f"u{k}", Persona(f"u{k}", "A student."), [GENRES[k % 6]]) for k in range(n)]


def _states():
    cases = V.on_off_items(_targets(), ITEMS, 0)
    assert len(cases) == 6 and all(set(on.genres) >= set(t.target_genres) for t, on, _ in cases)
    assert all(not set(off.genres) & set(t.target_genres) for t, _, off in cases)
    return V.reward_states(cases)


class CarelessRewarder(Rewarder):
    """A Rewarder that ignores whether a movie was named (what the stop rule guards against)."""

    def score(self, states, recommended=None, seed=None):
        return super().score(states, None, seed)


def test_a_rewarder_that_passes_tau_with_no_recommendation_fails():
    careless = CarelessRewarder(_judge(lambda m: 5), mode="expected", stop_threshold=0.8)
    by = _by_check(V.rewarder_checks(careless, _states(), ["Conv-SR"], TH))
    r = by["rewarder_no_recommendation_passes_tau"]
    assert r["value"] == 1.0 and not r["passed"] and r["metric"] == "Conv-SR"
    assert not by["rewarder_rejection_passes_tau"]["passed"] and not by["rewarder_state_order"]["passed"]
    # the kit's Rewarder never stops without a movie, but a judge that always says "accepted" still
    # fails the ordering and lets rejections end the dialogue
    by = _by_check(V.rewarder_checks(Rewarder(_judge(lambda m: 5), stop_threshold=0.8), _states(), [], TH))
    assert by["rewarder_no_recommendation_passes_tau"]["passed"] and not by["rewarder_rejection_passes_tau"]["passed"]
    assert "no_recommendation 1.00" in by["rewarder_state_order"]["detail"]  # the judge's own answer


def _authors_judge():
    def option(m):  # the critic's options: 1 no recommendation, 2 not interested, 3 rejected, 4 interested, 5 accepted
        u = m[-1]["content"]
        return 5 if "I will watch" in u else 4 if "Tell me more" in u else 1 if "I like" in u else 3

    return _judge(option)


def test_a_rewarder_on_the_authors_scale_passes():
    rows = V.rewarder_checks(Rewarder(_authors_judge(), stop_threshold=0.8), _states(), [], TH)
    assert all(r["passed"] for r in rows), [r for r in rows if not r["passed"]]
    assert rows[0]["metric"] == "" and "full order in 6 of 6" in rows[0]["detail"]
    # under the authors' tau = 0.7, "interested" (0.8) may pass; at 0.8 it may not
    by = _by_check(V.rewarder_checks(Rewarder(_authors_judge(), stop_threshold=0.7), _states(), [], TH))
    assert by["rewarder_interest_passes_tau"]["value"] == 1.0 and by["rewarder_interest_passes_tau"]["passed"]


def test_the_grounded_simulator_reward_never_passes_tau_without_acceptance():
    rows = V.rewarder_checks(SimulatorReward(0.8), _states(), ["Conv-SR"], TH)
    assert all(r["passed"] for r in rows), [r for r in rows if not r["passed"]]
    assert "rewarder_parse_failures" not in _by_check(rows)
    named = V.rewarder_checks(SimulatorReward(0.8), _states(), ["Conv-SR"], TH, prefix="simulator_reward")
    assert all(r["check"].startswith("simulator_reward_") for r in named)


def test_the_agenda_user_discriminates_and_a_yes_man_does_not():
    cases = V.on_off_items(_targets(), ITEMS, 0)
    by = _by_check(V.user_checks(AgendaSimulator(ITEMS), cases, ITEMS, TH, exchanges=3))
    assert (
        by["user_accepts_target_over_offtarget"]["value"] == 1.0 and by["user_accepts_target_over_offtarget"]["passed"]
    )
    # the agenda user opens with its first genre: one target genre each, so it reveals all of them
    assert by["user_opening_reveals_all_genres"]["value"] == 1.0
    yes = ScriptedLLM(replies=["Sure, sounds good!"], option_probs=lambda m, o: [float(x == "accept") for x in o])
    by = _by_check(V.user_checks(LLMSimulator(yes, ITEMS, require_kb_cover=False), cases, ITEMS, TH, exchanges=2))
    r = by["user_accepts_target_over_offtarget"]
    assert r["value"] == 0.0 and not r["passed"] and "accepts 1.00 of on-target vs 1.00" in r["detail"]


def test_title_index_aliases_years_and_ordinary_words():
    items = [
        Item("a", "The Notebook", 2004, ["romance"]),
        Item("b", "Awesome", 2006, ["music"]),
        Item("c", "Alien", 1979, ["horror"]),
        Item("d", "Alien", 2030, ["comedy"]),
        Item("e", "Lord of the Rings", 1978, ["fantasy"]),
        Item("f", "Rings", 2017, ["horror"]),
        Item("g", "Comedy", 1999, ["comedy"]),
    ]
    idx = TitleIndex(items)
    assert idx.find("have you seen the notebook?") == ["a"]
    assert idx.find("That sounds awesome. I liked Alien (1979) a lot") == ["c"]
    assert idx.find("Awesome is great") == []  # sentence start: an ordinary word
    assert idx.find("I loved Lord of the Rings!") == ["e"]  # not also "Rings"
    assert idx.find("I want a Comedy tonight") == []  # a genre word
    assert sorted(idx.find("I really like Alien")) == ["c", "d"]  # remakes: no year, both


def _leaky_transcript(tmp_path, name, open_text, genres=("comedy",)):
    one = _rows("1", False, [{"reply": "How about The Golden Road 1?", "chosen": "m1"}], genres=genres, system=name)
    one[0]["user_open"] = open_text
    two = _rows("2", False, [{"reply": "What do you like?"}], genres=genres, system=name)
    return _write(tmp_path / f"{name}.jsonl", [one, two])


def test_a_user_that_names_its_target_fails_the_leak_audit(tmp_path):
    # m0 "The Silent River 0" is a comedy: the user wants comedy and names it first
    path = _leaky_transcript(tmp_path, "RSO", "Hi! I loved the Silent River 0, something like it?")
    runs = [{"dataset": "inspired", "system": "RSO", "transcript": path}]
    per, every = T.leak_audit(runs, TitleIndex(ITEMS))
    assert per["leaked"].tolist() == [True, False] and every["item_id"].tolist() == ["m0"]
    row = T.leak_rows(per, TH, "agenda")
    assert {r["metric"] for r in row} == {"Rec-SR", "Recall@1", "Recall@5"}
    assert row[0]["value"] == 0.5 and not row[0]["passed"]
    pdl = pd.DataFrame(
        {"dataset": "inspired", "system": "RSO", "dialog_id": ["1", "2"], "rec_success": [1.0, 0.0],
         "recall@1": [1.0, 0.0], "recall@5": [1.0, 1.0]}
    )  # fmt: skip
    lf = T.leak_free_metrics(pdl, per).iloc[0]
    assert lf["Recall@1"] == 0.5 and lf["Recall@1 (leak-free)"] == 0.0 and lf["n_leak_free"] == 1


def test_a_title_the_system_named_first_is_no_leak(tmp_path):
    rows = _rows("1", False, [{"reply": "How about The Silent River 0?"}, {"reply": "Great."}], genres=("comedy",))
    rows[0]["user_reply"] = "The Silent River 0 sounds fun."  # repeats the system's title
    rows[1]["user_reply"] = "I also loved The Silent River 6"  # the last reply: no CRS reads it
    path = _write(tmp_path / "RSO.jsonl", [rows])
    per, _ = T.leak_audit([{"dataset": "inspired", "system": "RSO", "transcript": path}], TitleIndex(ITEMS))
    assert per["leaked"].tolist() == [False]


def test_dynamics_counts_turns_and_stop_reasons(tmp_path):
    rows = [_rows("1", True, [{"reply": "a"}, {"reply": "b", "chosen": "m2"}]), _rows("2", False, [{"reply": "c"}])]
    d = T.dynamics([{"dataset": "inspired", "system": "RSO", "transcript": _write(tmp_path / "x.jsonl", rows)}]).iloc[0]
    assert d["dialogues"] == 2 and d["mean_turns"] == 1.5 and d["one_turn"] == 0.5
    assert d["ended_accepted"] == 0.5 and d["ended_max_turns"] == 0.5 and d["ended_reward"] == 0.0


def test_kendall_tau_b_against_scipy_and_judge_swap_rows():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, 7).astype(float), rng.integers(0, 4, 7).astype(float)
        ref = scipy_stats.kendalltau(x, y).statistic
        assert np.isnan(ref) and np.isnan(V.kendall_tau_b(x, y)) or np.isclose(V.kendall_tau_b(x, y), ref)
    main = pd.DataFrame({"dataset": "inspired", "system": list("ABCD"), "WI": [1, 2, 3, 4], "Cred": [1, 2, 3, 4]})
    swap = main.assign(WI=[4, 3, 2, 1], Cred=[1, 2, 4, 3])
    rows, notes = T.judge_swap_rows(main.assign(PRS=np.nan), swap.assign(PRS=[0.5, np.nan, np.nan, np.nan]), "o", TH)
    by = {r["metric"]: r for r in rows}
    assert by["WI"]["value"] == -1.0 and not by["WI"]["passed"]
    assert np.isclose(by["Cred"]["value"], 4 / 6) and by["Cred"]["passed"]
    assert "PRS" not in by and notes == ["judge swap (o), inspired: PRS measured for 0 system(s): no ranking"]


def test_independence_warns_when_one_model_plays_every_role():
    assert not V.independence_rows("qwen", "qwen", "qwen")[0]["passed"]
    assert V.independence_rows("qwen-1.5b", "qwen-1.5b", "qwen-0.5b")[0]["passed"]


def test_card_merge_replaces_a_section_and_round_trips(tmp_path):
    a = V.card_frame(V.rows("x", "judge", ["WI"], "m", 1, 0.5, True, 1) + V.rows("y", "user", [], "m", 0, 0, False, 1))
    b = V.card_frame(V.rows("y", "user", [], "m", 1, 0, False, 1))
    m = V.merge_card(a, b)
    assert m["check"].tolist() == ["x", "y"] and m["passed"].tolist() == [True, False]
    m.to_csv(tmp_path / "v.csv", index=False)
    back = V.read_card(tmp_path / "v.csv")
    assert back["metric"].tolist() == ["WI", ""] and back["passed"].tolist() == [True, False]
    assert "not valid at this scale): none" in V.card_markdown(a)
    assert "(not valid at this scale): WI" in V.card_markdown(
        V.card_frame(V.rows("x", "judge", ["WI"], "m", 0, 0.5, True, 1))
    )


def test_known_answer_variants_change_no_fact():
    p = K.claim_pairs(ITEMS, 5, 0)[0]
    r = p["true"]
    assert sorted(r.reordered().sentences) == sorted(r.sentences) and r.reordered().sentences[0] == r.sentences[1]
    pad = r.padded()
    assert len(pad.text) >= 2 * len(r.text) and pad.sentences[: len(r.sentences)] == r.sentences
    inv = K.invented_reply(r, p["item"], 0)
    assert inv.text.startswith(r.text.rsplit(" I think", 1)[0]) and "Academy Award" in inv.text
    # other wordings (held-out cases of bench/cred_known_answers.py) take the same place
    other = K.invented_reply(r, p["item"], 1, ("A.", "Shot on {title}'s set."))
    assert other.sentences == r.sentences[:-1] + (f"Shot on {p['item'].title}'s set.", r.sentences[-1])
    vague = K.vague_reply(p["item"], "Simply wonderful.")
    assert vague.sentences[1] == "Simply wonderful." and K.vague_reply(p["item"]).sentences[1] == K.VAGUE


def test_instruments_are_built_as_the_runs_build_them_and_thresholds_come_from_params():
    llms = {r: _authors_judge() for r in ("actor", "reasoner", "chooser", "rewarder", "simulator", "judge")}
    inst = V.instruments(ITEMS, llms, EngineConfig(simulator="agenda", reward="simulator", stop_threshold=0.8))
    assert isinstance(inst["simulator"], AgendaSimulator) and isinstance(inst["eval_rewarder"], SimulatorReward)
    assert isinstance(inst["llm_rewarder"], Rewarder) and inst["llm_rewarder"].stop_threshold == 0.8
    rows = V.rewarder_checks(inst["llm_rewarder"], _states(), ["Conv-SR"], TH)
    assert all(r["passed"] for r in rows)
    th = V.thresholds_from_params({"MIN_PAIR_ACCURACY": 0.75, "MAX_LEAK_RATE": 0, "OTHER": 1})
    assert th.min_pair_accuracy == 0.75 and th.max_leak_rate == 0.0 and th.max_flip_rate == TH.max_flip_rate


def test_the_card_figure_draws_every_check_once():
    from rso_lib import plots

    card = V.card_frame(
        V.rows("a", "judge", ["WI", "PRS"], "m", 0.95, 0.9, True, 5)
        + V.rows("b", "user", [], "m", float("nan"), 0.5, False, 0)
        + V.rows("c", "judge", ["Cred"], "m", -0.5, 0.6, True, 4)
    )
    fig = plots.fig_validity(card)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["judge | a [WI, PRS]", "user | b", "judge | c [Cred]"]
