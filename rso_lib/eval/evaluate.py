"""Evaluate one system's dialogues: judged metrics through :mod:`judges`, the rest from the
transcripts, aggregated by :mod:`metrics` into one table row.

Every dialogue is counted (issue 20, following the authors' evaluation scripts where the paper is
silent), by rules that are parameters (:class:`EvalConfig`) and whose use the row counts:

* **the judged item** (WI and PRS): ``judge_item="most_similar"`` (the authors'
  ``persuasiveness_*`` scripts) -- the candidate most similar to the last two exchanges, among
  every item the system was offered or presented; ``"presented"`` -- the accepted item, else the
  last presented one, and only a dialogue without one falls back to the most similar candidate.
  A dialogue with no candidate at all is judged on the catalogue's most similar item. Counts:
  ``WI_on_presented``, ``WI_on_similar``, ``WI_on_catalogue`` (``WI_unjudged``: no ranker given).
* **Cred**: a dialogue with no judged turn (no presented item) counts 0 in the average
  (``cred_no_item="zero"``, the authors' ``credibility_*`` scripts); counts ``Cred_judged``,
  ``Cred_zero_no_item``, ``Cred_zero_unparsed``.
* **the post-dialogue evidence** (WI and PRS's ``i_post``): ``post_evidence="recommender"`` --
  what the recommender said (PC-CRS), so the simulated user's own "I'll watch it" is no evidence;
  ``"dialogue"`` -- both sides (the authors).
* **Recall@k**: a system with its own ranking is read from it; one without
  (``recall_ranking="catalogue"``, PC-CRS's ChatGPT / Llama CRSs) gets the catalogue ranked by
  the similarity of the last two utterances before its last reply; ``"named"`` ranks only the
  titles it named. Counts: ``Recall_own``, ``Recall_catalogue``, ``Recall_named``.
* **Dist-2**: ``dist2="per_response"`` (the paper's values) or ``"corpus"``; the row names it in
  ``Dist-2_definition`` and carries both.

The knowledge base only needs ``get(item_id) -> Item | None`` and ``covers(item_id, genres) ->
bool`` (``rso_lib.data.kb.KnowledgeBase`` provides both); the ranker is an
:class:`rso_lib.eval.similarity.ItemRanker`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from rso_lib.data.records import Item
from rso_lib.eval import judges as J
from rso_lib.eval import metrics as M
from rso_lib.eval.similarity import ItemRanker, judged_item_query, ranking_query
from rso_lib.eval.transcripts import EvalDialogue
from rso_lib.llm import clear_prefix_caches
from rso_lib.llm.protocol import ChatLLM

# Table IV's metrics in the paper's order, then Table V's, then the simulator's acceptance rate
# (Accept-SR: ours, kept apart from the paper's evaluator-defined Conv-SR).
METRICS = ("WI", "PRS", "Cred", "Conv-SR", "Dist-2", "Rec-SR", "Recall@1", "Recall@5", "Accept-SR")

JUDGE_ITEM_RULES = ("most_similar", "presented")
POST_EVIDENCE = ("recommender", "dialogue")
RECALL_RANKINGS = ("catalogue", "named")


class KBLike(Protocol):
    def get(self, item_id: str) -> Item | None: ...
    def covers(self, item_id: str, genres) -> bool: ...


@dataclass(frozen=True)
class EvalConfig:
    """How dialogues are scored (the notebooks' evaluation parameters; see the module doc).

    Args:
        judge: how each judgement is made (``JUDGE_MODE`` ...).
        judge_item: ``JUDGE_ITEM``: ``"most_similar"`` (authors) | ``"presented"``.
        cred_no_item: ``CRED_NO_ITEM``: ``"zero"`` (authors) | ``"exclude"``.
        post_evidence: ``POST_EVIDENCE``: ``"recommender"`` (PC-CRS) | ``"dialogue"`` (authors).
        prs_min_gap: ``PRS_MIN_GAP``: ``i_pre`` and ``i_true`` closer than this are "equal"
            (PRS undefined; 0.5 = exact equality for whole ratings).
        prs_intentions: ``PRS_INTENTIONS``: ``"whole"`` (authors: greedy-decoded whole ratings;
            expected ratings rounded) | ``"expected"`` (score mode's values as they are).
        recall_ranking: ``RECALL_RANKING``: ``"catalogue"`` (PC-CRS) | ``"named"``.
        dist2: ``DIST2``: ``"per_response"`` (the paper's values) | ``"corpus"``.
    """

    judge: J.JudgeConfig = J.JudgeConfig()
    judge_item: str = "most_similar"
    cred_no_item: str = "zero"
    post_evidence: str = "recommender"
    prs_min_gap: float = 0.5
    prs_intentions: str = "whole"
    recall_ranking: str = "catalogue"
    dist2: str = "per_response"

    def __post_init__(self):
        for name, value, allowed in (
            ("judge_item", self.judge_item, JUDGE_ITEM_RULES),
            ("cred_no_item", self.cred_no_item, M.CRED_NO_ITEM_RULES),
            ("post_evidence", self.post_evidence, POST_EVIDENCE),
            ("prs_intentions", self.prs_intentions, M.PRS_INTENTIONS),
            ("recall_ranking", self.recall_ranking, RECALL_RANKINGS),
            ("dist2", self.dist2, M.DIST2_DEFINITIONS),
        ):
            if value not in allowed:
                raise ValueError(f"EvalConfig.{name} must be one of {allowed}, got {value!r}")
        if self.prs_min_gap < 0:
            raise ValueError("EvalConfig.prs_min_gap must be >= 0")


@dataclass
class SystemEval:
    system: str
    dataset: str
    per_dialogue: pd.DataFrame  # one row per dialogue: intentions, PRS case, cred, successes, rules
    row: dict[str, Any]  # the aggregated table row (means, CIs, counts)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


def judged_items(
    dialogues: Sequence[EvalDialogue], kb: KBLike, rule: str, ranker: ItemRanker | None
) -> list[tuple[str | None, str]]:
    """``(item id, how)`` per dialogue: the item WI and PRS are judged on, ``how`` one of
    ``"presented"``, ``"most_similar"``, ``"catalogue"``, ``"none"`` (no ranker to fall back on)."""
    out: list[tuple[str | None, str] | None] = [None] * len(dialogues)
    sim_idx, cat_idx = [], []
    for k, d in enumerate(dialogues):
        rec = d.recommended_item
        if rule == "presented" and rec and kb.get(rec) is not None:
            out[k] = (rec, "presented")
        elif any(kb.get(c) is not None for c in d.candidates):
            sim_idx.append(k)
        else:
            cat_idx.append(k)
    cands = [[c for c in dialogues[k].candidates if kb.get(c) is not None] for k in sim_idx]
    if ranker is None:
        # one candidate needs no similarity; several without a ranker cannot be decided
        for k, c in zip(sim_idx, cands):
            out[k] = (c[0], "most_similar") if len(c) == 1 else (None, "none")
        for k in cat_idx:
            out[k] = (None, "none")
        return out  # type: ignore[return-value]
    best = ranker.most_similar([judged_item_query(dialogues[k]) for k in sim_idx], cands)
    for k, b in zip(sim_idx, best):
        out[k] = (b, "most_similar")
    tops = ranker.rank_catalogue([judged_item_query(dialogues[k]) for k in cat_idx])
    for k, ranking in zip(cat_idx, tops):
        item = next((i for i in ranking if kb.get(i) is not None), None)
        out[k] = (item, "catalogue" if item else "none")
    return out  # type: ignore[return-value]


def recall_rankings(
    dialogues: Sequence[EvalDialogue], rule: str, ranker: ItemRanker | None
) -> list[tuple[list[str], str]]:
    """``(ranking, source)`` per dialogue for Recall@k: ``"own"`` (the system's last retrieval
    ranking), ``"catalogue"`` (PC-CRS: the catalogue by similarity to the last two utterances
    before the system's last reply), ``"named"`` (the titles it named), ``"none"``."""
    out: list[tuple[list[str], str] | None] = [None] * len(dialogues)
    need = []
    for k, d in enumerate(dialogues):
        own = d.own_ranking
        if own:
            out[k] = (own, "own")
        elif rule == "catalogue" and ranker is not None and d.turns:
            need.append(k)
        else:
            named = d.named_items
            out[k] = (named, "named" if named else "none")
    for k, ranking in zip(need, ranker.rank_catalogue([ranking_query(dialogues[k]) for k in need]) if need else []):
        out[k] = (ranking, "catalogue")
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Judging
# --------------------------------------------------------------------------------------------


def judge_dialogues(
    dialogues: Sequence[EvalDialogue],
    kb: KBLike,
    judge: ChatLLM,
    cfg: EvalConfig = EvalConfig(),
    ranker: ItemRanker | None = None,
) -> pd.DataFrame:
    """The three intentions of every dialogue (on its judged item, :func:`judged_items`) and the
    credibility of every system turn that presents a known item, in four batched passes (pre,
    post, true, cred). Returns one row per dialogue: ``dialog_id, judged_item, judged_item_rule,
    i_pre, i_post, i_true, cred, cred_rule, cred_turns, cred_missing``."""
    clear_prefix_caches(judge)  # judged numbers depend on this call only, not on earlier prompts
    jc = cfg.judge
    items = judged_items(dialogues, kb, cfg.judge_item, ranker)
    idx, cases = [], []
    for k, (d, (iid, _)) in enumerate(zip(dialogues, items)):
        item = kb.get(iid) if iid else None
        if item is None:
            continue
        evidence = J.dialogue_text(d.turns, jc.max_dialogue_chars, include_user=cfg.post_evidence == "dialogue")
        idx.append(k)
        cases.append(J.IntentionCase(d.persona, tuple(d.target_genres), item, evidence))
    prs = J.judge_prs(judge, cases, cfg=jc, min_gap=cfg.prs_min_gap, intentions=cfg.prs_intentions)
    i_pre, i_post, i_true = ([None] * len(dialogues) for _ in range(3))
    for j, k in enumerate(idx):
        i_pre[k], i_post[k], i_true[k] = prs.pre.scores[j], prs.post.scores[j], prs.true.scores[j]

    owners, cred_cases = [], []
    for k, d in enumerate(dialogues):
        for t in d.turns:
            item = kb.get(t.presented_item) if t.presented_item else None
            if item is not None and t.reply.strip():
                owners.append(k)
                cred_cases.append(J.CredCase(t.reply, item))
    cred = J.judge_cred(judge, cred_cases, cfg=jc)
    per_turn: list[list[float | None]] = [[] for _ in dialogues]
    for k, v in zip(owners, cred.scores):
        per_turn[k].append(v)

    rows = []
    for k, d in enumerate(dialogues):
        value, rule = M.dialogue_credibility(per_turn[k], cfg.cred_no_item)
        rows.append(
            {
                "dialog_id": d.dialog_id,
                "judged_item": items[k][0],
                "judged_item_rule": items[k][1],
                "i_pre": i_pre[k],
                "i_post": i_post[k],
                "i_true": i_true[k],
                "cred": value,
                "cred_rule": rule,
                "cred_turns": len(per_turn[k]),
                "cred_missing": sum(v is None for v in per_turn[k]),
            }
        )
    df = pd.DataFrame(rows)
    df.attrs["judge_parse_failures"] = prs.parse_failures + cred.parse_failures
    df.attrs["judge_requests"] = prs.requests + cred.requests
    return df


# --------------------------------------------------------------------------------------------
# One system
# --------------------------------------------------------------------------------------------

_EMPTY_COLUMNS = (
    "dialog_id",
    "turns",
    "conv_success",
    "accepted",
    "rec_success",
    "recall@1",
    "recall@5",
    "recall_source",
    "engine_parse_failures",
)
_JUDGED_COLUMNS = ("judged_item", "judged_item_rule", "i_pre", "i_post", "i_true", "cred", "cred_rule")


def _base_rows(dialogues, kb, cfg: EvalConfig, ranker) -> tuple[pd.DataFrame, int]:
    """Per-dialogue values that need no judge; and how many recommended ids the KB lacks."""
    base, unknown = [], 0
    rankings = recall_rankings(dialogues, cfg.recall_ranking, ranker)
    for d, (ranking, source) in zip(dialogues, rankings):
        rec = d.recommended_item
        rec_item = kb.get(rec) if rec else None
        unknown += bool(rec and rec_item is None)
        genres = d.target_genres
        base.append(
            {
                "dialog_id": d.dialog_id,
                "turns": len(d.turns),
                "conv_success": M.conversion_success(d.reward_success),
                "accepted": M.conversion_success(d.accepted),
                "recommended_item": rec,
                "rec_success": M.rec_success(rec_item.genres if rec_item else None, genres),
                "recall@1": M.recall_at_k(ranking, lambda i, g=genres: kb.covers(i, g), 1),
                "recall@5": M.recall_at_k(ranking, lambda i, g=genres: kb.covers(i, g), 5),
                "recall_source": source,
                "engine_parse_failures": d.parse_failures,
            }
        )
    return (pd.DataFrame(base) if base else pd.DataFrame(columns=list(_EMPTY_COLUMNS))), unknown


def _rule_counts(df: pd.DataFrame) -> dict[str, int]:
    """How many dialogues took each rule (the table prints them)."""

    def n(col, value):
        return int((df[col] == value).sum()) if col in df else 0

    return {
        "WI_on_presented": n("judged_item_rule", "presented"),
        "WI_on_similar": n("judged_item_rule", "most_similar"),
        "WI_on_catalogue": n("judged_item_rule", "catalogue"),
        "WI_unjudged": n("judged_item_rule", "none"),
        "Cred_judged": n("cred_rule", "judged"),
        "Cred_zero_no_item": n("cred_rule", "no_item"),
        "Cred_zero_unparsed": n("cred_rule", "unparsed"),
        "Recall_own": n("recall_source", "own"),
        "Recall_catalogue": n("recall_source", "catalogue"),
        "Recall_named": n("recall_source", "named"),
    }


def evaluate_system(
    dialogues: Sequence[EvalDialogue],
    kb: KBLike,
    judge: ChatLLM | None,
    cfg: EvalConfig = EvalConfig(),
    seed: int = 0,
    n_boot: int = 1000,
    system: str | None = None,
    dataset: str | None = None,
    ranker: ItemRanker | None = None,
) -> SystemEval:
    """All Table IV and V metrics of one system on one dataset.

    Args:
        dialogues: the system's finished dialogues.
        kb: the knowledge base (items, genres).
        judge: the judge LLM; ``None`` skips WI/PRS/Cred (reported as NaN with a note).
        cfg: the evaluation rules and how to judge (:class:`EvalConfig`).
        seed: bootstrap seed (CIs are deterministic given it).
        n_boot: bootstrap resamples.
        system, dataset: labels (default: taken from the dialogues).
        ranker: embedding similarity for the judged item and the catalogue ranking
            (:class:`rso_lib.eval.similarity.RetrieverRanker`); without one, a dialogue that
            needs it is counted as ``WI_unjudged`` / ranked by its named titles, with a note.
    """
    system = system or (dialogues[0].system if dialogues else "")
    dataset = dataset or (dialogues[0].dataset if dialogues else "")
    notes: list[str] = []
    df, unknown_items = _base_rows(dialogues, kb, cfg, ranker)
    if unknown_items:
        notes.append(f"{unknown_items} recommended item id(s) not in the knowledge base (Rec-SR 0)")

    judge_pf = judge_req = 0
    if judge is not None and dialogues:
        jdf = judge_dialogues(dialogues, kb, judge, cfg, ranker)
        judge_pf, judge_req = jdf.attrs["judge_parse_failures"], jdf.attrs["judge_requests"]
        df = df.merge(jdf, on="dialog_id", how="left")
    else:
        for c in _JUDGED_COLUMNS:
            df[c] = None
        if judge is None:
            notes.append("no judge: WI, PRS and Cred not computed")

    prs_cases = [
        M.persuasiveness(a, b, c, min_gap=cfg.prs_min_gap, intentions=cfg.prs_intentions)
        for a, b, c in zip(df["i_pre"], df["i_post"], df["i_true"])
    ]
    df["prs_status"] = [c.status for c in prs_cases]
    df["prs"] = [c.value for c in prs_cases]
    counts = _rule_counts(df)
    if counts["WI_unjudged"]:
        notes.append(f"{counts['WI_unjudged']} dialogue(s) without a judged item: no ranker to pick one")

    replies = [t.reply for d in dialogues for t in d.turns]
    s = {
        name: M.summarise(df[col].tolist(), seed=seed, n_boot=n_boot)
        for name, col in (
            ("WI", "i_post"),
            ("Cred", "cred"),
            ("Conv-SR", "conv_success"),
            ("Accept-SR", "accepted"),
            ("Rec-SR", "rec_success"),
            ("Recall@1", "recall@1"),
            ("Recall@5", "recall@5"),
        )
    }
    prs = M.summarise_prs(prs_cases, seed=seed, n_boot=n_boot)

    row: dict[str, Any] = {"system": system, "dataset": dataset, "n": len(dialogues)}
    for name in METRICS:
        if name == "PRS":
            row["PRS"], row["PRS_lo"], row["PRS_hi"] = prs.mean, prs.ci_low, prs.ci_high
        elif name == "Dist-2":
            row["Dist-2"] = M.dist2(replies, cfg.dist2)
        else:
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = s[name].mean, s[name].ci_low, s[name].ci_high
    row.update(
        {
            "WI_n": s["WI"].n,
            "WI_missing": s["WI"].n_missing,
            "PRS_n": prs.n,
            "PRS_over": prs.n_over,
            "PRS_excluded": prs.n_excluded,
            "PRS_missing": prs.n_missing,
            "Cred_n": s["Cred"].n,
            **counts,
            "Dist-2_definition": cfg.dist2,
            "Dist-2_corpus": M.dist2(replies, "corpus"),
            "Dist-2_per_response": M.dist2(replies, "per_response"),
            "Dist-2_bigrams": M.distinct_n(replies, 2).total,
            "no_recommendation": int(sum(d.recommended_item is None for d in dialogues)),
            "judge_mode": cfg.judge.mode,
            "judge_requests": judge_req,
            "judge_parse_failures": judge_pf,
            "engine_parse_failures": int(df["engine_parse_failures"].sum()) if len(df) else 0,
            "mean_turns": float(df["turns"].mean()) if len(df) else float("nan"),
        }
    )
    df.insert(0, "system", system)
    df.insert(1, "dataset", dataset)
    return SystemEval(system=system, dataset=dataset, per_dialogue=df, row=row, notes=notes)
