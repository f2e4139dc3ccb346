"""Between-seed spread of the claims that rest on RL.

One RL run is one draw: its Planner depends on the seed (the order of the training users, the
sampled strategies and LLM replies). Notebook 03 trains one Planner per seed of ``RL_SEEDS``;
the notebooks that evaluate the RL claims run every seed's Planner on the same simulated users
(same evaluation seed: only the Planner differs) and write each seed's value here:

* Fig. 3 (notebook 05): the entropy of the strategy distribution and the number of strategies used
  after RL, and their difference from the SFT-only Planner's (:func:`fig3_seed_values`);
* Fig. 5, Planner row (notebook 06): RSO's Conv-SR and its paired difference from RSO without the
  Planner (``NO_PLANNER``, which has no Planner and so no RL seed: :func:`fig5_seed_values`).

:func:`spread_table` turns the per-seed values into one row per quantity with each seed's value
and the between-seed mean, sd (n - 1), min and max; an effect whose sign is not the same for every
seed is ``sign_stable = False``. :func:`add_seed_spread` writes that spread beside each RL claim
of the claims table and flags a claim whose effect changes sign across seeds as "not stable
across seeds". The verdicts themselves are unchanged: they are the first seed's (the run every
other notebook uses), with its own paired test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from rso_lib.eval import claims as C
from rso_lib.eval import paired as S
from rso_lib.eval.tables import PER_DIALOGUE

#: The Fig. 5 claim that rests on RL: RSO (RL Planner) against RSO without the Planner.
FIG5_PLANNER = next(c for c in C.CLAIMS if c.source == "Fig. 5" and c.comparators == ("w/o Planner",))
KEYS = ["claim", "source", "dataset", "metric", "comparator", "quantity"]
EFFECT = "effect"  # the quantity whose sign the claim is about (the RL side minus the comparator)
UNSTABLE = "not stable across seeds"


def _long(claim: str, source: str, dataset: str, metric: str, comparator: str, seed: int, rl: float, eff: float):
    base = dict(claim=claim, source=source, dataset=dataset, metric=metric, comparator=comparator, rl_seed=seed)
    return [{**base, "quantity": "RL", "value": rl}, {**base, "quantity": EFFECT, "value": eff}]


def fig3_seed_values(before: pd.DataFrame, after_by_seed: Mapping[int, pd.DataFrame], before_name: str) -> pd.DataFrame:
    """Per-seed Fig. 3 statistics.

    Args:
        before: the SFT-only stage's turns (``dialog_id, strategy``), the same for every seed.
        after_by_seed: each RL seed's turns after RL, on the same users.
        before_name: the SFT stage's name (the claims table's comparator).

    Returns:
        long rows ``claim, source, dataset, metric, comparator, quantity, rl_seed, value``:
        quantity ``RL`` the statistic after RL, ``effect`` after RL minus SFT only (what the
        claims table's ``effect`` is for the first seed).
    """
    base = C.strategy_stats(before)
    rows = []
    for seed, turns in after_by_seed.items():
        st = C.strategy_stats(turns)
        for stat, text in C.FIG3_CLAIMS.items():
            rows += _long(text, "Fig. 3", "inspired", stat, before_name, seed, st[stat], st[stat] - base[stat])
    return pd.DataFrame(rows)


def fig5_seed_values(per_dialogue: pd.DataFrame, rso_by_seed: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """Per-seed Fig. 5 Planner row: RSO's Conv-SR with each seed's RL Planner and its paired
    difference from RSO without the Planner, per dataset.

    Args:
        per_dialogue: the ablation runs' per-dialogue rows (``dataset, paper_row, dialog_id``,
            optionally ``seed``, the metric columns); the comparator's rows are read from it.
        rso_by_seed: each RL seed's RSO per-dialogue rows, on the same users.

    Returns:
        long rows as :func:`fig3_seed_values` (``RL``: RSO's mean over the paired users, as the
        claims table's ``ours_rso``; ``effect``: the mean paired difference). A dataset where the
        comparator did not run has no row.
    """
    col, cmp_row = PER_DIALOGUE[FIG5_PLANNER.metric], FIG5_PLANNER.comparators[0]
    rows = []
    for seed, rso in rso_by_seed.items():
        for ds, mine in rso.groupby("dataset", sort=False):
            other = per_dialogue[(per_dialogue["dataset"] == ds) & (per_dialogue["paper_row"] == cmp_row)]
            if not len(other):
                continue
            p = S.pair(_series(mine, col), _series(other, col))
            rl, eff = (float(p.x.mean()), float((p.x - p.y).mean())) if len(p.x) else (math.nan, math.nan)
            rows += _long(FIG5_PLANNER.text, "Fig. 5", ds, FIG5_PLANNER.metric, cmp_row, seed, rl, eff)
    return pd.DataFrame(rows)


def _series(d: pd.DataFrame, col: str) -> pd.Series:
    """Per-user values keyed as the claims table pairs them (dialogue id, and seed if present)."""
    key = d["dialog_id"].astype(str)
    if "seed" in d.columns:
        key = key + "|" + d["seed"].astype(str)
    return pd.Series(pd.to_numeric(d[col], errors="coerce").to_numpy(dtype=float), index=key.to_numpy(dtype=str))


def sign_stable(values: np.ndarray) -> bool | None:
    """Whether every seed's effect has the same sign (all > 0, all < 0, or all 0); None with
    fewer than two finite values (nothing to compare)."""
    v = values[np.isfinite(values)]
    if len(v) < 2:
        return None
    return bool(len(set(np.sign(v).tolist())) == 1)


def spread_table(values: pd.DataFrame) -> pd.DataFrame:
    """One row per (claim, dataset, quantity), in the order first seen: ``seed_<s>`` for each
    seed's value, then ``n_seeds`` (seeds with a finite value), ``mean``, ``sd`` (n - 1; NaN for
    one seed), ``min``, ``max`` and, for effects, ``sign_stable``."""
    stats = ["n_seeds", "mean", "sd", "min", "max", "sign_stable"]
    if not len(values):
        return pd.DataFrame(columns=[*KEYS, *stats])
    seeds = list(dict.fromkeys(values["rl_seed"]))
    rows = []
    for key, g in values.groupby(KEYS, sort=False, dropna=False):
        by_seed = g.drop_duplicates("rl_seed").set_index("rl_seed")["value"].reindex(seeds).to_numpy(dtype=float)
        v = by_seed[np.isfinite(by_seed)]
        rows.append(
            {
                **dict(zip(KEYS, key)),
                **{f"seed_{s}": x for s, x in zip(seeds, by_seed)},
                "n_seeds": len(v),
                "mean": float(v.mean()) if len(v) else math.nan,
                "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
                "min": float(v.min()) if len(v) else math.nan,
                "max": float(v.max()) if len(v) else math.nan,
                "sign_stable": sign_stable(by_seed) if key[KEYS.index("quantity")] == EFFECT else None,
            }
        )
    return pd.DataFrame(rows)


def _describe(r: pd.Series) -> str:
    return (
        f"{int(r['n_seeds'])} RL seeds: mean {r['mean']:.4g}, sd {r['sd']:.4g}, min {r['min']:.4g}, max {r['max']:.4g}"
    )


def add_seed_spread(claims: pd.DataFrame, spread: pd.DataFrame | None) -> pd.DataFrame:
    """The claims table with a ``seed_spread`` column (before ``verdict``): for each RL claim run
    with two or more RL seeds, the between-seed spread of its effect; a claim whose effect does
    not have one sign across the seeds gets the flag "not stable across seeds", and the notes
    name it. Verdicts are not changed (they are the first seed's run's). With no spread table, or
    one seed, the column is empty and the notes say so."""
    out = claims.copy()
    out.attrs = {**claims.attrs, "notes": list(claims.attrs.get("notes", []))}
    col = pd.Series([""] * len(out), index=out.index, dtype=object)
    notes = out.attrs["notes"]
    eff = spread[spread["quantity"] == EFFECT] if spread is not None and len(spread) else None
    if eff is None or not (eff["n_seeds"] > 1).any():
        notes.append("one RL seed (RL_SEEDS): the RL claims (Fig. 3, Fig. 5 Planner row) have no between-seed spread")
    else:
        unstable = []
        for _, r in eff[eff["n_seeds"] > 1].iterrows():
            hit = (out["claim"] == r["claim"]) & (out["dataset"] == r["dataset"])
            for i in out.index[hit]:
                col[i] = _describe(r)
                if str(r["sign_stable"]).strip().lower() == "false":  # a bool, or read back from the CSV
                    seeds = ", ".join(f"{c[5:]}: {r[c]:+.4g}" for c in eff.columns if c.startswith("seed_"))
                    flag = f"{UNSTABLE} (effect by seed {seeds})"
                    out.loc[i, "flags"] = "; ".join(x for x in (out.loc[i, "flags"], flag) if x)
                    unstable.append(f"{r['claim']} [{r['dataset']}]")
        n = int(eff["n_seeds"].max())
        notes.append(
            f"{n} RL seeds: the RL claims' verdicts are the first seed's; seed_spread gives the between-seed spread "
            + (
                f"and the effect changes sign across seeds ({UNSTABLE}) for: {'; '.join(unstable)}"
                if unstable
                else "and every RL claim's effect has the same sign for every seed"
            )  # fmt: skip
        )
    at = out.columns.get_loc("verdict") if "verdict" in out.columns else len(out.columns)
    out.insert(at, "seed_spread", col)
    return out
