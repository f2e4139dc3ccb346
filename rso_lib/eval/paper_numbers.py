"""The paper's own numbers (arXiv 2509.26093), printed beside ours in every table and figure.

Transcribed by hand from the paper's text (``shared/paper/rso-arxiv-2509.26093.txt``, extracted
from the arXiv HTML); ``tests/unit/eval/test_paper_numbers.py`` checks every cell of Tables II, IV and V
and the Sec. V-C ablation numbers against that file when it is present.

What the paper prints, and where:

* **Table II** -- dataset statistics (#dialogues, #utterances, #unique items).
* **Table III** -- capabilities of each method (learnable, preference reasoning, fact grounding,
  strategy optimisation); its check marks are images lost in the text extraction, so the kit
  derives its Table III from the system configurations (``rso_lib.dialogue.systems``).
* **Table IV** -- WI, PRS, Cred, Conv-SR, Dist-2 for seven systems on both datasets.
* **Table V** -- recommendation accuracy: Rec-SR, Recall@1, Recall@5 and "Improve." (relative
  improvement over UniCRS; see :func:`improvement_over`).
* **Fig. 5 / Sec. V-C** -- the ablation numbers quoted in the text: Cred with/without the Fact
  Retriever, Conv-SR with/without the Planner and the Preference Reasoner.
* **Fig. 3 and Fig. 4** -- no numbers in the text (the figures are images): nothing is
  transcribed for them, and their captions say so.
"""

from __future__ import annotations

SOURCE = (
    "Zhao, Yan et al., Reinforced Strategy Optimization for Conversational Recommender Systems via "
    "Network-of-Experts, arXiv:2509.26093"
)
TRANSCRIBED = True

DATASETS = ("inspired", "redial")
TABLE_IV_SYSTEMS = ("UniCRS", "BARCOR", "QwenCRS", "LlamaCRS", "InterCRS", "PCCRS", "RSO")
TABLE_IV_METRICS = ("WI", "PRS", "Cred", "Conv-SR", "Dist-2")
TABLE_V_METRICS = ("Rec-SR", "Recall@1", "Recall@5")
METRICS = TABLE_IV_METRICS + TABLE_V_METRICS
#: Fig. 5's panels: (module, metric the paper quotes for it).
FIG5_PANELS = (("Fact Retriever", "Cred"), ("Planner", "Conv-SR"), ("Preference Reasoner", "Conv-SR"))

Num = float | None

# Table II: dataset -> statistic -> value
TABLE_II: dict[str, dict[str, int]] = {
    "inspired": {"dialogues": 1001, "utterances": 35811, "unique_items": 1783},
    "redial": {"dialogues": 10006, "utterances": 182150, "unique_items": 51699},
}


def _rows(metrics: tuple[str, ...], rows: dict[str, tuple[float, ...]]) -> dict[str, dict[str, float]]:
    return {s: dict(zip(metrics, v, strict=True)) for s, v in rows.items()}


# Table IV[dataset][system][metric], as printed (4 decimals).
TABLE_IV: dict[str, dict[str, dict[str, float]]] = {
    "inspired": _rows(
        TABLE_IV_METRICS,
        {
            "UniCRS": (2.1010, 0.8542, 1.1187, 0.2121, 0.7567),
            "BARCOR": (2.5758, 0.8654, 1.5294, 0.4848, 0.9861),
            "QwenCRS": (3.5556, 0.9667, 0.0000, 0.9596, 0.9160),
            "LlamaCRS": (3.6768, 0.9778, 1.1313, 0.7475, 0.9427),
            "InterCRS": (3.5354, 1.0000, 1.2429, 0.8081, 0.9564),
            "PCCRS": (3.5152, 0.9231, 3.2884, 0.8889, 0.8571),
            "RSO": (3.8788, 1.0000, 3.8333, 0.9798, 0.9979),
        },
    ),
    "redial": _rows(
        TABLE_IV_METRICS,
        {
            "UniCRS": (2.2879, 0.7059, 0.8981, 0.3838, 0.7909),
            "BARCOR": (2.5000, 0.8593, 2.0187, 0.4949, 0.9941),
            "QwenCRS": (3.3081, 0.8452, 0.2871, 0.9444, 0.9170),
            "LlamaCRS": (3.6869, 0.9821, 1.2190, 0.8232, 0.9352),
            "InterCRS": (3.6616, 0.9750, 1.2797, 0.8283, 0.9163),
            "PCCRS": (3.5152, 0.9231, 3.2560, 0.8889, 0.8381),
            "RSO": (3.8393, 0.9783, 3.6271, 0.9798, 0.9974),
        },
    ),
}

# Table V[dataset][system][metric] (3 decimals), and its "Improve." column exactly as printed.
TABLE_V: dict[str, dict[str, dict[str, float]]] = {
    "inspired": _rows(
        TABLE_V_METRICS,
        {
            "UniCRS": (0.172, 0.556, 0.838),
            "BARCOR": (0.424, 0.121, 0.646),
            "QwenCRS": (0.384, 0.354, 0.687),
            "LlamaCRS": (0.576, 0.475, 0.778),
            "InterCRS": (0.323, 0.485, 0.758),
            "PCCRS": (0.525, 0.586, 0.768),
            "RSO": (0.535, 0.758, 0.889),
        },
    ),
    "redial": _rows(
        TABLE_V_METRICS,
        {
            "UniCRS": (0.015, 0.652, 0.788),
            "BARCOR": (0.354, 0.495, 0.707),
            "QwenCRS": (0.308, 0.308, 0.652),
            "LlamaCRS": (0.450, 0.384, 0.647),
            "InterCRS": (0.222, 0.384, 0.677),
            "PCCRS": (0.566, 0.596, 0.833),
            "RSO": (0.566, 0.742, 0.884),
        },
    ),
}
TABLE_V_IMPROVE: dict[str, dict[str, str]] = {
    "inspired": {
        "BARCOR": "15.1%",
        "QwenCRS": "23.0%",
        "LlamaCRS": "71.1%",
        "InterCRS": "21.8%",
        "PCCRS": "67.4%",
        "RSO": "84.5%",
    },
    "redial": {
        "BARCOR": "7.4×",
        "QwenCRS": "6.3×",
        "LlamaCRS": "9.5×",
        "InterCRS": "4.4×",
        "PCCRS": "12.2×",
        "RSO": "12.3×",
    },
}

# Fig. 5, as quoted in Sec. V-C: FIG5[dataset][module] = (metric, without the module, with it).
FIG5: dict[str, dict[str, tuple[str, float, float]]] = {
    "inspired": {
        "Fact Retriever": ("Cred", 2.73, 3.83),
        "Planner": ("Conv-SR", 0.92, 0.98),
        "Preference Reasoner": ("Conv-SR", 0.94, 0.98),
    },
    "redial": {
        "Fact Retriever": ("Cred", 2.76, 3.63),
        "Planner": ("Conv-SR", 0.94, 0.98),
        "Preference Reasoner": ("Conv-SR", 0.96, 0.98),
    },
}

# Fig. 4 and Fig. 3: images only, no number in the text.
FIG4: dict[str, dict[str, dict[str, Num]]] = {ds: {} for ds in DATASETS}
NO_NUMBERS_NOTE = "the paper gives no numbers for this figure (image only); ours are shown alone"


def paper_value(table: str, dataset: str, system: str, metric: str) -> Num:
    """The paper's number for one cell, or None where the paper gives none.

    Args:
        table: ``"IV"``, ``"V"`` or ``"fig4"`` (any other name: no paper numbers).
        dataset: ``"inspired"`` | ``"redial"`` (case-insensitive).
        system: the paper's row name (see :data:`TABLE_IV_SYSTEMS`).
        metric: a Table IV metric for ``"IV"``, a Table V metric for ``"V"``.
    """
    src = {"IV": TABLE_IV, "V": TABLE_V, "fig4": FIG4}.get(table, {})
    v = src.get(dataset.lower(), {}).get(system, {}).get(metric)
    return None if v is None else float(v)


def fig5_value(dataset: str, module: str, with_module: bool) -> Num:
    """Sec. V-C's number for one Fig. 5 bar (None if the paper quotes none)."""
    entry = FIG5.get(dataset.lower(), {}).get(module)
    if entry is None:
        return None
    return entry[2] if with_module else entry[1]


def improvement_over(
    values: dict[str, float], reference: dict[str, float], metrics: tuple[str, ...] = TABLE_V_METRICS
) -> float:
    """Table V's "Improve.": the mean over Rec-SR, Recall@1 and Recall@5 of the relative change
    against the reference row (UniCRS), ``mean_m (x_m / ref_m - 1)``.

    Worked from the printed rows (the caption does not give the formula): RSO on INSPIRED,
    ((0.535/0.172 - 1) + (0.758/0.556 - 1) + (0.889/0.838 - 1)) / 3 = 0.845 -> "84.5%"; BARCOR on
    ReDial, ((0.354/0.015 - 1) + (0.495/0.652 - 1) + (0.707/0.788 - 1)) / 3 = 7.42 -> "7.4×".
    A metric whose reference value is 0 makes the ratio undefined: NaN.
    """
    rel = []
    for m in metrics:
        ref = reference.get(m)
        x = values.get(m)
        if ref is None or x is None or ref == 0:
            return float("nan")
        rel.append(float(x) / float(ref) - 1.0)
    return sum(rel) / len(rel)


def format_improvement(v: float) -> str:
    """The paper's printing of "Improve.": a percentage below 100 %, a factor (×) at or above."""
    if v != v:  # NaN
        return ""
    return f"{v * 100:.1f}%" if v < 1.0 else f"{v:.1f}×"


def status_note() -> str:
    """One line for captions and meta files saying where the paper columns come from."""
    return f"Paper numbers: {SOURCE} (transcribed from its text; Fig. 3 and Fig. 4 print none)."
