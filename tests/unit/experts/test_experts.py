"""Unit tests of the micro-level experts (parsing, control flow, retrieval) with scripted LLMs
and a tiny hand-made catalogue. The real-model runs are in tests/unit/dialogue/test_engine.py (slow)."""

from __future__ import annotations

import pytest
from engine_fixtures import ITEMS, BagEmbedder

from rso_lib.data.records import RECOMMENDER, SEEKER, Turn
from rso_lib.experts.actor import Actor, ItemChooser, self_check_and_refine
from rso_lib.experts.prompts import ACCEPTANCE_ANSWERS, acceptance_prompt, actor_prompt, render_history
from rso_lib.experts.reasoner import PreferenceReasoner
from rso_lib.experts.retriever import FactRetriever, item_description
from rso_lib.experts.rewarder import (
    ACCEPTANCE_LEVELS,
    Rewarder,
    acceptance_values,
    parse_acceptance,
    score_acceptance,
    should_stop,
)
from rso_lib.llm.scripted import ScriptedLLM
from rso_lib.strategies import DESCRIPTIONS

H = [Turn(SEEKER, "Hi, I want a scary movie with aliens in space.")]


# ---------------------------------------------------------------- Rewarder (Eq. 9, acceptance scale)
STATE = H + [Turn(RECOMMENDER, "Try Alien (1979), a sci-fi horror classic."), Turn(SEEKER, "Who is in it?")]


def _levels(**p):
    """option_probs for the acceptance options 1-5 from level probabilities."""
    order = list(ACCEPTANCE_LEVELS)
    return lambda m, opts: [p.get(order[int(o) - 1], 0.0) for o in opts]


def test_acceptance_levels_are_the_authors_mapping_in_option_order():
    assert list(ACCEPTANCE_LEVELS.items()) == [
        ("no_recommendation", 0.6),
        ("not_interested", 0.4),
        ("rejected", 0.2),
        ("interested", 0.8),
        ("accepted", 1.0),
    ]
    # the prompt lists the five answers in the same order, and shows no target or facts
    text = acceptance_prompt(STATE)[1]["content"]
    pos = [text.index(a) for a in ACCEPTANCE_ANSWERS.values()]
    assert pos == sorted(pos) and "horror" not in text.split("Conversation:")[0]


def test_parse_acceptance_numbers_phrases_and_failures():
    got = [
        parse_acceptance(t) for t in ("Answer: 5", "3", "Answer: 9", "4.5 out of 5", "The seeker is not interested", "")
    ]
    assert got == ["accepted", "rejected", None, None, "not_interested", None]


def test_stop_rule_and_no_recommendation_rule():
    assert should_stop(0.8, 0.7) and not should_stop(0.7, 0.7) and not should_stop(None, 0.0)
    # a state with no recommended movie never passes tau, even if its reward would
    assert not should_stop(1.0, 0.7, recommended=False)


def test_rejecting_user_never_passes_tau():
    # every sample says "rejected" -> 0.2; a judge certain of rejection in expected mode -> 0.2
    for mode in ("sampled", "expected"):
        llm = ScriptedLLM(["Answer: 3"], option_probs=_levels(rejected=1.0))
        res = Rewarder(llm, mode=mode, samples=5, stop_threshold=0.7).score([STATE])
        assert res[0].reward == pytest.approx(0.2) and not res[0].stop
    # and no mix of rejection with "interested" / "no recommendation" answers passes either
    llm = ScriptedLLM(["Answer: 3", "Answer: 4", "Answer: 1"])
    res = Rewarder(llm, mode="sampled", samples=9).score([STATE])
    assert res[0].reward == pytest.approx((0.2 + 0.8 + 0.6) / 3) and not res[0].stop


def test_no_recommendation_state_never_passes_tau_even_if_the_judge_says_accepted():
    llm = ScriptedLLM(["Answer: 5"], option_probs=_levels(accepted=1.0))
    rw = Rewarder(llm, mode="sampled", samples=3, stop_threshold=0.7)
    res = rw.score([H, STATE], recommended=[False, True])
    assert res[0].reward == pytest.approx(ACCEPTANCE_LEVELS["no_recommendation"]) and not res[0].stop
    assert res[1].reward == pytest.approx(1.0) and res[1].stop
    assert len(llm.chat_calls[0][0]) == 1  # the judge is asked only about the state with a movie
    # with values where "no recommendation" is worth more than tau, the rule still holds
    vals = dict(ACCEPTANCE_LEVELS, no_recommendation=0.9)
    res = Rewarder(llm, mode="expected", values=vals, stop_threshold=0.7).score([H], recommended=[False])
    assert res[0].reward == pytest.approx(0.9) and not res[0].stop


def test_interested_passes_the_authors_tau_but_not_0_8():
    """Under the authors' mapping a unanimous 'interested' (0.8) passes tau = 0.7: documented in
    docs/protocol.md (STOP_THRESHOLD)."""
    llm = ScriptedLLM(["Answer: 4"])
    assert Rewarder(llm, mode="sampled", samples=4, stop_threshold=0.7).score([STATE])[0].stop
    for n in (3, 4, 10):  # 0.8 averaged 3 times is 0.8000000000000002 in floating point
        assert not Rewarder(llm, mode="sampled", samples=n, stop_threshold=0.8).score([STATE])[0].stop


def test_expected_mode_is_the_expected_value_one_batched_pass():
    llm = ScriptedLLM(option_probs=_levels(interested=0.5, accepted=0.5))
    res = Rewarder(llm, mode="expected", stop_threshold=0.85).score([STATE, STATE])
    assert len(llm.score_calls) == 1 and len(llm.score_calls[0][0]) == 2
    assert llm.score_calls[0][1] == ["1", "2", "3", "4", "5"]
    assert [r.reward for r in res] == pytest.approx([0.9, 0.9]) and all(r.stop for r in res)


def test_sampled_counts_unparseable_and_never_invents():
    llm = ScriptedLLM(["Answer: 5", "no idea", "Answer: 4"])
    res = Rewarder(llm, mode="sampled", samples=3).score([STATE], seed=1)
    assert llm.chat_calls[0][1].n == 3 and llm.chat_calls[0][1].temperature == pytest.approx(1.1)
    assert res[0].reward == pytest.approx(0.9) and res[0].parse_failures == 1
    assert res[0].levels == {"interested": 1, "accepted": 1} and not res[0].fallback
    # no sample parses: one scoring pass instead, flagged, failures still counted
    llm = ScriptedLLM(["hmm", "Answer: 9"], option_probs=_levels(interested=1.0))
    sc = score_acceptance(llm, [STATE, STATE], mode="sampled", samples=4)
    assert sc.rewards == pytest.approx([0.8, 0.8]) and sc.fallback == [True, True]
    assert sc.parse_failures == [4, 4] and len(llm.score_calls) == 1


def test_acceptance_values_are_checked():
    with pytest.raises(ValueError, match="missing"):
        acceptance_values({"accepted": 1.0})
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        acceptance_values(dict(ACCEPTANCE_LEVELS, accepted=2))


def test_rewarder_rejects_unknown_mode():
    with pytest.raises(ValueError, match="unknown mode"):
        Rewarder(ScriptedLLM(), mode="median")


# ---------------------------------------------------------------- chooser
def test_chooser_letters_one_call_and_masks_absent_candidates():
    probs = {"A": 0.1, "B": 0.1, "C": 0.8}
    llm = ScriptedLLM(option_probs=lambda m, opts: [probs.get(o, 0.0) + 1e-9 for o in opts])
    ch = ItemChooser(llm, mode="letters", allow_none=False).choose([H, H], ["", ""], [ITEMS[:3], ITEMS[:2]])
    assert len(llm.score_calls) == 1 and llm.score_calls[0][1] == ["A", "B", "C"]
    assert ch[0].item_id == "3"  # C
    assert ch[1].item_id in {"1", "2"} and sum(ch[1].probs) == pytest.approx(1.0) and len(ch[1].probs) == 2


def test_chooser_may_recommend_nothing_yet():
    """The "none of these yet" option follows the candidates (its letter after the longest list);
    picking it is an abstention, not a parse failure."""
    probs = {"A": 0.2, "B": 0.1, "C": 0.05, "D": 0.65}
    llm = ScriptedLLM(option_probs=lambda m, opts: [probs.get(o, 0.0) + 1e-9 for o in opts])
    ch = ItemChooser(llm, mode="letters").choose([H, H], ["", ""], [ITEMS[:3], ITEMS[:2]])
    assert llm.score_calls[0][1] == ["A", "B", "C", "D"]
    assert "D. None of these yet" in llm.score_calls[0][0][1][-1]["content"]  # row 2 lists A, B, then D
    assert [c.item_id for c in ch] == [None, None] and all(c.abstained and not c.parse_failure for c in ch)
    gen = ItemChooser(ScriptedLLM(["D. none of these yet", "B"]), mode="generate").choose(
        [H, H], ["", ""], [ITEMS[:3]] * 2
    )
    assert gen[0].abstained and gen[0].item_id is None and gen[1].item_id == "2"


def test_actor_modes_recommend_ask_or_own_knowledge():
    from rso_lib.experts.prompts import actor_prompt

    ask = actor_prompt(H, "Ask the user.", "likes horror", [], None, mode="ask")[-1]["content"]
    assert "Do not recommend a movie yet" in ask and "Movie to recommend" not in ask
    own = actor_prompt(H, None, "", [], None, mode="own")[-1]["content"]
    assert "recommend one movie by its title" in own and "Facts" not in own and "Movies you could" not in own
    item = actor_prompt(H, None, "", ["Alien (1979): horror"], "Alien (1979)")[-1]["content"]
    assert "mention Alien (1979) by name" in item and "- Alien (1979): horror" in item
    with pytest.raises(ValueError, match="unknown mode"):
        actor_prompt(H, None, "", [], None, mode="shout")


def test_chooser_generate_non_candidate_is_parse_failure():
    llm = ScriptedLLM(["B. Notting Hill", "I'd go with Heat (1995).", "Titanic, obviously"])
    ch = ItemChooser(llm, mode="generate", allow_none=False).choose([H] * 3, [""] * 3, [ITEMS[:3]] * 3)
    assert [c.item_id for c in ch] == ["2", "3", None]
    assert [c.parse_failure for c in ch] == [0, 0, 1] and ch[2].raw == "Titanic, obviously"


# ---------------------------------------------------------------- reasoner / actor
def test_reasoner_batches_and_counts_empty():
    llm = ScriptedLLM(["The user wants a sci-fi horror movie.\n\nExtra rambling.", "   "])
    prefs, fails = PreferenceReasoner(llm).infer([H, H], ["likes aliens", ""])
    assert len(llm.chat_calls) == 1
    assert prefs == ["The user wants a sci-fi horror movie.", ""] and fails == [0, 1]
    assert "likes aliens" in llm.chat_calls[0][0][0][-1]["content"]  # previous summary is updated


def test_actor_prompt_carries_strategy_preference_facts_item():
    m = actor_prompt(H, DESCRIPTIONS["credibility"], "wants horror", [ITEMS[0].facts()], ITEMS[0].name)
    text = m[-1]["content"]
    for part in (
        DESCRIPTIONS["credibility"],
        "wants horror",
        "Ridley" if "Ridley" in ITEMS[0].facts() else "Alien (1979)",
        "User: Hi, I want a scary movie",
    ):
        assert part in text
    bare = actor_prompt(H, None, "", [], None, ["Alien (1979)", "Heat (1995)"])[-1]["content"]
    assert "How to reply" not in bare and "Facts" not in bare and "Heat (1995)" in bare


def test_actor_reply_batched_seeded_and_flags_empty():
    llm = ScriptedLLM(["You should watch Alien!", ""])
    replies, empty = Actor(llm).reply([H, H], [None, None], ["", ""], [[], []], ["Alien (1979)", None], seed=5)
    assert replies == ["You should watch Alien!", ""] and empty == [0, 1]
    assert len(llm.chat_calls) == 1 and llm.chat_calls[0][1].seed == 5


def test_self_check_refines_at_most_rounds():
    always_no = ScriptedLLM(["rewritten"], option_probs=lambda m, o: [0.1, 0.9])
    out, n = self_check_and_refine(always_no, [H, H], ["a", "b"], [["f"], ["f"]], [None, None], rounds=2)
    assert out == ["rewritten", "rewritten"] and n == [2, 2]
    assert len(always_no.score_calls) == 2 and len(always_no.chat_calls) == 2  # batched per round
    always_yes = ScriptedLLM(["x"], option_probs=lambda m, o: [0.9, 0.1])
    out, n = self_check_and_refine(always_yes, [H], ["draft"], [["f"]], [None], rounds=2)
    assert out == ["draft"] and n == [0] and not always_yes.chat_calls


def test_render_history_keeps_last_turns():
    turns = [Turn(SEEKER if i % 2 == 0 else RECOMMENDER, f"t{i}") for i in range(10)]
    r = render_history(turns, max_turns=3)
    assert r.splitlines() == ["Assistant: t7", "User: t8", "Assistant: t9"]


# ---------------------------------------------------------------- retriever (Eq. 4)
def test_retriever_ranks_and_returns_facts(tmp_path):
    emb = BagEmbedder()
    r = FactRetriever(ITEMS, emb, embedder_name="bag", cache_dir=tmp_path, top_k=2, rank_n=4)
    assert item_description(ITEMS[0]).startswith("Alien (1979). Genres: horror, sci-fi")
    res = r.retrieve(
        [H, [Turn(SEEKER, "a funny romance about love with a famous actress in London")]], ["", "comedy romance"]
    )
    assert emb.calls == 2  # index build + ONE batch for both queries
    assert res[0].item_ids[0] == "1" and res[1].item_ids[0] == "2"
    assert len(res[0].ranking) == 4 and res[0].ranking[:2] == res[0].item_ids
    assert res[0].facts[0] == ITEMS[0].facts() and res[0].scores[0] >= res[0].scores[1]


def test_retriever_index_cache_keyed_by_catalogue(tmp_path):
    FactRetriever(ITEMS, BagEmbedder(), embedder_name="bag", cache_dir=tmp_path)
    emb = BagEmbedder()
    again = FactRetriever(ITEMS, emb, embedder_name="bag", cache_dir=tmp_path)
    assert again.loaded_from_cache and emb.calls == 0
    changed = FactRetriever(ITEMS[:4], BagEmbedder(), embedder_name="bag", cache_dir=tmp_path)
    other_emb = FactRetriever(ITEMS, BagEmbedder(), embedder_name="bag2", cache_dir=tmp_path)
    assert not changed.loaded_from_cache and not other_emb.loaded_from_cache
    assert len({again.cache_key, changed.cache_key, other_emb.cache_key}) == 3
