"""Evaluate one system's dialogues: judged metrics through :mod:`judges`, the rest from the
transcripts, aggregated by :mod:`metrics` into one table row.

The knowledge base only needs ``get(item_id) -> Item | None`` and ``covers(item_id, genres) ->
bool`` (``rso_lib.data.kb.KnowledgeBase`` provides both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import pandas as pd

from rso_lib.data.records import Item
from rso_lib.eval import judges as J
from rso_lib.eval import metrics as M
from rso_lib.eval.transcripts import EvalDialogue
from rso_lib.llm import clear_prefix_caches
from rso_lib.llm.protocol import ChatLLM

# Table IV's metrics in the paper's order, then Table V's, then the simulator's acceptance rate
# (Accept-SR: ours, kept apart from the paper's evaluator-defined Conv-SR).
METRICS = ("WI", "PRS", "Cred", "Conv-SR", "Dist-2", "Rec-SR", "Recall@1", "Recall@5", "Accept-SR")


class KBLike(Protocol):
    def get(self, item_id: str) -> Item | None: ...
    def covers(self, item_id: str, genres) -> bool: ...


@dataclass
class SystemEval:
    system: str
    dataset: str
    per_dialogue: pd.DataFrame  # one row per dialogue: intentions, PRS case, cred, successes
    row: dict[str, Any]  # the aggregated table row (means, CIs, counts)
    notes: list[str] = field(default_factory=list)


def judge_dialogues(dialogues: Sequence[EvalDialogue], kb: KBLike, judge: ChatLLM, cfg: J.JudgeConfig) -> pd.DataFrame:
    """Run the three intention judgements and the per-turn credibility judgements for all
    dialogues in four batched passes (pre, post, true, cred). Returns one row per dialogue:
    ``dialog_id, i_pre, i_post, i_true, cred, cred_turns, cred_missing`` (NaN where there is no
    recommended item in the knowledge base)."""
    clear_prefix_caches(judge)  # judged numbers depend on this call only, not on earlier prompts
    # 1) intentions: one request per dialogue that recommended a known item
    idx, pre, post, true = [], [], [], []
    for k, d in enumerate(dialogues):
        item = kb.get(d.recommended_item) if d.recommended_item else None
        if item is None:
            continue
        idx.append(k)
        pre.append(J.intention_messages("pre", d.persona, d.target_genres, item))
        post.append(
            J.intention_messages(
                "post", d.persona, d.target_genres, item, J.dialogue_text(d.turns, cfg.max_dialogue_chars)
            )
        )
        true.append(J.intention_messages("true", d.persona, d.target_genres, item, max_facts_chars=cfg.max_facts_chars))
    r_pre, r_post, r_true = (J.rate(judge, b, cfg) for b in (pre, post, true))
    i_pre = [None] * len(dialogues)
    i_post = [None] * len(dialogues)
    i_true = [None] * len(dialogues)
    for j, k in enumerate(idx):
        i_pre[k], i_post[k], i_true[k] = r_pre.values[j], r_post.values[j], r_true.values[j]

    # 2) credibility: one request per system turn that presents a known item
    owners, cred_batch = [], []
    for k, d in enumerate(dialogues):
        for t in d.turns:
            item = kb.get(t.presented_item) if t.presented_item else None
            if item is not None and t.reply.strip():
                owners.append(k)
                cred_batch.append(J.credibility_messages(t.reply, item, cfg.max_facts_chars))
    r_cred = J.rate(judge, cred_batch, cfg)
    per_turn: list[list[float | None]] = [[] for _ in dialogues]
    for k, v in zip(owners, r_cred.values):
        per_turn[k].append(v)

    rows = []
    for k, d in enumerate(dialogues):
        rows.append(
            {
                "dialog_id": d.dialog_id,
                "i_pre": i_pre[k],
                "i_post": i_post[k],
                "i_true": i_true[k],
                "cred": M.credibility(per_turn[k]),
                "cred_turns": len(per_turn[k]),
                "cred_missing": sum(v is None for v in per_turn[k]),
            }
        )
    df = pd.DataFrame(rows)
    df.attrs["judge_parse_failures"] = sum(r.parse_failures for r in (r_pre, r_post, r_true, r_cred))
    df.attrs["judge_requests"] = sum(r.requests for r in (r_pre, r_post, r_true, r_cred))
    return df


def evaluate_system(
    dialogues: Sequence[EvalDialogue],
    kb: KBLike,
    judge: ChatLLM | None,
    cfg: J.JudgeConfig = J.JudgeConfig(),
    seed: int = 0,
    n_boot: int = 1000,
    system: str | None = None,
    dataset: str | None = None,
    prs_min_gap: float = 0.5,
) -> SystemEval:
    """All Table IV metrics of one system on one dataset.

    Args:
        dialogues: the system's finished dialogues.
        kb: the knowledge base (items, genres).
        judge: the judge LLM; ``None`` skips WI/PRS/Cred (reported as NaN with a note).
        cfg: how to judge.
        seed: bootstrap seed (CIs are deterministic given it).
        n_boot: bootstrap resamples.
        system, dataset: labels (default: taken from the dialogues).
        prs_min_gap: ``i_pre``/``i_true`` closer than this are "equal" for PRS (see
            :func:`rso_lib.eval.metrics.persuasiveness`).
    """
    system = system or (dialogues[0].system if dialogues else "")
    dataset = dataset or (dialogues[0].dataset if dialogues else "")
    notes: list[str] = []
    base = []
    unknown_items = 0
    for d in dialogues:
        rec = d.recommended_item
        rec_item = kb.get(rec) if rec else None
        if rec and rec_item is None:
            unknown_items += 1
        genres = d.target_genres
        ranking = d.final_ranking
        base.append(
            {
                "dialog_id": d.dialog_id,
                "turns": len(d.turns),
                "conv_success": M.conversion_success(d.reward_success),
                "accepted": M.conversion_success(d.accepted),
                "recommended_item": rec,
                "rec_success": M.rec_success(rec_item.genres if rec_item else None, genres),
                "recall@1": M.recall_at_k(ranking, lambda i: kb.covers(i, genres), 1),
                "recall@5": M.recall_at_k(ranking, lambda i: kb.covers(i, genres), 5),
                "engine_parse_failures": d.parse_failures,
            }
        )
    df = pd.DataFrame(base)
    if unknown_items:
        notes.append(f"{unknown_items} recommended item id(s) not in the knowledge base (Rec-SR 0, not judged)")

    judge_pf = judge_req = 0
    if judge is not None and dialogues:
        jdf = judge_dialogues(dialogues, kb, judge, cfg)
        judge_pf, judge_req = jdf.attrs["judge_parse_failures"], jdf.attrs["judge_requests"]
        df = df.merge(jdf, on="dialog_id", how="left")
    else:
        for c in ("i_pre", "i_post", "i_true", "cred"):
            df[c] = None
        if judge is None:
            notes.append("no judge: WI, PRS and Cred not computed")
    if len(df) == 0:
        df = pd.DataFrame(
            columns=[
                "dialog_id",
                "conv_success",
                "accepted",
                "rec_success",
                "recall@1",
                "recall@5",
                "i_pre",
                "i_post",
                "i_true",
                "cred",
            ]
        )

    prs_cases = [
        M.persuasiveness(a, b, c, min_gap=prs_min_gap) for a, b, c in zip(df["i_pre"], df["i_post"], df["i_true"])
    ]
    df["prs_status"] = [c.status for c in prs_cases]
    df["prs"] = [c.value for c in prs_cases]

    replies = [t.reply for d in dialogues for t in d.turns]
    dist2 = M.distinct_n(replies, 2)
    s = {
        "WI": M.summarise(df["i_post"].tolist(), seed=seed, n_boot=n_boot),
        "Cred": M.summarise(df["cred"].tolist(), seed=seed, n_boot=n_boot),
        "Conv-SR": M.summarise(df["conv_success"].tolist(), seed=seed, n_boot=n_boot),
        "Accept-SR": M.summarise(df["accepted"].tolist(), seed=seed, n_boot=n_boot),
        "Rec-SR": M.summarise(df["rec_success"].tolist(), seed=seed, n_boot=n_boot),
        "Recall@1": M.summarise(df["recall@1"].tolist(), seed=seed, n_boot=n_boot),
        "Recall@5": M.summarise(df["recall@5"].tolist(), seed=seed, n_boot=n_boot),
    }
    prs = M.summarise_prs(prs_cases, seed=seed, n_boot=n_boot)

    row: dict[str, Any] = {"system": system, "dataset": dataset, "n": len(dialogues)}
    for name in METRICS:
        if name == "PRS":
            row["PRS"], row["PRS_lo"], row["PRS_hi"] = prs.mean, prs.ci_low, prs.ci_high
        elif name == "Dist-2":
            row["Dist-2"] = dist2.value
        else:
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = s[name].mean, s[name].ci_low, s[name].ci_high
    row.update(
        {
            "WI_n": s["WI"].n,
            "PRS_n": prs.n,
            "PRS_over": prs.n_over,
            "PRS_excluded": prs.n_excluded,
            "PRS_missing": prs.n_missing,
            "Cred_n": s["Cred"].n,
            "Dist-2_bigrams": dist2.total,
            "no_recommendation": int(sum(d.recommended_item is None for d in dialogues)),
            "judge_requests": judge_req,
            "judge_parse_failures": judge_pf,
            "engine_parse_failures": int(df["engine_parse_failures"].sum()) if "engine_parse_failures" in df else 0,
            "mean_turns": float(df["turns"].mean()) if "turns" in df and len(df) else float("nan"),
        }
    )
    df.insert(0, "system", system)
    df.insert(1, "dataset", dataset)
    return SystemEval(system=system, dataset=dataset, per_dialogue=df, row=row, notes=notes)
