"""Validity checks on a run's own transcripts (the second half of the validity card, written by
``notebooks/04_validity_transcripts.ipynb`` right after ``04_eval_tables``):

* **leak audit** (:func:`leak_audit`): does the simulated user give the recommender the answer?
  A leak is a user turn, as the CRS receives it (the opening message and every reply but the
  last, which the CRS never reads), that names a catalogue movie satisfying the user's target
  genres before any system turn named it. Titles are matched with their aliases (case, accents,
  punctuation, "&"/"and", a leading or trailing article, :func:`rso_lib.data.kb.normalise_title`)
  and a year next to a title picks among remakes. In this protocol a user wants genres, not one
  item, so a year alone identifies nothing and is not counted. Rec-SR and Recall@k are recomputed
  on the leak-free dialogues beside the main values (:func:`leak_free_metrics`; Zhu et al., arXiv
  2403.16416, show leaks inflate recall);
* **dialogue dynamics** (:func:`dynamics`): turns per dialogue and how dialogues ended (accepted,
  Eq. 9 stop rule, ``MAX_TURNS``, user quit), per system;
* **judge swap** (:func:`judge_swap_rows`): how much each Table IV metric's system ranking moves
  when the judge is swapped for another model (Kendall tau-b).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rso_lib.dialogue.simulators import covers
from rso_lib.dialogue.transcript import STOP_REASONS, Episode, read_episodes
from rso_lib.eval.titles import TitleIndex
from rso_lib.eval.validity import Thresholds, kendall_tau_b, rows

# --------------------------------------------------------------------------------------------
# Leak audit
# --------------------------------------------------------------------------------------------


def received_user_turns(ep: Episode) -> list[str]:
    """The user turns the CRS reads: the opening, then every reply but the last (the dialogue ends
    after it, so no system turn sees it). User turn k comes before system turn k."""
    return [ep.user_open] + [t.user_reply for t in ep.turns[:-1]]


def audit_episode(ep: Episode, index: TitleIndex) -> list[dict]:
    """The leaks of one dialogue: ``{turn, title, item_id}`` per satisfying title a user turn
    names before any system turn named a movie of that title."""
    targets = ep.target.target_genres
    named: set[str] = set()  # normalised titles the system has named so far
    leaks = []
    for k, text in enumerate(received_user_turns(ep)):
        for iid in index.find(text):
            key = index.title_key(iid)
            if key not in named and targets and covers(index.items[iid], targets):
                leaks.append({"turn": k, "title": index.items[iid].name, "item_id": iid})
                named.add(key)  # one leak per title
        if k < len(ep.turns):
            t = ep.turns[k]
            ids = index.find(t.reply) + [i for i in (t.mentioned_item, t.chosen_item) if i in index.items]
            named |= {index.title_key(i) for i in ids}
    return leaks


def leak_audit(runs: Sequence[dict], index: TitleIndex) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leak audit over every run's transcript.

    Args:
        runs: ``{"dataset", "system" (table label), "transcript" (path)}`` per run.
        index: the catalogue's titles.

    Returns:
        (per dialogue: ``dataset, system, dialog_id, leaked, leaks, titles``; every leak:
        ``dataset, system, dialog_id, turn, title, item_id``).
    """
    per, every = [], []
    for r in runs:
        for ep in read_episodes(r["transcript"]):
            lk = audit_episode(ep, index)
            per.append(
                {
                    "dataset": r["dataset"],
                    "system": r["system"],
                    "dialog_id": str(ep.dialog_id),
                    "leaked": bool(lk),
                    "leaks": len(lk),
                    "titles": "; ".join(x["title"] for x in lk),
                }
            )
            every += [{"dataset": r["dataset"], "system": r["system"], "dialog_id": str(ep.dialog_id), **x} for x in lk]
    cols = ["dataset", "system", "dialog_id", "turn", "title", "item_id"]
    return pd.DataFrame(per, columns=["dataset", "system", "dialog_id", "leaked", "leaks", "titles"]), pd.DataFrame(
        every, columns=cols
    )


LEAK_METRICS = {"Rec-SR": "rec_success", "Recall@1": "recall@1", "Recall@5": "recall@5"}


def leak_free_metrics(per_dialogue: pd.DataFrame, leaks: pd.DataFrame) -> pd.DataFrame:
    """Rec-SR / Recall@1 / Recall@5 per (dataset, system) on all dialogues and on the leak-free ones.

    Args:
        per_dialogue: the evaluation's per-dialogue table (``dataset, system, dialog_id`` and the
            columns of :data:`LEAK_METRICS`), e.g. ``results/<p>/per_dialogue_main.csv``.
        leaks: :func:`leak_audit`'s per-dialogue frame.
    """
    key = ["dataset", "system", "dialog_id"]
    df = per_dialogue.assign(dialog_id=per_dialogue["dialog_id"].astype(str)).merge(
        leaks[key + ["leaked"]], on=key, how="left"
    )
    unaudited = int(df["leaked"].isna().sum())
    df["leaked"] = df["leaked"].astype("boolean")
    out = []
    for (ds, sysname), g in df.groupby(["dataset", "system"], sort=False):
        clean = g[g["leaked"] == False]  # noqa: E712 (a nullable boolean: unaudited rows are neither)
        row = {"dataset": ds, "system": sysname, "n": len(g), "leaked": int((g["leaked"] == True).sum())}  # noqa: E712
        row["n_leak_free"] = len(clean)
        for m, col in LEAK_METRICS.items():
            row[m] = float(g[col].mean()) if len(g) else float("nan")
            row[f"{m} (leak-free)"] = float(clean[col].mean()) if len(clean) else float("nan")
        out.append(row)
    res = pd.DataFrame(out)
    res.attrs["unaudited"] = unaudited
    return res


def leak_rows(leaks: pd.DataFrame, th: Thresholds, model: str) -> list[dict]:
    """Card rows of the leak audit: the share of dialogues with a leak (guards Rec-SR, Recall@k)."""
    n = len(leaks)
    rate = float(leaks["leaked"].mean()) if n else float("nan")
    by = leaks.groupby(["dataset", "system"], sort=False)["leaked"].sum()
    worst = ", ".join(f"{d}/{s} {int(v)}" for (d, s), v in by.items() if v) or "none"
    return rows(
        "user_names_satisfying_title_first",
        "user",
        list(LEAK_METRICS),
        model,
        rate,
        th.max_leak_rate,
        False,
        n,
        0,
        f"{int(leaks['leaked'].sum()) if n else 0} of {n} dialogues leak (by run: {worst}); "
        "Rec-SR / Recall@k on leak-free dialogues in validity_leak_free.csv",
    )


# --------------------------------------------------------------------------------------------
# Dialogue dynamics
# --------------------------------------------------------------------------------------------


def dynamics(runs: Sequence[dict]) -> pd.DataFrame:
    """Per run: dialogues, turns per dialogue (mean, longest), the share of one-turn dialogues and the
    share ended by each stop reason (accepted, Eq. 9 reward, max_turns, user_quit)."""
    out = []
    for r in runs:
        eps = read_episodes(r["transcript"])
        turns = np.asarray([len(e.turns) for e in eps], float)
        reasons = Counter(e.stop_reason for e in eps)
        row = {
            "dataset": r["dataset"],
            "system": r["system"],
            "dialogues": len(eps),
            "mean_turns": float(turns.mean()) if len(eps) else float("nan"),
            "longest": int(turns.max()) if len(eps) else 0,
            "one_turn": float((turns == 1).mean()) if len(eps) else float("nan"),
        }
        for k in list(STOP_REASONS) + sorted(set(reasons) - set(STOP_REASONS) - {None}):
            row[f"ended_{k}"] = reasons.get(k, 0) / len(eps) if eps else float("nan")
        out.append(row)
    return pd.DataFrame(out)


# --------------------------------------------------------------------------------------------
# Judge swap
# --------------------------------------------------------------------------------------------

SWAP_METRICS = ("WI", "PRS", "Cred")


def judge_swap_rows(
    main: pd.DataFrame, swapped: pd.DataFrame, model: str, th: Thresholds
) -> tuple[list[dict], list[str]]:
    """Kendall tau-b, per dataset and judged metric, between the system ranking under the main
    judge (``main``: ``dataset, system`` + metric columns, e.g. Table IV) and under the swapped
    judge (``swapped``, same columns). A system missing on one side is left out; a metric that
    fewer than two systems have on both sides (PRS not measurable, say) has no ranking to compare:
    no row, a note instead. Returns (rows, notes)."""
    out, notes = [], []
    m = main.merge(swapped, on=["dataset", "system"], suffixes=("", "@swap"))
    for ds, g in m.groupby("dataset", sort=False):
        for metric in SWAP_METRICS:
            if metric not in g or f"{metric}@swap" not in g:
                continue
            a, b = g[metric].astype(float).to_numpy(), g[f"{metric}@swap"].astype(float).to_numpy()
            ok = ~(np.isnan(a) | np.isnan(b))
            if ok.sum() < 2:
                notes.append(f"judge swap ({model}), {ds}: {metric} measured for {int(ok.sum())} system(s): no ranking")
                continue
            tau = kendall_tau_b(a, b)
            pairs = ", ".join(f"{s} {x:.2f}->{y:.2f}" for s, x, y in zip(g["system"][ok], a[ok], b[ok]))
            out += rows(
                f"judge_swap_rank_tau:{ds}",
                "judge",
                [metric],
                model,
                tau,
                th.min_swap_tau,
                True,
                int(ok.sum()),
                0,
                f"system ranking by {metric}, main judge vs {model}: {pairs}",
            )
    return out, notes


def evaluated_runs(results: Path, runs_root: Path, table: str = "table_iv") -> list[dict]:
    """The runs behind a results table, from its provenance (``<table>.meta.json``: ``runs`` and
    ``run_info``): ``{"dataset", "name", "system" (table label), "transcript"}`` each."""
    meta_path = Path(results) / f"{table}.meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: run notebooks/04_eval_tables first")
    meta = json.loads(meta_path.read_text())
    out = []
    for key, info in (meta.get("run_info") or {}).items():
        ds, _, name = key.partition("/")
        if "transcript" not in info:
            raise ValueError(f"{meta_path}: run_info[{key!r}] has no 'transcript'")
        label = (meta.get("runs") or {}).get(name, {}).get("label", name)
        out.append({"dataset": ds, "name": name, "system": label, "transcript": Path(runs_root) / info["transcript"]})
    return out


def rejudge(runs: Sequence[dict], kb, judge, eval_cfg, ranker=None, seed: int = 0) -> pd.DataFrame:
    """WI / PRS / Cred of every run's transcript judged again by ``judge`` under the evaluation's
    rules (``eval_cfg``: :class:`rso_lib.eval.evaluate.EvalConfig`): ``dataset, system`` + metrics."""
    from rso_lib.eval.evaluate import evaluate_system
    from rso_lib.eval.transcripts import read_transcript

    out = []
    for r in runs:
        dls = read_transcript(r["transcript"], system=r["system"], dataset=r["dataset"])
        ev = evaluate_system(
            dls, kb, judge, eval_cfg, seed=seed, n_boot=1, system=r["system"], dataset=r["dataset"], ranker=ranker
        )
        out.append({"dataset": r["dataset"], "system": r["system"], **{m: ev.row.get(m) for m in SWAP_METRICS}})
    return pd.DataFrame(out, columns=["dataset", "system", *SWAP_METRICS])
