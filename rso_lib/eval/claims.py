"""Does our run support the paper? One row per claim the paper makes, with the paper's numbers,
ours, the effect with a 95% bootstrap CI, and a verdict.

Verdicts (:func:`verdict`), for an effect ``d`` (ours: RSO minus the comparison) with CI [lo, hi]:

* claim "greater" (RSO is better): **supported** if lo > 0, **contradicted** if hi < 0, else
  **inconclusive at this sample size**;
* claim "not worse" (RSO matches or beats, Fig. 4): **supported** if lo > -margin (the
  non-inferiority margin of :data:`MARGINS`), **contradicted** if hi < 0 (the other system is
  clearly better), else inconclusive;
* a "best of all" claim (Table IV/V) is the conjunction over the baselines that ran: supported if
  every comparison is, contradicted if any is, else inconclusive; the row reports the effect
  against the closest baseline (smallest difference).

Inputs are per-dialogue tables (``SystemEval.per_dialogue`` of every run, concatenated, with a
``paper_row`` column naming the paper's row) and, for Fig. 3, the strategy of every system turn.
Nothing here runs a model.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from rso_lib.eval import paper_numbers as P
from rso_lib.eval.tables import PER_DIALOGUE, bootstrap_diff

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive at this sample size"
NOT_RUN = "not run"
NOT_MEASURABLE = "not measurable"

#: Non-inferiority margins of "matches or beats" claims: 5% of each metric's scale.
MARGINS = {
    "WI": 0.2,
    "Cred": 0.2,
    "PRS": 0.05,
    "Conv-SR": 0.05,
    "Rec-SR": 0.05,
    "Recall@1": 0.05,
    "Recall@5": 0.05,
    "Dist-2": 0.05,
    "entropy": 0.1,
    "strategies_used": 0.5,
}

TABLE_IV_CLAIMS = ("WI", "PRS", "Cred", "Conv-SR")
BASELINES = ("UniCRS", "BARCOR", "QwenCRS", "LlamaCRS", "InterCRS", "PCCRS")
#: Fig. 5 claims: module -> (the paper row of the ablated system, metric)
ABLATION_CLAIMS = {
    "Fact Retriever": ("w/o Fact Retriever", "Cred"),
    "Planner": ("w/o Planner", "Conv-SR"),
    "Preference Reasoner": ("w/o Preference Reasoner", "Conv-SR"),
}
COLUMNS = [
    "claim",
    "source",
    "dataset",
    "metric",
    "comparison",
    "paper_rso",
    "paper_other",
    "ours_rso",
    "ours_other",
    "effect",
    "effect_lo",
    "effect_hi",
    "n_rso",
    "n_other",
    "verdict",
]


def verdict(lo: float, hi: float, kind: str = "greater", margin: float = 0.0) -> str:
    """The verdict of one comparison from the CI of RSO's effect (see the module docstring)."""
    if lo is None or hi is None or np.isnan(lo) or np.isnan(hi):
        return NOT_MEASURABLE
    if kind == "greater":
        return SUPPORTED if lo > 0 else CONTRADICTED if hi < 0 else INCONCLUSIVE
    if kind == "not_worse":
        return SUPPORTED if lo > -margin else CONTRADICTED if hi < 0 else INCONCLUSIVE
    raise ValueError(f"kind must be 'greater' or 'not_worse', got {kind!r}")


def combine(verdicts: Sequence[str]) -> str:
    """A conjunction of comparisons: every one supported -> supported; any contradicted ->
    contradicted; none measurable -> not measurable; else inconclusive."""
    v = [x for x in verdicts if x != NOT_MEASURABLE]
    if not v:
        return NOT_MEASURABLE
    if CONTRADICTED in v:
        return CONTRADICTED
    return SUPPORTED if all(x == SUPPORTED for x in v) and len(v) == len(verdicts) else INCONCLUSIVE


def _values(pd_rows: pd.DataFrame, dataset: str, row: str, metric: str) -> np.ndarray:
    col = PER_DIALOGUE[metric]
    d = pd_rows[(pd_rows["dataset"] == dataset) & (pd_rows["paper_row"] == row)]
    if col not in d or d.empty:
        return np.array([])
    d = d.drop_duplicates("dialog_id")
    return pd.to_numeric(d[col], errors="coerce").dropna().to_numpy(dtype=float)


def _compare(x: np.ndarray, y: np.ndarray, rng, n_boot: int) -> tuple[float, float, float]:
    if len(x) == 0 or len(y) == 0:
        return (np.nan, np.nan, np.nan)
    return bootstrap_diff(x, y, rng, n_boot)


def _row(
    claim,
    source,
    ds,
    metric,
    comparison,
    paper_rso,
    paper_other,
    x,
    y,
    eff,
    kind="greater",
    margin=0.0,
    verdict_override=None,
):
    d, lo, hi = eff
    return {
        "claim": claim,
        "source": source,
        "dataset": ds,
        "metric": metric,
        "comparison": comparison,
        "paper_rso": paper_rso,
        "paper_other": paper_other,
        "ours_rso": float(x.mean()) if len(x) else np.nan,
        "ours_other": float(y.mean()) if len(y) else np.nan,
        "effect": d,
        "effect_lo": lo,
        "effect_hi": hi,
        "n_rso": len(x),
        "n_other": len(y),
        "verdict": verdict_override or verdict(lo, hi, kind, margin),
    }


def best_of_claims(
    per_dialogue: pd.DataFrame, metrics: Sequence[str], table: str, rng, n_boot: int, rso: str = "RSO"
) -> list[dict]:
    """ "RSO has the best <metric>" per dataset: RSO against every baseline that ran."""
    out = []
    for ds in dict.fromkeys(per_dialogue["dataset"]):
        ran = set(per_dialogue.loc[per_dialogue["dataset"] == ds, "paper_row"])
        base = [b for b in BASELINES if b in ran]
        for m in metrics:
            x = _values(per_dialogue, ds, rso, m)
            paper = P.TABLE_IV if table == "IV" else P.TABLE_V
            p_other = max(paper[ds][b][m] for b in BASELINES)
            claim = f"RSO has the best {m} (Table {table})"
            if rso not in ran or not base:
                out.append(
                    _row(
                        claim,
                        f"Table {table}",
                        ds,
                        m,
                        "RSO not run" if rso not in ran else "no baseline run",
                        paper[ds][rso][m],
                        p_other,
                        x,
                        np.array([]),
                        (np.nan,) * 3,
                        verdict_override=NOT_RUN,
                    )
                )
                continue
            if not len(x):  # RSO ran, but no dialogue gave a value (e.g. PRS: every case excluded)
                out.append(
                    _row(
                        claim,
                        f"Table {table}",
                        ds,
                        m,
                        "no RSO dialogue measurable",
                        paper[ds][rso][m],
                        p_other,
                        x,
                        np.array([]),
                        (np.nan,) * 3,
                        verdict_override=NOT_MEASURABLE,
                    )
                )
                continue
            comps = []
            for b in base:
                y = _values(per_dialogue, ds, b, m)
                comps.append((b, y, _compare(x, y, rng, n_boot)))
            verdicts = [verdict(e[1], e[2]) for _, _, e in comps]
            measurable = [c for c in comps if not np.isnan(c[2][0])]
            b, y, eff = min(measurable, key=lambda c: c[2][0]) if measurable else comps[0]
            out.append(
                _row(
                    claim,
                    f"Table {table}",
                    ds,
                    m,
                    f"vs closest of {', '.join(base)}: {b}",
                    paper[ds][rso][m],
                    paper[ds][b][m],
                    x,
                    y,
                    eff,
                    verdict_override=combine(verdicts),
                )
            )
    return out


def ablation_claims(per_dialogue: pd.DataFrame, rng, n_boot: int, rso: str = "RSO") -> list[dict]:
    """Fig. 5 / Sec. V-C: each module raises its metric (RSO with vs without it)."""
    out = []
    for ds in dict.fromkeys(per_dialogue["dataset"]):
        for module, (ablated, m) in ABLATION_CLAIMS.items():
            x, y = _values(per_dialogue, ds, rso, m), _values(per_dialogue, ds, ablated, m)
            claim = f"the {module} raises {m} (Fig. 5)"
            pw, pwo = P.fig5_value(ds, module, True), P.fig5_value(ds, module, False)
            if not len(x) or not len(y):
                out.append(
                    _row(
                        claim,
                        "Fig. 5",
                        ds,
                        m,
                        f"RSO vs {ablated}",
                        pw,
                        pwo,
                        x,
                        y,
                        (np.nan,) * 3,
                        verdict_override=NOT_RUN,
                    )
                )
                continue
            out.append(_row(claim, "Fig. 5", ds, m, f"RSO vs {ablated}", pw, pwo, x, y, _compare(x, y, rng, n_boot)))
    return out


def _entropy_stats(turns: pd.DataFrame) -> tuple[float, int]:
    p = turns["strategy"].value_counts(normalize=True).to_numpy(dtype=float)
    return float(-(p * np.log(p)).sum()) if len(p) else np.nan, int(len(p))


def strategy_claims(turns: pd.DataFrame, before: str, after: str, rng, n_boot: int) -> list[dict]:
    """Fig. 3 / Sec. V-B2: RL raises the entropy of the strategy distribution and the number of
    strategies used, over SFT. Dialogues are resampled (a dialogue's turns stay together) in each
    stage independently; the statistic is recomputed on each resample."""
    out = []
    stages = {s: g for s, g in turns.groupby("stage", sort=False)}
    for stat, idx in (("entropy", 0), ("strategies_used", 1)):
        claim = (
            "RL raises the "
            + ("entropy of the strategy distribution" if idx == 0 else "number of strategies used")
            + " over SFT (Fig. 3)"
        )
        if before not in stages or after not in stages:
            out.append(
                _row(
                    claim,
                    "Fig. 3",
                    "inspired",
                    stat,
                    f"{after} vs {before}",
                    None,
                    None,
                    np.array([]),
                    np.array([]),
                    (np.nan,) * 3,
                    verdict_override=NOT_RUN,
                )
            )
            continue
        a_g, b_g = stages[after], stages[before]
        a_ids, b_ids = list(dict.fromkeys(a_g["dialog_id"])), list(dict.fromkeys(b_g["dialog_id"]))
        a_by, b_by = dict(tuple(a_g.groupby("dialog_id"))), dict(tuple(b_g.groupby("dialog_id")))
        diffs = []
        for _ in range(n_boot):
            ra = pd.concat([a_by[a_ids[i]] for i in rng.integers(0, len(a_ids), len(a_ids))])
            rb = pd.concat([b_by[b_ids[i]] for i in rng.integers(0, len(b_ids), len(b_ids))])
            diffs.append(_entropy_stats(ra)[idx] - _entropy_stats(rb)[idx])
        lo, hi = np.quantile(diffs, [0.025, 0.975])
        va, vb = _entropy_stats(a_g)[idx], _entropy_stats(b_g)[idx]
        r = _row(
            claim,
            "Fig. 3",
            "inspired",
            stat,
            f"{after} vs {before}",
            None,
            None,
            np.array([va]),
            np.array([vb]),
            (float(va - vb), float(lo), float(hi)),
        )
        r["n_rso"], r["n_other"] = len(a_ids), len(b_ids)
        out.append(r)
    return out


def scale_claims(
    per_dialogue: pd.DataFrame,
    rso_row: str,
    others: Sequence[str],
    rng,
    n_boot: int,
    metrics: Sequence[str] = ("Recall@1", "Recall@5", "Cred"),
) -> list[dict]:
    """Fig. 4 / Sec. V-B3: RSO (small backbone) matches or beats the prompt-only CRS on larger
    backbones on Recall@1, Recall@5 and Cred ("not worse" within :data:`MARGINS`)."""
    out = []
    for ds in dict.fromkeys(per_dialogue["dataset"]):
        for other in others:
            for m in metrics:
                x, y = _values(per_dialogue, ds, rso_row, m), _values(per_dialogue, ds, other, m)
                claim = f"RSO matches or beats larger prompt-only CRSs on {m} (Fig. 4)"
                if not len(x) or not len(y):
                    out.append(
                        _row(
                            claim,
                            "Fig. 4",
                            ds,
                            m,
                            f"{rso_row} vs {other}",
                            None,
                            None,
                            x,
                            y,
                            (np.nan,) * 3,
                            verdict_override=NOT_RUN,
                        )
                    )
                    continue
                out.append(
                    _row(
                        claim,
                        "Fig. 4",
                        ds,
                        m,
                        f"{rso_row} vs {other}",
                        None,
                        None,
                        x,
                        y,
                        _compare(x, y, rng, n_boot),
                        kind="not_worse",
                        margin=MARGINS[m],
                    )
                )
    return out


def claims_table(
    per_dialogue: pd.DataFrame,
    strategy_turns: pd.DataFrame | None = None,
    stages: tuple[str, str] = ("SFT only", "after RL"),
    scale: pd.DataFrame | None = None,
    scale_rso: str | None = None,
    seed: int = 0,
    n_boot: int = 2000,
) -> pd.DataFrame:
    """Every claim of the paper the kit can check, one row each (see the module docstring).

    Args:
        per_dialogue: per-dialogue rows of Tables IV-V and Fig. 5 runs (``dataset``,
            ``paper_row``, ``dialog_id`` and the metric columns of
            :data:`rso_lib.eval.tables.PER_DIALOGUE`); ``paper_row`` names the paper's row
            ("RSO", "QwenCRS", ..., "w/o Planner").
        strategy_turns: Fig. 3 turns (``stage, dialog_id, turn_index, strategy``), or None.
        stages: (before, after) stage names of ``strategy_turns``.
        scale: per-dialogue rows of the Fig. 4 runs (``paper_row`` = their labels), or None.
        scale_rso: the RSO row of ``scale`` (default: the first label starting with "RSO").
        seed, n_boot: bootstrap seed and resamples.
    """
    rng = np.random.default_rng(seed)
    rows = best_of_claims(per_dialogue, TABLE_IV_CLAIMS, "IV", rng, n_boot)
    rows += best_of_claims(per_dialogue, ("Recall@1",), "V", rng, n_boot)
    rows += ablation_claims(per_dialogue, rng, n_boot)
    if strategy_turns is not None and len(strategy_turns):
        rows += strategy_claims(strategy_turns, stages[0], stages[1], rng, min(n_boot, 500))
    if scale is not None and len(scale):
        labels = list(dict.fromkeys(scale["paper_row"]))
        rso_row = scale_rso or next((x for x in labels if x.startswith("RSO")), None)
        if rso_row is not None:
            rows += scale_claims(scale, rso_row, [x for x in labels if x != rso_row], rng, n_boot)
    df = pd.DataFrame(rows, columns=COLUMNS)
    num = [c for c in df.columns if df[c].dtype.kind == "f"]
    df[num] = df[num].round(4)
    return df


def verdict_counts(claims: pd.DataFrame) -> dict[str, int]:
    """How many claims got each verdict (for the notebook's summary line and the README)."""
    return {k: int(v) for k, v in claims["verdict"].value_counts().items()}
