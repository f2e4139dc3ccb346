"""The paper's own numbers (arXiv 2509.26093), printed beside ours in every table and figure.

Transcription status
--------------------
Only numbers read from the paper itself may go here; a number that could not be read stays
``None`` (shown as empty, never guessed). In the session that wrote this module the paper's
tables and figures could not be read offline (the stored copies of the arXiv page and of the
authors' repository ym689/RSO expose the abstract and code, not Table IV/V or Figures 4/5), so
every value below is ``None`` and :data:`TRANSCRIBED` is False. To fill them in: copy each number
from the PDF into the dicts below (keep the paper's scale: PRS/Conv-SR/Rec-SR/Recall as fractions
or percentages exactly as printed, and set :data:`PERCENT` accordingly), flip
:data:`TRANSCRIBED`, and the tables pick them up.

What *is* known from the paper's text and used for the layout: the systems of Table IV (UniCRS,
BARCOR, the prompt-only LLM CRSs QwenCRS and LlamaCRS, InterCRS, PC-CRS, RSO), the datasets
(INSPIRED, ReDial) and the metrics of section IV-C (WI, PRS, Cred, Conv-SR, Dist-2, Rec-SR,
Recall@1, Recall@5).
"""

from __future__ import annotations

from typing import Optional

SOURCE = "Zhao, Yan et al., Reinforced Strategy Optimization for Conversational Recommender Systems via Network-of-Experts, arXiv:2509.26093"
TRANSCRIBED = False  # True once the dicts below hold the paper's printed numbers
PERCENT = False  # True if the transcribed rates are percentages (0-100) rather than fractions

DATASETS = ("inspired", "redial")
TABLE_IV_SYSTEMS = ("UniCRS", "BARCOR", "QwenCRS", "LlamaCRS", "InterCRS", "PC-CRS", "RSO")
METRICS = ("WI", "PRS", "Cred", "Conv-SR", "Dist-2", "Rec-SR", "Recall@1", "Recall@5")
ABLATIONS = ("RSO", "w/o Fact Retriever", "w/o Planner", "w/o Preference Reasoner")

Num = Optional[float]


def _empty(systems) -> dict[str, dict[str, dict[str, Num]]]:
    return {ds: {s: {m: None for m in METRICS} for s in systems} for ds in DATASETS}


# TABLE_IV[dataset][system][metric]
TABLE_IV: dict[str, dict[str, dict[str, Num]]] = _empty(TABLE_IV_SYSTEMS)
# Ablations (the kit's Table V / Fig. 5): TABLE_V[dataset][variant][metric]
TABLE_V: dict[str, dict[str, dict[str, Num]]] = _empty(ABLATIONS)
# Fig. 4 (scale): FIG4[dataset][f"{system} ({backbone})"][metric]
FIG4: dict[str, dict[str, dict[str, Num]]] = {ds: {} for ds in DATASETS}


def paper_value(table: str, dataset: str, system: str, metric: str) -> Num:
    """The paper's number for one cell, or None if the paper gives none / it is not transcribed.

    Args:
        table: ``"IV"``, ``"V"`` or ``"fig4"``.
        dataset: ``"inspired"`` | ``"redial"`` (case-insensitive).
        system: the paper's row name (see :data:`TABLE_IV_SYSTEMS`, :data:`ABLATIONS`).
        metric: one of :data:`METRICS`.
    """
    src = {"IV": TABLE_IV, "V": TABLE_V, "fig4": FIG4}[table]
    v = src.get(dataset.lower(), {}).get(system, {}).get(metric)
    if v is None:
        return None
    if PERCENT and metric in ("PRS", "Conv-SR", "Rec-SR", "Recall@1", "Recall@5", "Dist-2"):
        return float(v) / 100.0
    return float(v)


def status_note() -> str:
    """One line for captions and meta files saying where the paper columns come from."""
    if TRANSCRIBED:
        return f"Paper numbers: {SOURCE}."
    return ("Paper numbers: not transcribed (the paper's tables could not be read offline when this kit "
            "was built); see rso_lib/eval/paper_numbers.py to add them.")
