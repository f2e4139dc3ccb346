"""Tables IV and V (and the data behind Figures 3-5) from evaluated systems.

Every table is a plain DataFrame with numeric columns (so tests and diffs read the CSV), written
through :func:`rso_lib.results.write_table` (CSV + Markdown + LaTeX + meta with provenance). The
paper's numbers (:mod:`paper_numbers`) sit beside ours as ``paper:<metric>`` columns wherever the
paper gives them.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from rso_lib.eval import paper_numbers as P
from rso_lib.eval.evaluate import METRICS, SystemEval
from rso_lib.eval.metrics import bootstrap_ci
from rso_lib.strategies import STRATEGIES

# Baselines of Table IV that the kit does not run, and why (shown in the table's status column).
NOT_RUN: dict[str, str] = {
    "UniCRS": "not run: needs a trained UniCRS (knowledge-graph-enhanced prompt learning over DialoGPT); "
              "training it is out of scope for a CPU kit",
    "BARCOR": "not run: needs a trained BARCOR (BART generator + knowledge-graph recommender); "
              "training it is out of scope for a CPU kit",
}

COUNT_COLUMNS = ("PRS_n", "PRS_over", "PRS_excluded", "PRS_missing", "no_recommendation",
                 "judge_parse_failures", "engine_parse_failures", "mean_turns")


def _order_datasets(names: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    known = [d for d in P.DATASETS if d in names]
    return known + sorted(d for d in names if d not in known)


def metrics_table(
    evals: Sequence[SystemEval],
    paper_rows: Mapping[str, str] | None = None,
    paper_table: str = "IV",
    not_run: Mapping[str, str] | None = None,
    ci: bool = True,
    digits: int = 4,
) -> pd.DataFrame:
    """One row per (dataset, system): our metrics, their 95% CIs, the counts behind them, and the
    paper's numbers.

    Args:
        evals: evaluated systems (any datasets); rows keep this order within a dataset.
        paper_rows: our system label -> the paper's row name (e.g. ``{"PromptCRS (SmolLM2-135M)":
            "QwenCRS"}``); systems not listed use their own label.
        paper_table: which of the paper's tables to look numbers up in (``"IV"``, ``"V"``, ``"fig4"``).
        not_run: paper rows shown without numbers, with the reason (default: none).
        ci: add ``<metric>_lo`` / ``<metric>_hi`` columns.
        digits: rounding of floats (stable, readable CSVs).
    """
    paper_rows = dict(paper_rows or {})
    not_run = dict(not_run or {})
    rows = []
    for ds in _order_datasets(e.dataset for e in evals):
        for name, reason in not_run.items():
            rows.append({"dataset": ds, "system": name, "status": reason, "paper_row": name})
        for e in (e for e in evals if e.dataset == ds):
            r = {"dataset": ds, "system": e.system, "status": "run", "paper_row": paper_rows.get(e.system, e.system)}
            r["n"] = e.row["n"]
            for m in METRICS:
                r[m] = e.row.get(m)
                if ci and m != "Dist-2":
                    r[f"{m}_lo"], r[f"{m}_hi"] = e.row.get(f"{m}_lo"), e.row.get(f"{m}_hi")
            for c in COUNT_COLUMNS:
                r[c] = e.row.get(c)
            rows.append(r)
    df = pd.DataFrame(rows)
    # the paper's numbers, only for metrics where it gives at least one
    for m in METRICS:
        vals = [P.paper_value(paper_table, r["dataset"], r["paper_row"], m) for r in rows]
        if any(v is not None for v in vals):
            df[f"paper:{m}"] = vals
    df = df.drop(columns=["paper_row"])
    num = df.select_dtypes(include=[np.floating]).columns
    df[num] = df[num].round(digits)
    return df


def compare_systems(a: SystemEval, b: SystemEval, metrics: Sequence[str] = ("Conv-SR", "Cred"),
                    seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """Is ``a`` better than ``b``? Mean difference per metric with a 95% bootstrap CI of the
    difference (dialogues resampled independently in each system) and a plain verdict:
    ``"a better"`` / ``"b better"`` when the CI excludes 0, else ``"no clear difference"``."""
    col = {"WI": "i_post", "Cred": "cred", "Conv-SR": "accepted", "Rec-SR": "rec_success",
           "Recall@1": "recall@1", "Recall@5": "recall@5", "PRS": "prs"}
    rows = []
    rng = np.random.default_rng(seed)
    for m in metrics:
        x = pd.to_numeric(a.per_dialogue[col[m]], errors="coerce").dropna().to_numpy()
        y = pd.to_numeric(b.per_dialogue[col[m]], errors="coerce").dropna().to_numpy()
        if len(x) == 0 or len(y) == 0:
            rows.append({"metric": m, a.system: np.nan, b.system: np.nan, "diff": np.nan, "diff_lo": np.nan,
                         "diff_hi": np.nan, "n_a": len(x), "n_b": len(y), "verdict": "not measurable"})
            continue
        # [n_boot] differences of resampled means
        bx = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(1)
        by = y[rng.integers(0, len(y), (n_boot, len(y)))].mean(1)
        lo, hi = np.quantile(bx - by, [0.025, 0.975])
        d = float(x.mean() - y.mean())
        verdict = f"{a.system} better" if lo > 0 else f"{b.system} better" if hi < 0 else "no clear difference"
        rows.append({"metric": m, a.system: float(x.mean()), b.system: float(y.mean()), "diff": d,
                     "diff_lo": float(lo), "diff_hi": float(hi), "n_a": len(x), "n_b": len(y), "verdict": verdict})
    df = pd.DataFrame(rows)
    num = df.select_dtypes(include=[np.floating]).columns
    df[num] = df[num].round(4)
    return df


# --------------------------------------------------------------------------------------------
# Fig. 3 data: strategy shares by conversation progress
# --------------------------------------------------------------------------------------------


def strategy_shares(turns: pd.DataFrame, n_bins: int) -> pd.DataFrame:
    """Share of each strategy by conversation progress.

    Args:
        turns: one row per system turn with columns ``stage`` (e.g. "SFT", "RL"), ``dialog_id``,
            ``turn_index`` (0-based) and ``strategy`` (canonical id).
        n_bins: progress bins; a turn's progress is ``turn_index / n_turns_of_its_dialogue`` and
            its bin ``floor(progress * n_bins)`` (so with ``n_bins == max_turns`` and full-length
            dialogues the bins are turn indices).

    Returns:
        rows ``stage, bin, strategy, count, share`` for all 14 strategies (zeros kept), shares
        summing to 1 within each (stage, bin) that has turns.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    t = turns.copy()
    length = t.groupby(["stage", "dialog_id"])["turn_index"].transform("max") + 1
    t["bin"] = np.minimum((t["turn_index"] / length * n_bins).astype(int), n_bins - 1)
    counts = t.groupby(["stage", "bin", "strategy"]).size()
    stages = list(dict.fromkeys(t["stage"]))
    idx = pd.MultiIndex.from_product([stages, range(n_bins), list(STRATEGIES)], names=["stage", "bin", "strategy"])
    counts = counts.reindex(idx, fill_value=0).rename("count").reset_index()
    tot = counts.groupby(["stage", "bin"])["count"].transform("sum")
    counts["share"] = np.where(tot > 0, counts["count"] / tot.where(tot > 0, 1), 0.0)
    counts["share"] = counts["share"].round(4)
    return counts


def strategy_entropy(shares: pd.DataFrame) -> pd.DataFrame:
    """Entropy (nats) of the overall strategy distribution per stage: the paper's point that RL
    with an entropy bonus keeps the Planner from collapsing onto a few strategies."""
    tot = shares.groupby(["stage", "strategy"])["count"].sum().reset_index()
    out = []
    for stage, g in tot.groupby("stage", sort=False):
        p = g["count"].to_numpy(dtype=float)
        p = p / p.sum() if p.sum() else p
        nz = p[p > 0]
        out.append({"stage": stage, "turns": int(g["count"].sum()), "strategies_used": int((p > 0).sum()),
                    "entropy": round(float(-(nz * np.log(nz)).sum()), 4)})
    return pd.DataFrame(out)


def mean_ci_row(values: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    v = [x for x in values if x is not None and not np.isnan(x)]
    lo, hi = bootstrap_ci(v, seed=seed)
    return (float(np.mean(v)) if v else float("nan"), lo, hi)
