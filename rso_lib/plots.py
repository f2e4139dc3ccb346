"""Every figure of the kit (seaborn): the Planner's training curves and confusion matrix, and the
paper's Figures 3-6 from the tables in :mod:`rso_lib.eval.tables`.

No backend is forced: in JupyterLab the figures show inline, under papermill / pytest matplotlib
picks its headless default by itself.

Each function takes a DataFrame and returns a matplotlib Figure; save it with
:func:`rso_lib.results.save_figure` (PNG + PDF). Where the paper gives a number (see
:mod:`rso_lib.eval.paper_numbers`), it is drawn as a black cross beside our bar.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from rso_lib.strategies import NUM_STRATEGIES, STRATEGIES, display_name

sns.set_theme(style="whitegrid", context="paper")


#: One colour per system, the same in every figure (paper row names and the kit's labels).
_PALETTE = sns.color_palette("tab10", 10)
SYSTEM_COLORS: dict[str, tuple] = {
    "UniCRS": _PALETTE[7],
    "BARCOR": _PALETTE[5],
    "QwenCRS": _PALETTE[1],
    "PromptCRS": _PALETTE[1],
    "LlamaCRS": _PALETTE[8],
    "InterCRS": _PALETTE[2],
    "PCCRS": _PALETTE[4],
    "PC-CRS": _PALETTE[4],
    "RSO": _PALETTE[0],
    "w/o Fact Retriever": _PALETTE[9],
    "w/o Planner": _PALETTE[6],
    "w/o Preference Reasoner": _PALETTE[3],
}


def system_color(name: str):
    """The fixed colour of a system (a label such as "PromptCRS (Qwen2.5-14B)" takes its base name's)."""
    base = name.split(" (")[0]
    return SYSTEM_COLORS.get(name) or SYSTEM_COLORS.get(base) or sns.color_palette("Greys", 3)[1]


def plot_metric_cis(table: pd.DataFrame, metrics: Sequence[str], order: Sequence[str] | None = None):
    """Each metric per system with its 95% bootstrap CI (from ``<metric>_lo`` / ``<metric>_hi``),
    one row of panels per dataset, the paper's value as a black cross where it gives one; systems
    keep their colour (:data:`SYSTEM_COLORS`) in every figure.

    Args:
        table: :func:`rso_lib.eval.tables.metrics_table` output (rows not run are skipped).
        metrics: the metric columns to draw, one panel each.
        order: system order (default: order of appearance).
    """
    t = table[table["status"] == "run"] if "status" in table else table
    order = list(order or dict.fromkeys(t["system"]))
    datasets = list(dict.fromkeys(t["dataset"]))
    fig, axes = plt.subplots(
        len(datasets), len(metrics), figsize=(2.6 * len(metrics) + 1, 2.9 * len(datasets)), squeeze=False
    )
    for r, ds in enumerate(datasets):
        d = t[t["dataset"] == ds].set_index("system")
        for c, m in enumerate(metrics):
            ax = axes[r][c]
            names = [s for s in order if s in d.index]
            ys = pd.to_numeric(d.loc[names, m], errors="coerce").to_numpy(dtype=float)
            lo = pd.to_numeric(d.loc[names].get(f"{m}_lo", pd.Series(np.nan, index=names)), errors="coerce").to_numpy(
                dtype=float
            )
            hi = pd.to_numeric(d.loc[names].get(f"{m}_hi", pd.Series(np.nan, index=names)), errors="coerce").to_numpy(
                dtype=float
            )
            err = np.clip(np.nan_to_num(np.vstack([ys - lo, hi - ys])), 0, None)
            x = np.arange(len(names))
            ax.bar(x, np.nan_to_num(ys), color=[system_color(s) for s in names], yerr=err, capsize=2)
            if f"paper:{m}" in d:
                pv = pd.to_numeric(d.loc[names, f"paper:{m}"], errors="coerce").to_numpy(dtype=float)
                ok = ~np.isnan(pv)
                ax.plot(x[ok], pv[ok], "kx", ms=6, label="paper" if ok.any() else None)
            ax.set_xticks(x)
            ax.set_xticklabels(names, rotation=40, ha="right", fontsize=7)
            ax.set_title(f"{m} ({ds})", fontsize=9)
            _limits(ax, m, pd.Series(ys))
    handles, labels = axes[0][-1].get_legend_handles_labels()
    if handles:
        fig.legend(handles[:1], labels[:1], loc="upper right", frameon=False)
    fig.tight_layout()
    return fig


def fig_strategy_distribution(shares: pd.DataFrame, stages: Sequence[str] | None = None, min_share: float = 0.0):
    """Fig. 3: share of each strategy by conversation progress, one panel per training stage
    (e.g. SFT only vs after RL), stacked bars over progress bins.

    Args:
        shares: output of :func:`rso_lib.eval.tables.strategy_shares` (stage, bin, strategy, share).
        stages: panel order (default: order of appearance).
        min_share: strategies whose largest share is below this are left out of the legend
            (their bars are still drawn).
    """
    stages = list(stages or dict.fromkeys(shares["stage"]))
    n_bins = int(shares["bin"].max()) + 1
    colors = dict(zip(STRATEGIES, sns.color_palette("tab20", len(STRATEGIES))))
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages) + 1.8, 3.4), sharey=True, squeeze=False)
    for ax, stage in zip(axes[0], stages):
        g = shares[shares["stage"] == stage]
        bottom = np.zeros(n_bins)
        for s in STRATEGIES:
            vals = g[g["strategy"] == s].sort_values("bin")["share"].to_numpy()
            if vals.size == 0:
                continue
            ax.bar(
                np.arange(n_bins),
                vals,
                bottom=bottom,
                color=colors[s],
                width=0.85,
                label=display_name(s) if vals.max() > min_share else None,
            )
            bottom += vals
        ax.set_title(stage)
        ax.set_xticks(np.arange(n_bins))
        ax.set_xticklabels(
            [f"{int(100 * b / n_bins)}-{int(100 * (b + 1) / n_bins)}%" for b in range(n_bins)], rotation=30, fontsize=7
        )
        ax.set_xlabel("conversation progress")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("share of system turns")
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def _bars(ax, df: pd.DataFrame, metrics: Sequence[str], hue: str, order: Sequence[str]):
    """Grouped bars: x = metric, hue = system; error bars from ``<metric>_lo/_hi`` when present;
    the paper's value (``paper:<metric>``) as a black cross."""
    n = len(order)
    width = 0.8 / max(n, 1)
    pal = [system_color(s) for s in order]
    for j, name in enumerate(order):
        row = df[df[hue] == name]
        if row.empty:
            continue
        row = row.iloc[0]
        xs = np.arange(len(metrics)) - 0.4 + width * (j + 0.5)
        ys = np.array([float(row.get(m, np.nan)) for m in metrics])
        lo = np.array([float(row.get(f"{m}_lo", np.nan)) for m in metrics])
        hi = np.array([float(row.get(f"{m}_hi", np.nan)) for m in metrics])
        err = np.vstack([np.where(np.isnan(lo), 0, ys - lo), np.where(np.isnan(hi), 0, hi - ys)])
        ax.bar(
            xs,
            np.nan_to_num(ys),
            width=width,
            color=pal[j],
            label=name,
            yerr=np.clip(np.nan_to_num(err), 0, None),
            capsize=2,
            error_kw={"lw": 0.8},
        )
        for x, m in zip(xs, metrics):
            pv = row.get(f"paper:{m}")
            if pv is not None and not (isinstance(pv, float) and np.isnan(pv)):
                ax.plot(
                    [x],
                    [float(pv)],
                    "kx",
                    ms=6,
                    label="paper" if "paper" not in ax.get_legend_handles_labels()[1] else None,
                )
    ax.set_xticks(np.arange(len(metrics)))
    ax.set_xticklabels(metrics)


def _limits(ax, metric: str, values: pd.Series) -> None:
    """Fixed scales (ratings 1-5, rates 0-1) and a visible note when nothing was measurable
    (e.g. PRS when every dialogue was excluded) instead of an empty, unlabelled panel."""
    if metric in ("WI", "Cred"):
        ax.set_ylim(1, 5)
    elif metric in ("Conv-SR", "Rec-SR", "Recall@1", "Recall@5", "Dist-2"):
        ax.set_ylim(0, 1)
    if values.isna().all():
        ax.text(
            0.5,
            0.5,
            "not measurable\n(see table counts)",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=8,
            color="0.4",
        )


# The three panels of Fig. 5 (and the two-scale layout of Fig. 4): rates in [0, 1], ratings 1-5.
PANELS_RATES = ("Conv-SR", "Rec-SR", "Recall@1", "Recall@5")
PANELS_JUDGED = ("WI", "Cred")
PANELS_TEXT = ("PRS", "Dist-2")


def fig_ablations(table: pd.DataFrame, order: Sequence[str] | None = None):
    """Fig. 5 (a-c): RSO against its ablations, one row of three panels per dataset:
    (a) success rates, (b) judged ratings 1-5, (c) persuasiveness and Dist-2.

    Args:
        table: rows of :func:`rso_lib.eval.tables.metrics_table` (status == "run").
        order: system order (default: order of appearance).
    """
    t = table[table.get("status", "run") == "run"] if "status" in table else table
    order = list(order or dict.fromkeys(t["system"]))
    datasets = list(dict.fromkeys(t["dataset"]))
    fig, axes = plt.subplots(len(datasets), 3, figsize=(13, 3.3 * len(datasets)), squeeze=False)
    for r, ds in enumerate(datasets):
        d = t[t["dataset"] == ds]
        for c, (metrics, ylim, tag) in enumerate(
            [(PANELS_RATES, (0, 1), "a"), (PANELS_JUDGED, (1, 5), "b"), (PANELS_TEXT, None, "c")]
        ):
            ax = axes[r][c]
            _bars(ax, d, metrics, "system", order)
            if ylim:
                ax.set_ylim(*ylim)
            if all(pd.to_numeric(d[m], errors="coerce").isna().all() for m in metrics if m in d):
                _limits(ax, "", pd.Series([np.nan]))
            elif "PRS" in metrics and pd.to_numeric(d["PRS"], errors="coerce").isna().all():
                ax.text(0, 0, "PRS: none measurable", ha="center", va="bottom", fontsize=7, color="0.4")
            ax.set_title(f"({tag}) {ds}", fontsize=9)
    h, lab = axes[0][0].get_legend_handles_labels()
    fig.legend(h, lab, loc="upper center", ncol=min(len(lab), 6), bbox_to_anchor=(0.5, 1.04), frameon=False)
    fig.tight_layout()
    return fig


#: Fig. 4's metrics: those Sec. V-B3 discusses.
FIG4_METRICS = ("WI", "Cred", "Conv-SR", "Dist-2", "Recall@1", "Recall@5")


def fig_scale(table: pd.DataFrame, metrics: Sequence[str] = FIG4_METRICS, order: Sequence[str] | None = None):
    """Fig. 4: RSO on a small backbone against prompt-only CRSs on (larger) backbones, one panel
    per metric (those Sec. V-B3 discusses), one bar per ``system`` label, datasets side by side as
    hue. The paper prints no numbers for Fig. 4, so there are no paper marks."""
    t = table[table["status"] == "run"] if "status" in table else table
    order = list(order or dict.fromkeys(t["system"]))
    datasets = list(dict.fromkeys(t["dataset"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 3.4), squeeze=False)
    pal = sns.color_palette("deep", len(datasets))
    width = 0.8 / max(len(datasets), 1)
    for ax, m in zip(axes[0], metrics):
        for j, ds in enumerate(datasets):
            d = t[t["dataset"] == ds].set_index("system").reindex(order)
            xs = np.arange(len(order)) - 0.4 + width * (j + 0.5)
            ys = pd.to_numeric(d[m], errors="coerce").to_numpy()
            ax.bar(xs, np.nan_to_num(ys), width=width, color=pal[j], label=ds)
            if f"paper:{m}" in d:
                pv = pd.to_numeric(d[f"paper:{m}"], errors="coerce").to_numpy()
                ok = ~np.isnan(pv)
                ax.plot(xs[ok], pv[ok], "kx", ms=6, label="paper" if ok.any() and j == 0 else None)
        ax.set_title(m)
        ax.set_xticks(np.arange(len(order)))
        ax.set_xticklabels(order, rotation=30, ha="right", fontsize=7)
        _limits(ax, m, pd.to_numeric(t[m], errors="coerce"))
    h, lab = axes[0][0].get_legend_handles_labels()
    fig.legend(h, lab, loc="upper center", ncol=len(lab), bbox_to_anchor=(0.5, 1.06), frameon=False)
    fig.tight_layout()
    return fig


def fig_ablation_modules(fig5: pd.DataFrame):
    """Fig. 5 (a-c) by module: (a) Cred with and without the Fact Retriever, (b) Conv-SR with and
    without the Planner, (c) Conv-SR with and without the Preference Reasoner; bars per dataset
    with 95% CIs, Sec. V-C's numbers as black crosses.

    Args:
        fig5: :func:`rso_lib.eval.tables.fig5_table` output.
    """
    modules = list(dict.fromkeys(fig5["module"])) if len(fig5) else []
    fig, axes = plt.subplots(1, max(len(modules), 1), figsize=(4.0 * max(len(modules), 1), 3.4), squeeze=False)
    pal = {"without": sns.color_palette("deep")[7], "with": sns.color_palette("deep")[0]}
    for ax, (tag, module) in zip(axes[0], zip("abc", modules)):
        d = fig5[fig5["module"] == module]
        datasets = list(d["dataset"])
        x = np.arange(len(datasets))
        for j, which in enumerate(("without", "with")):
            ys = pd.to_numeric(d[which], errors="coerce").to_numpy(dtype=float)
            lo = pd.to_numeric(d[f"{which}_lo"], errors="coerce").to_numpy(dtype=float)
            hi = pd.to_numeric(d[f"{which}_hi"], errors="coerce").to_numpy(dtype=float)
            err = np.clip(np.nan_to_num(np.vstack([ys - lo, hi - ys])), 0, None)
            xs = x - 0.2 + 0.4 * j
            ax.bar(xs, np.nan_to_num(ys), width=0.38, color=pal[which], yerr=err, capsize=3, label=f"{which} {module}")
            pv = pd.to_numeric(d[f"paper:{which}"], errors="coerce").to_numpy(dtype=float)
            ok = ~np.isnan(pv)
            ax.plot(xs[ok], pv[ok], "kx", ms=7, label="paper (Sec. V-C)" if j == 1 and ok.any() else None)
        metric = d["metric"].iloc[0]
        ax.set_xticks(x)
        ax.set_xticklabels(datasets)
        ax.set_ylabel(metric)
        _limits(ax, metric, pd.to_numeric(d["with"], errors="coerce"))
        ax.set_title(f"({tag}) effect of the {module}", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def fig_case_study(c: dict, width: int = 95):
    """Fig. 6 as a figure: the prompt-only reply (top) and RSO's experts and reply (bottom) for
    one turn of :func:`rso_lib.eval.case_study.case_study`."""
    import textwrap

    def wrap(s: str) -> str:
        return "\n".join(textwrap.fill(p, width) for p in str(s).split("\n"))

    p = f"{c['strategy_prob']:.2f}" if c.get("strategy_prob") is not None else "-"
    top = wrap(f"{c['baseline_system']} (no strategy optimisation): {c['baseline_reply']}")
    bottom = wrap(
        f"Planner: {c['strategy']} (p = {p})\nPreference Reasoner: {c['preference']}\n"
        f"Fact Retriever: {c['item']} -- {c['facts']}\nActor: {c['rso_reply']}"
    )
    head = wrap(
        f"INSPIRED dialogue {c['dialog_id']}, turn {c['turn']}. Last user message: "
        f"{c['history'].splitlines()[-1] if c['history'] else ''}"
    )
    n = sum(t.count("\n") + 1 for t in (top, bottom, head))
    fig = plt.figure(figsize=(9, 0.22 * n + 1.2))
    fig.text(0.02, 0.98, head, va="top", fontsize=8, family="monospace")
    fig.text(
        0.02,
        0.98 - (head.count("\n") + 2) / (n + 6),
        top,
        va="top",
        fontsize=8,
        family="monospace",
        bbox={"facecolor": "0.92", "edgecolor": "0.6"},
    )
    fig.text(
        0.02,
        0.98 - (head.count("\n") + top.count("\n") + 4) / (n + 6),
        bottom,
        va="top",
        fontsize=8,
        family="monospace",
        bbox={"facecolor": "#dbe9f6", "edgecolor": "#4c72b0"},
    )
    fig.suptitle("Fig. 6: case study (ours, from transcripts)", y=0.0, va="bottom", fontsize=9)
    return fig


# ---------------------------------------------------------------- training curves


def plot_confusion(cm: np.ndarray, title: str = "Planner strategy confusion (row-normalised)"):
    """Planner SFT: row-normalised confusion-matrix heat map -> matplotlib Figure."""
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(8.5, 7.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    names = [display_name(s) for s in STRATEGIES]
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), [f"{n} ({int(r)})" for n, r in zip(names, rows[:, 0])], fontsize=8)
    ax.set_xlabel("predicted strategy")
    ax.set_ylabel("true strategy (count)")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(cm[i, j])),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def plot_sft_curves(result):
    """Planner SFT (a :class:`rso_lib.train.sft.SFTResult`): training loss per step (and its running mean) with validation loss / accuracy / macro-F1
    per epoch -> matplotlib Figure."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    y = np.asarray(result.step_losses)
    a.plot(np.arange(1, len(y) + 1), y, lw=0.6, alpha=0.5, label="step loss")
    w = max(1, len(y) // 20)
    if len(y) >= w:
        a.plot(np.arange(w, len(y) + 1), np.convolve(y, np.ones(w) / w, mode="valid"), label=f"mean of {w}")
    ep_steps = [r["step"] for r in result.history]
    if result.history and "val_loss" in result.history[0]:
        a.plot(ep_steps, [r["val_loss"] for r in result.history], "o-", label="validation loss")
        b.plot(
            [r["epoch"] for r in result.history],
            [r["val_accuracy"] for r in result.history],
            "o-",
            label="val accuracy",
        )
        b.plot(
            [r["epoch"] for r in result.history],
            [r["val_macro_f1"] for r in result.history],
            "s-",
            label="val macro-F1",
        )
    b.xaxis.set_major_locator(MaxNLocator(integer=True))
    a.set(xlabel="optimizer step", ylabel="cross-entropy (Eq. 6)")
    b.set(xlabel="epoch", ylabel="score", ylim=(0, 1))
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_rl_curves(rows: Sequence[dict[str, Any]], title: str = "Planner RL (Eq. 7-8)"):
    """Planner RL, per update: mean reward, Accept-SR (the simulated user accepted), mean policy entropy, and the strategy shares
    (stacked)."""
    x = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    for ax, key, lab in zip(
        axes[:3],
        ("mean_reward", "accept_sr", "mean_entropy"),
        ("mean turn reward", "Accept-SR (user accepted)", "policy entropy (nats)"),
    ):
        ax.plot(x, [r[key] for r in rows], marker="o", ms=3)
        ax.set_xlabel("update")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
    axes[2].axhline(math.log(NUM_STRATEGIES), ls="--", c="grey", lw=0.8, label="uniform")
    axes[2].legend(fontsize=7)
    counts = np.array([[r.get(f"n_{s}", 0) for s in STRATEGIES] for r in rows], dtype=float)
    shares = counts / np.clip(counts.sum(1, keepdims=True), 1, None)
    colours = plt.get_cmap("tab20")(np.arange(NUM_STRATEGIES))  # 14 distinct colours (tab10 would repeat)
    axes[3].stackplot(x, shares.T, labels=[display_name(s) for s in STRATEGIES], colors=colours)
    axes[3].set_xlabel("update")
    axes[3].set_ylabel("strategy share")
    axes[3].legend(fontsize=5, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def fig_validity(card: pd.DataFrame):
    """The validity card (:mod:`rso_lib.eval.validity`): one line per check (a check guarding
    several metrics is drawn once), its measured value as a dot -- green when it passes, red when
    it fails -- and its threshold as a black bar. Values the card could not measure are listed as
    "n/a" at the left edge."""
    key = ["check", "role", "model"]
    metrics = card.groupby(key, sort=False)["metric"].agg(lambda m: ", ".join(x for x in m if x))
    df = card.drop_duplicates(key).reset_index(drop=True)
    labels = [
        f"{r} | {c}" + (f" [{metrics[(c, r, mo)]}]" if metrics[(c, r, mo)] else "")
        for c, r, mo in zip(df["check"], df["role"], df["model"])
    ]
    vals = pd.to_numeric(df["value"], errors="coerce")
    lo = -1.05 if (vals < 0).any() or (df["threshold"] < 0).any() else -0.05
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(df) + 1.2))
    y = np.arange(len(df))[::-1]
    colors = ["#2ca02c" if p else "#d62728" for p in df["passed"]]
    ax.scatter(vals.fillna(lo).clip(lo, 1.05), y, c=colors, s=36, zorder=3)
    ax.scatter(df["threshold"].clip(lo, 1.05), y, marker="|", c="black", s=160, zorder=2)
    for yi, v in zip(y, vals):
        ax.annotate(
            "n/a" if np.isnan(v) else f"{v:.2f}",
            (max(lo, min(v if not np.isnan(v) else lo, 1.05)), yi),
            textcoords="offset points",
            xytext=(6, -3),
            fontsize=7,
        )
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlim(lo, 1.25)
    ax.set_xlabel("measured value (dot: green pass, red fail) | threshold (black bar)")
    ax.set_title("Validity card: each LLM role on cases whose answer is known")
    fig.tight_layout()
    return fig
