"""Tables IV and V (and the data behind Figures 3-5) from evaluated systems.

Every table is a plain DataFrame with numeric columns (so tests and diffs read the CSV), written
through :func:`rso_lib.results.write_table` (CSV + Markdown + LaTeX + meta with provenance). The
paper's numbers (:mod:`paper_numbers`) sit beside ours as ``paper:<metric>`` columns wherever the
paper gives them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from rso_lib.eval import paper_numbers as P
from rso_lib.eval.evaluate import METRICS, SystemEval
from rso_lib.eval.paired import pair, paired_bootstrap_ci
from rso_lib.strategies import STRATEGIES

# Baselines of Tables IV-V that a run may leave out, and why (shown in the table's status column).
NOT_RUN: dict[str, str] = {
    "UniCRS": "not run: needs a trained UniCRS (knowledge-graph-enhanced prompt learning over DialoGPT)",
    "BARCOR": "not run: needs a trained BARCOR (BART generator + knowledge-graph recommender)",
}

#: the counts behind each row: how many dialogues each evaluation rule took (every dialogue is
#: counted; see :mod:`rso_lib.eval.evaluate`), which Dist-2 the row prints, parse failures
COUNT_COLUMNS = (
    "WI_n",
    "WI_missing",
    "WI_on_presented",
    "WI_on_similar",
    "WI_on_catalogue",
    "WI_unjudged",
    "PRS_n",
    "PRS_over",
    "PRS_excluded",
    "PRS_missing",
    "Cred_n",
    "Cred_judged",
    "Cred_zero_no_item",
    "Cred_zero_unparsed",
    "Recall_own",
    "Recall_catalogue",
    "Recall_named",
    "Dist-2_definition",
    "no_recommendation",
    "judge_mode",
    "judge_parse_failures",
    "engine_parse_failures",
    "mean_turns",
)
#: Table IV: the paper's five metrics, then the simulator's acceptance rate (ours, not the paper's:
#: the paper's Conv-SR is the evaluator's; see :mod:`rso_lib.eval.evaluate`).
TABLE_IV_COLUMNS = P.TABLE_IV_METRICS + ("Accept-SR",)
TABLE_V_COLUMNS = P.TABLE_V_METRICS
#: Table V's reference row for "Improve." (the paper's: UniCRS).
IMPROVE_REFERENCE = "UniCRS"


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
    metrics: Sequence[str] = METRICS,
) -> pd.DataFrame:
    """One row per (dataset, system): our metrics, their 95% CIs, the counts behind them, and the
    paper's numbers.

    Args:
        evals: evaluated systems (any datasets); rows keep this order within a dataset.
        paper_rows: our system label -> the paper's row name (e.g. ``{"PromptCRS (SmolLM2-135M)":
            "QwenCRS"}``); systems not listed use their own label. Kept as column ``paper_row``.
        paper_table: which of the paper's tables to look numbers up in (``"IV"``, ``"V"``, ``"fig4"``).
        not_run: paper rows shown without numbers, with the reason (default: none). A row whose
            paper name is among the runs is not repeated.
        ci: add ``<metric>_lo`` / ``<metric>_hi`` columns.
        digits: rounding of floats (stable, readable CSVs).
        metrics: the metric columns (default: all of :data:`rso_lib.eval.evaluate.METRICS`).
    """
    paper_rows = dict(paper_rows or {})
    run_rows = {paper_rows.get(e.system, e.system) for e in evals}
    not_run = {k: v for k, v in (not_run or {}).items() if k not in run_rows}
    rows = []
    for ds in _order_datasets(e.dataset for e in evals):
        for name, reason in not_run.items():
            rows.append({"dataset": ds, "system": name, "status": reason, "paper_row": name})
        for e in (e for e in evals if e.dataset == ds):
            r = {"dataset": ds, "system": e.system, "status": "run", "paper_row": paper_rows.get(e.system, e.system)}
            r["n"] = e.row["n"]
            for m in metrics:
                r[m] = e.row.get(m)
                if ci and m != "Dist-2":
                    r[f"{m}_lo"], r[f"{m}_hi"] = e.row.get(f"{m}_lo"), e.row.get(f"{m}_hi")
            for c in COUNT_COLUMNS:
                r[c] = e.row.get(c)
            rows.append(r)
    df = pd.DataFrame(rows)
    # the paper's numbers, only for metrics where it gives at least one
    for m in metrics:
        vals = [P.paper_value(paper_table, r["dataset"], r["paper_row"], m) for r in rows]
        if any(v is not None for v in vals):
            df[f"paper:{m}"] = vals
    num = df.select_dtypes(include=[np.floating]).columns
    df[num] = df[num].round(digits)
    return df


def table_iv(
    evals: Sequence[SystemEval],
    paper_rows: Mapping[str, str] | None = None,
    not_run: Mapping[str, str] | None = NOT_RUN,
    **kw,
) -> pd.DataFrame:
    """Paper Table IV: WI, PRS, Cred, Conv-SR, Dist-2 per system and dataset (+ Accept-SR, ours)."""
    return metrics_table(evals, paper_rows, "IV", not_run, metrics=TABLE_IV_COLUMNS, **kw)


def table_v(
    evals: Sequence[SystemEval],
    paper_rows: Mapping[str, str] | None = None,
    not_run: Mapping[str, str] | None = NOT_RUN,
    reference: str = IMPROVE_REFERENCE,
    **kw,
) -> pd.DataFrame:
    """Paper Table V: Rec-SR, Recall@1, Recall@5 and "Improve." per system and dataset.

    ``Improve.`` is :func:`rso_lib.eval.paper_numbers.improvement_over` against *our* row whose
    paper name is ``reference`` (UniCRS) on the same dataset; ``Improve. (printed)`` formats it as
    the paper does. Where that reference row was not run, both stay empty and ``Improve. note``
    says why -- it is never computed against another row. ``paper:Improve.`` is the paper's."""
    df = metrics_table(evals, paper_rows, "V", not_run, metrics=TABLE_V_COLUMNS, **kw)
    imp, printed, note = [], [], []
    for _, r in df.iterrows():
        ref = df[(df["dataset"] == r["dataset"]) & (df["paper_row"] == reference) & (df["status"] == "run")]
        if r["status"] != "run":
            imp.append(np.nan), printed.append(""), note.append("")
        elif ref.empty:
            imp.append(np.nan), printed.append("")
            note.append(f"{reference} not run on {r['dataset']}: no reference row")
        elif r["paper_row"] == reference:
            imp.append(np.nan), printed.append("-"), note.append("reference row")
        else:
            v = P.improvement_over({m: r[m] for m in TABLE_V_COLUMNS}, {m: ref.iloc[0][m] for m in TABLE_V_COLUMNS})
            imp.append(round(v, 4)), printed.append(P.format_improvement(v))
            note.append("" if v == v else f"a {reference} value is 0 or missing: ratio undefined")
    df["Improve."], df["Improve. (printed)"], df["Improve. note"] = imp, printed, note
    df["paper:Improve."] = [P.TABLE_V_IMPROVE.get(r["dataset"], {}).get(r["paper_row"], "") for _, r in df.iterrows()]
    return df


def capability_table(systems: Mapping[str, Any]) -> pd.DataFrame:
    """Paper Table III, derived from the system configurations (never typed by hand).

    Args:
        systems: row label -> :class:`rso_lib.dialogue.systems.SystemConfig`.

    Returns:
        one row per system, columns ``Learnable``, ``Preference Reasoning``, ``Fact Grounding``,
        ``Strategy Optimization`` (booleans) and ``config`` (the fields they come from).
    """
    rows = []
    for label, cfg in systems.items():
        caps = cfg.capabilities()
        rows.append(
            {
                "system": label,
                **caps,
                "config": f"strategy={cfg.strategy_mode}, reasoner={cfg.use_reasoner}, "
                f"retriever={cfg.use_retriever}, facts={cfg.use_facts}, plm={cfg.plm}",
            }
        )
    return pd.DataFrame(rows)


#: Fig. 5's panels: module -> (the ablated system, the metric the paper reports for it).
FIG5_MODULES: dict[str, tuple[str, str]] = {
    "Fact Retriever": ("NO_RETRIEVER", "Cred"),
    "Planner": ("NO_PLANNER", "Conv-SR"),
    "Preference Reasoner": ("NO_REASONER", "Conv-SR"),
}


def fig5_table(
    evals: Mapping[tuple[str, str], SystemEval], full: str = "RSO", seed: int = 0, n_boot: int = 2000
) -> pd.DataFrame:
    """Fig. 5 by module: for each dataset and module, the paper's metric without and with the
    module (95% CIs), the paired difference (same users) with a bootstrap CI, and Sec. V-C's numbers beside.

    Args:
        evals: ``(dataset, system preset) -> SystemEval`` holding ``full`` and the ablations of
            :data:`FIG5_MODULES` (missing ones are left out).
        full: the preset with every module (RSO).
    """
    rows = []
    for ds in _order_datasets(d for d, _ in evals):
        if (ds, full) not in evals:
            continue
        with_ = evals[(ds, full)]
        for module, (ablated, metric) in FIG5_MODULES.items():
            if (ds, ablated) not in evals:
                continue
            without = evals[(ds, ablated)]
            c = compare_systems(with_, without, metrics=(metric,), seed=seed, n_boot=n_boot).iloc[0]
            rows.append(
                {
                    "dataset": ds,
                    "module": module,
                    "metric": metric,
                    "ablated_system": ablated,
                    "without": without.row.get(metric),
                    "without_lo": without.row.get(f"{metric}_lo"),
                    "without_hi": without.row.get(f"{metric}_hi"),
                    "with": with_.row.get(metric),
                    "with_lo": with_.row.get(f"{metric}_lo"),
                    "with_hi": with_.row.get(f"{metric}_hi"),
                    "diff": c["diff"],
                    "diff_lo": c["diff_lo"],
                    "diff_hi": c["diff_hi"],
                    "n_without": int(without.row["n"]),
                    "n_with": int(with_.row["n"]),
                    "n_paired": int(c["n_paired"]),
                    "paper:without": P.fig5_value(ds, module, False),
                    "paper:with": P.fig5_value(ds, module, True),
                }
            )
    df = pd.DataFrame(rows)
    if len(df):
        num = df.select_dtypes(include=[np.floating]).columns
        df[num] = df[num].round(4)
    return df


#: per-dialogue column behind each metric (SystemEval.per_dialogue)
PER_DIALOGUE = {
    "WI": "i_post",
    "Cred": "cred",
    "Conv-SR": "conv_success",
    "Accept-SR": "accepted",
    "Rec-SR": "rec_success",
    "Recall@1": "recall@1",
    "Recall@5": "recall@5",
    "PRS": "prs",
}


def _by_dialogue(e: SystemEval, metric: str) -> pd.Series:
    d = e.per_dialogue
    return pd.Series(d[PER_DIALOGUE[metric]].to_numpy(), index=d["dialog_id"].astype(str).to_numpy())


def compare_systems(
    a: SystemEval, b: SystemEval, metrics: Sequence[str] = ("Conv-SR", "Cred"), seed: int = 0, n_boot: int = 2000
) -> pd.DataFrame:
    """Is ``a`` better than ``b``? Per metric, on the users both were evaluated on (paired by
    dialogue id; a user without a value on either side is left out of both, ``n_dropped``): the
    mean difference with a 95% paired-bootstrap CI (:mod:`rso_lib.eval.paired`) and a plain
    verdict, ``"a better"`` / ``"b better"`` when the CI excludes 0, else ``"no clear difference"``.
    A descriptive comparison: the claims table (:mod:`rso_lib.eval.claims`) makes the tests."""
    rows = []
    rng = np.random.default_rng(seed)
    for m in metrics:
        p = pair(_by_dialogue(a, m), _by_dialogue(b, m))
        r = {"metric": m, a.system: np.nan, b.system: np.nan, "diff": np.nan, "diff_lo": np.nan, "diff_hi": np.nan}
        r.update(n_paired=p.n, n_dropped=p.dropped_x + p.dropped_y, verdict="not measurable")
        if p.n:
            lo, hi = paired_bootstrap_ci(p.d, rng, n_boot)
            r.update({a.system: float(p.x.mean()), b.system: float(p.y.mean()), "diff": float(p.d.mean())})
            r.update(diff_lo=lo, diff_hi=hi)
            r["verdict"] = f"{a.system} better" if lo > 0 else f"{b.system} better" if hi < 0 else "no clear difference"
        rows.append(r)
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
        out.append(
            {
                "stage": stage,
                "turns": int(g["count"].sum()),
                "strategies_used": int((p > 0).sum()),
                "entropy": round(float(-(nz * np.log(nz)).sum()), 4),
            }
        )
    return pd.DataFrame(out)
