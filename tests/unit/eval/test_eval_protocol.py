"""Issue 20's evaluation rules on constructed dialogues, with scripted judges and a word-overlap
stand-in for the embedding ranker: every dialogue counted (Cred 0 without a judged turn, WI on the
most similar candidate), PRS judged on the recommender's words, the PRS exclusion rule, Dist-2
both ways, Recall@k on a catalogue ranking, and the rule counts in the table."""

import re

import numpy as np
import pytest
from eval_support import KB, WordRanker, _judge, _rows, _turn, _write

from rso_lib.eval import judges as J
from rso_lib.eval import metrics as M
from rso_lib.eval.evaluate import EvalConfig, evaluate_system, judged_items, recall_rankings
from rso_lib.eval.tables import metrics_table
from rso_lib.eval.transcripts import read_transcript
from rso_lib.llm.scripted import ScriptedLLM


def _dialogues(tmp_path, *dialogues):
    return read_transcript(_write(tmp_path / "t.jsonl", list(dialogues)))


# ------------------------------------------------------------------ every dialogue counted ---


def test_no_item_dialogue_counts_zero_in_cred(tmp_path):
    ds = _dialogues(
        tmp_path,
        _rows("d1", True, [_turn("Alien is a horror film by Ridley Scott.", chosen="m1", retrieved=["m1"])]),
        _rows("d2", False, [_turn("What kind of movie do you like?", retrieved=["m2", "m1"], mentioned=None)]),
    )
    zero = evaluate_system(ds, KB, _judge(), EvalConfig(), ranker=WordRanker(KB))
    assert zero.row["Cred"] == pytest.approx((3 + 0) / 2) and zero.row["Cred_n"] == 2
    assert zero.row["Cred_zero_no_item"] == 1 and zero.row["Cred_judged"] == 1
    assert list(zero.per_dialogue["cred_rule"]) == ["judged", "no_item"]
    # the other declared rule: the mean over the judged dialogues only, and the count says so
    excl = evaluate_system(ds, KB, _judge(), EvalConfig(cred_no_item="exclude"), ranker=WordRanker(KB))
    assert excl.row["Cred"] == pytest.approx(3.0) and excl.row["Cred_n"] == 1


def test_unparsed_turns_alone_count_zero_like_the_authors():
    assert M.dialogue_credibility([None, None]) == (0.0, "unparsed")
    assert M.dialogue_credibility([4.0, None]) == (4.0, "judged")
    assert M.dialogue_credibility([]) == (0.0, "no_item")
    assert M.dialogue_credibility([], "exclude") == (None, "no_item")
    with pytest.raises(ValueError):
        M.dialogue_credibility([], "drop")


def test_wi_is_judged_on_the_most_similar_candidate(tmp_path):
    """No item presented: the judged item is the candidate closest to the last exchanges -- Alien
    when the talk is of a scary creature, Airplane! when it is of a panicking pilot."""
    scary = _rows(
        "d1", False, [_turn("Do you like a scary creature and a crew?", retrieved=["m2", "m1"], mentioned=None)]
    )
    funny = _rows("d2", False, [_turn("Do you like a pilot who panics?", retrieved=["m1", "m2"], mentioned=None)])
    ds = _dialogues(tmp_path, scary, funny)
    ranker = WordRanker(KB)
    assert judged_items(ds, KB, "most_similar", ranker) == [("m1", "most_similar"), ("m2", "most_similar")]
    judge = _judge()
    ev = evaluate_system(ds, KB, judge, EvalConfig(), ranker=ranker)
    assert list(ev.per_dialogue["judged_item"]) == ["m1", "m2"]
    assert ev.row["WI_n"] == 2 and ev.row["WI_on_similar"] == 2  # both dialogues in the WI mean
    # the judge was asked about those items (pre: the title only)
    pre = [m[-1]["content"] for m in judge.score_calls[0][0]]
    assert "Alien" in pre[0] and "Airplane!" in pre[1]
    # the query is the last two exchanges, both sides (the authors' persuasiveness scripts)
    assert (
        ranker.queries[0].startswith("Recommender: Do you like a scary creature") and "Seeker: ok" in ranker.queries[0]
    )


def test_presented_rule_and_catalogue_fallback(tmp_path):
    ds = _dialogues(
        tmp_path,
        _rows("d1", True, [_turn("Heat is a crime drama.", chosen="m1", retrieved=["m1", "m3"], mentioned="m3")]),
        _rows("d2", False, [_turn("Tell me about a heist.", retrieved=[], mentioned=None)]),  # no candidate
    )
    got = judged_items(ds, KB, "presented", WordRanker(KB))
    assert got == [("m3", "presented"), ("m3", "catalogue")]  # "heist" -> Heat's plot
    assert judged_items(ds, KB, "presented", None)[1] == (None, "none")  # no ranker: counted, not guessed


# ---------------------------------------------------------------------------------- PRS -------


def _content_judge():
    """A scripted judge whose ratings follow the prompt content: the title alone gives 2, the full
    record 5 (credibility: 3); after the recommender's words, 2 + one point per fact of Alien it states (genre,
    director, plot), and +1 if the evidence contains the user's "I'll watch it"."""

    def probs(messages, options):
        t = messages[-1]["content"]
        if "fact-checker" in messages[0]["content"]:
            want = 3
        elif "its title" in t:
            want = 2
        elif "everything about the movie" in t:
            want = 5
        else:
            said = t.split("---")[1].lower()
            facts = sum(w in said for w in ("horror", "ridley scott", "creature"))
            want = min(5, 2 + facts + ("i'll watch it" in said))
        return np.eye(5)[want - 1]

    return ScriptedLLM(option_probs=probs)


def _prs_dialogue(did, reply, user_reply="I'll watch it!"):
    rows = _rows(did, True, [_turn(reply, chosen="m1", retrieved=["m1"])])
    rows[-1]["user_reply"] = user_reply
    return rows


def test_persuasive_truthful_explanation_beats_title_only(tmp_path):
    ds = _dialogues(
        tmp_path,
        _prs_dialogue("explained", "Watch Alien, a horror film by Ridley Scott: a crew meets a creature."),
        _prs_dialogue("title", "Watch Alien."),
    )
    ev = evaluate_system(ds, KB, _content_judge(), EvalConfig(judge_item="presented"), ranker=WordRanker(KB))
    prs = dict(zip(ev.per_dialogue["dialog_id"], ev.per_dialogue["prs"]))
    assert prs["explained"] == pytest.approx(1.0)  # post 5 = true 5
    assert prs["title"] == pytest.approx(0.0)  # post 2 = pre 2: not persuaded at all
    assert ev.row["PRS_n"] == 2


def test_users_own_acceptance_is_no_evidence(tmp_path):
    """With the recommender's words only (PC-CRS), the simulated user's "I'll watch it" does not
    lift the post intention; with the whole dialogue (the authors) it does."""
    ds = _dialogues(tmp_path, _prs_dialogue("title", "Watch Alien."))
    rec = evaluate_system(ds, KB, _content_judge(), EvalConfig(judge_item="presented"), ranker=WordRanker(KB))
    both = EvalConfig(judge_item="presented", post_evidence="dialogue")
    dia = evaluate_system(ds, KB, _content_judge(), both, ranker=WordRanker(KB))
    assert rec.per_dialogue["i_post"].iloc[0] == pytest.approx(2.0)
    assert dia.per_dialogue["i_post"].iloc[0] == pytest.approx(3.0)


def test_prs_exclusion_rule_pre_equals_true_only():
    """Excluded only where pre equals true (integer ratings: exact equality); post above true is
    counted apart; post below pre is a negative PRS, kept."""
    assert M.persuasiveness(3, 4, 3).status == M.PRS_OVER  # checked first, as PC-CRS
    assert M.persuasiveness(3, 3, 3).status == M.PRS_EXCLUDED
    assert M.persuasiveness(4, 2, 5).value == pytest.approx(1 - 3 / 1)  # moved away: kept, negative
    assert M.persuasiveness(4, 4, 5).status == M.PRS_OK  # a gap of 1 is not "equal"

    def probs(m, o):  # pre = true = 4 for every case
        t = m[-1]["content"]
        return np.eye(5)[(3 if "recommender said" in t else 4) - 1]

    case = J.IntentionCase("p", ("horror",), KB.get("m1"), "Recommender: Alien.")
    out = J.judge_prs(ScriptedLLM(option_probs=probs), [case, case])
    assert [c.status for c in out.cases] == [M.PRS_EXCLUDED, M.PRS_EXCLUDED]


# ------------------------------------------------------------------------------ Dist-2 --------


def test_dist2_both_ways_on_a_known_corpus():
    """Two replies: "a b a b" (bigrams ab, ba, ab: 2 distinct of 3) and "a b c" (ab, bc: 2 of 2).
    Per response: (2/3 + 1) / 2 = 5/6. Corpus: distinct {ab, ba, bc} = 3 of 5 bigrams = 0.6."""
    texts = ["a b a b", "a b c", "x"]  # "x" has no bigram: skipped in the per-response mean
    assert M.dist2(texts, "per_response") == pytest.approx(5 / 6)
    assert M.dist2(texts, "corpus") == pytest.approx(3 / 5)
    pr = M.distinct_n_per_response(texts)
    assert pr.responses == 2 and pr.skipped == 1
    with pytest.raises(ValueError):
        M.dist2(texts, "sentence")


def test_repeated_template_replies_split_the_definitions():
    """The same 10-bigram reply 50 times: each reply on its own is fully diverse (1.0), the corpus
    is not (10 / 500) -- why the paper's 0.99+ values imply the per-response mean."""
    reply = " ".join(f"w{i}" for i in range(11))
    assert M.dist2([reply] * 50, "per_response") == pytest.approx(1.0)
    assert M.dist2([reply] * 50, "corpus") == pytest.approx(10 / 500)


# ------------------------------------------------------------------------------ Recall@k ------


def test_recall_at_k_ranks_the_catalogue_for_prompt_only_systems(tmp_path):
    """A system with no ranking of its own (retrieved = []) that named Airplane! to a user who
    wants horror after saying they like creatures: ranked only over its named titles it has no
    hit; on PC-CRS's catalogue ranking (last two utterances before its last reply) Alien is first."""
    rows = _rows(
        "d1",
        False,
        [
            _turn("What do you like?", retrieved=[], mentioned=None),
            _turn("Try Airplane!", retrieved=[], mentioned="m2"),
        ],
    )
    rows[0]["user_reply"] = "I like a creature that hunts a crew."
    ds = _dialogues(tmp_path, rows)
    ranker = WordRanker(KB)
    ((ranking, source),) = recall_rankings(ds, "catalogue", ranker)
    assert source == "catalogue" and ranking[0] == "m1" and sorted(ranking) == ["m1", "m2", "m3"]
    assert ranker.queries == ["assistant: What do you like? user: I like a creature that hunts a crew."]
    cat = evaluate_system(ds, KB, None, EvalConfig(), ranker=WordRanker(KB))
    named = evaluate_system(ds, KB, None, EvalConfig(recall_ranking="named"), ranker=WordRanker(KB))
    assert cat.row["Recall@1"] == 1.0 and cat.row["Recall_catalogue"] == 1
    assert named.row["Recall@1"] == 0.0 and named.row["Recall_named"] == 1


def test_own_ranking_is_kept(tmp_path):
    ds = _dialogues(tmp_path, _rows("d1", False, [_turn("Heat!", chosen="m3", retrieved=["m3", "m1"])]))
    assert recall_rankings(ds, "catalogue", WordRanker(KB)) == [(["m3", "m1"], "own")]


# ------------------------------------------------------------------------------ table ---------


def test_table_prints_how_many_dialogues_took_each_rule(tmp_path):
    ds = _dialogues(
        tmp_path,
        _rows("d1", True, [_turn("Alien is a horror film.", chosen="m1", retrieved=["m1", "m3"])]),
        _rows("d2", False, [_turn("Do you like a pilot who panics?", retrieved=["m1", "m2"], mentioned=None)]),
        _rows("d3", False, [_turn("Tell me about a heist.", retrieved=[], mentioned=None)]),
    )
    ev = evaluate_system(ds, KB, _judge(), EvalConfig(judge_item="presented"), ranker=WordRanker(KB))
    t = metrics_table([ev], paper_table="none").iloc[0]
    assert (t["WI_on_presented"], t["WI_on_similar"], t["WI_on_catalogue"], t["WI_unjudged"]) == (1, 1, 1, 0)
    assert (t["Cred_judged"], t["Cred_zero_no_item"]) == (1, 2)
    assert (t["Recall_own"], t["Recall_catalogue"]) == (2, 1)
    assert t["WI_n"] == 3 and t["Cred_n"] == 3  # every dialogue in both means
    assert t["Dist-2_definition"] == "per_response" and t["judge_mode"] == "score"


def test_eval_config_rejects_unknown_rules():
    for kw in ({"judge_item": "first"}, {"cred_no_item": "drop"}, {"post_evidence": "user"}, {"dist2": "x"}):
        with pytest.raises(ValueError, match=re.escape(next(iter(kw)))):
            EvalConfig(**kw)


# ------------------------------------------------------------------ RetrieverRanker -----------


class _HashEmbedder:
    """Bag-of-words vectors (64 hashed dims, unit norm): enough for the retriever's faiss index."""

    def encode(self, texts, **kw):
        import zlib

        out = np.zeros((len(texts), 64), dtype=np.float32)
        for k, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", t.lower()):
                out[k, zlib.crc32(w.encode()) % 64] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_retriever_ranker_on_a_real_index():
    """The ranker the notebooks use, over a FactRetriever index: built only on first use, the most
    similar candidate and the catalogue ranking follow the item texts."""
    from rso_lib.eval.similarity import RetrieverRanker
    from rso_lib.experts.retriever import FactRetriever

    built = []

    def make():
        built.append(1)
        return FactRetriever(KB.items.values(), _HashEmbedder(), embedder_name="hash", rank_n=3)

    r = RetrieverRanker(make)
    assert not built  # lazy
    got = r.most_similar(["a creature meets a crew, horror", "a pilot panics"], [["m2", "m1"], ["m1", "m2"]])
    assert got == ["m1", "m2"] and built == [1]
    assert r.most_similar(["x"], [["m3"]]) == ["m3"]  # one candidate: no similarity needed
    (ranking,) = r.rank_catalogue(["a heist, crime drama"])
    assert ranking[0] == "m3" and sorted(ranking) == ["m1", "m2", "m3"]


def test_eval_config_from_notebook_parameters():
    """What notebooks 04/06/07 build from their parameters cell (profile values reach EvalConfig;
    a name the notebook does not declare keeps the default)."""
    from rso_lib import run
    from rso_lib.experiments import eval_config_from_params

    params = run.declared_parameters(run.notebooks()[0].parent / "04_eval_tables.ipynb")
    cfg = eval_config_from_params({**params, "JUDGE_MODE": "reasoned", "DIST2": "corpus", "JUDGE_MAX_TOKENS": 200})
    assert cfg.judge.mode == "reasoned" and cfg.judge.reasoned_max_tokens == 200 and cfg.dist2 == "corpus"
    assert cfg.judge_item == params["JUDGE_ITEM"] and cfg.recall_ranking == params["RECALL_RANKING"]
    assert eval_config_from_params({"SEED": 3}).judge.seed == 3
    with pytest.raises(ValueError, match="judge_item"):
        eval_config_from_params({"JUDGE_ITEM": "first"})


def test_prs_intentions_parameter_reaches_the_evaluation():
    from rso_lib.eval.evaluate import EvalConfig
    from rso_lib.experiments import eval_config_from_params

    assert eval_config_from_params({"PRS_INTENTIONS": "expected"}).prs_intentions == "expected"
    assert eval_config_from_params({}).prs_intentions == "whole"  # the authors' rule by default
    with pytest.raises(ValueError, match="prs_intentions"):
        EvalConfig(prs_intentions="rounded")
