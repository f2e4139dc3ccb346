"""Table V's "Improve." column: relative improvement over the UniCRS row.

The paper (Table V caption): "Improve. denotes relative improvement: percentages (%) for gains
below 100%, and multiplicative factors (x) for gains above 100%, compared with the UniCRS
baseline". Its numbers are the **mean over Rec-SR, Recall@1 and Recall@5 of the relative change**
``(x - x_UniCRS) / x_UniCRS``, printed as a percentage below 1 (100%) and as ``gain x`` above
(e.g. BARCOR on INSPIRED: (+146.5% - 78.2% - 22.9%) / 3 = 15.1%; RSO on ReDial: (+3673% + 13.8% +
12.2%) / 3 = 12.3x). ``tests/test_baselines.py`` checks this reading against the paper's rows.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd

TABLE_V_METRICS = ("Rec-SR", "Recall@1", "Recall@5")


def relative_improvement(row: Mapping[str, float | None], reference: Mapping[str, float | None],
                         metrics: Sequence[str] = TABLE_V_METRICS) -> float | None:
    """Mean of ``(row[m] - reference[m]) / reference[m]`` over ``metrics`` (a fraction: 0.151 =
    15.1%). None when a value is missing or a reference value is 0 (a relative change from 0 is
    undefined: say so rather than print infinity)."""
    gains = []
    for m in metrics:
        x, r = row.get(m), reference.get(m)
        if x is None or r is None or (isinstance(x, float) and math.isnan(x)) or (isinstance(r, float) and math.isnan(r)) \
                or r == 0:
            return None
        gains.append((x - r) / r)
    return sum(gains) / len(gains)


def format_improvement(v: float | None) -> str:
    """The paper's format: ``15.1%`` below 100%, ``7.4×`` at or above; ``-`` when undefined."""
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" if v < 1 else f"{v:.1f}×"


def add_improve_column(df: pd.DataFrame, reference: str = "UniCRS", system_col: str = "system",
                       dataset_col: str = "dataset", metrics: Sequence[str] = TABLE_V_METRICS) -> pd.DataFrame:
    """``df`` (one row per dataset and system, columns ``metrics``) with ``Improve.`` (the paper's
    text) and ``Improve.value`` (the fraction) against the ``reference`` row of the same dataset;
    the reference row itself gets ``-``. Raises when a dataset has no reference row."""
    out = df.copy()
    vals: list[float | None] = []
    for _, r in out.iterrows():
        ref = out[(out[dataset_col] == r[dataset_col]) & (out[system_col] == reference)]
        if ref.empty:
            raise ValueError(f"add_improve_column: dataset {r[dataset_col]!r} has no {reference!r} row "
                             f"(systems: {sorted(out.loc[out[dataset_col] == r[dataset_col], system_col])})")
        vals.append(None if r[system_col] == reference else relative_improvement(r, ref.iloc[0], metrics))
    out["Improve.value"] = vals
    out["Improve."] = [format_improvement(v) for v in vals]
    return out
