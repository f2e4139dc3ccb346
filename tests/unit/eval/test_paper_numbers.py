"""The transcribed paper numbers, checked cell by cell against the paper's text, and the rules
derived from them (Table V's "Improve.", Table III from configs, Fig. 5 by module, claims)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from repo_paths import REPO_ROOT

from rso_lib.eval import claims as C
from rso_lib.eval import paper_numbers as P

# The paper's text sits in shared/paper beside the data (never in this repository).
_NAME = Path("paper") / "rso-arxiv-2509.26093.txt"
CANDIDATES = [REPO_ROOT.parent / "shared" / _NAME]
if os.environ.get("RSO_DATA_DIR"):
    CANDIDATES.insert(0, Path(os.environ["RSO_DATA_DIR"]).resolve().parent / _NAME)


@pytest.fixture(scope="module")
def paper_text():
    found = next((p for p in CANDIDATES if p.is_file()), None)
    if found is None:
        pytest.skip(
            f"the paper's text is not at {' or '.join(map(str, CANDIDATES))} (shared/paper of the steering repo)"
        )
    return found.read_text(encoding="utf-8")


def _table_rows(text: str, caption: str) -> dict[str, list[str]]:
    """Rows ``Name v1 v2 ...`` of the table whose caption starts with ``caption``."""
    block = text[text.index(caption) :]
    block = block[: block.index("\n\n", block.index("Methods"))]
    rows = {}
    for line in block.splitlines():
        parts = line.split()
        if parts and parts[0] in P.TABLE_IV_SYSTEMS:
            parts = [p.replace("\\times", "") for p in parts[1:]]  # "7.4×\times" (HTML + LaTeX)
            rows[line.split()[0]] = [p for p in parts if re.match(r"^[\d.]+(%|×)?$", p) or p == "-"]
    return rows


def test_table_iv_every_cell_matches_the_text(paper_text):
    rows = _table_rows(paper_text, "TABLE IV:")
    assert set(rows) == set(P.TABLE_IV_SYSTEMS)
    for system, cells in rows.items():
        ours = [P.TABLE_IV[ds][system][m] for ds in P.DATASETS for m in P.TABLE_IV_METRICS]
        assert [float(c) for c in cells] == pytest.approx(ours), system


def test_table_v_every_cell_and_improve_matches_the_text(paper_text):
    rows = _table_rows(paper_text, "TABLE V:")
    for system, cells in rows.items():
        ins, red = cells[: len(cells) // 2], cells[len(cells) // 2 :]
        for ds, part in (("inspired", ins), ("redial", red)):
            assert [float(c) for c in part[:3]] == pytest.approx([P.TABLE_V[ds][system][m] for m in P.TABLE_V_METRICS])
            if system != "UniCRS":
                assert part[3] == P.TABLE_V_IMPROVE[ds][system]


def test_table_ii_and_sec_vc_numbers_are_in_the_text(paper_text):
    flat = " ".join(paper_text.split())
    assert "Inspired [2] 1,001 35,811 1,783" in flat and "ReDial [34] 10,006 182,150 51,699" in flat
    assert P.TABLE_II["inspired"]["utterances"] == 35811 and P.TABLE_II["redial"]["unique_items"] == 51699
    for ds, name in (("inspired", "Inspired"), ("redial", "ReDial")):
        for module, (_metric, without, with_) in P.FIG5[ds].items():
            # the text quotes "from <without> to <with>" or, for a drop, "falls from <with> to <without>"
            assert (
                f"from {without:.2f} to {with_:.2f} on {name}" in flat
                or f"from {with_:.2f} to {without:.2f} on {name}" in flat
            ), (ds, module)


def test_improvement_rule_reproduces_every_printed_value():
    """The formula behind "Improve." was worked out from the printed rows; it must reproduce all
    twelve of them, not only the two in its docstring."""
    for ds in P.DATASETS:
        ref = P.TABLE_V[ds]["UniCRS"]
        for system, printed in P.TABLE_V_IMPROVE[ds].items():
            assert P.format_improvement(P.improvement_over(P.TABLE_V[ds][system], ref)) == printed, (ds, system)
    assert np.isnan(
        P.improvement_over(
            {"Rec-SR": 0.5, "Recall@1": 0.5, "Recall@5": 0.5}, {"Rec-SR": 0.0, "Recall@1": 0.5, "Recall@5": 0.5}
        )
    )


def test_table_iii_derived_from_system_configs():
    from rso_lib.dialogue.systems import SYSTEMS
    from rso_lib.eval.tables import capability_table

    t = capability_table(
        {
            "QwenCRS": SYSTEMS["PROMPT_ONLY"],
            "PCCRS": SYSTEMS["PCCRS"],
            "RSO": SYSTEMS["RSO"],
            "w/o Fact Retriever": SYSTEMS["NO_RETRIEVER"],
        }
    ).set_index("system")
    assert t.loc["RSO", ["Learnable", "Preference Reasoning", "Fact Grounding", "Strategy Optimization"]].all()
    assert not t.loc["QwenCRS", ["Learnable", "Preference Reasoning", "Fact Grounding"]].any()
    assert t.loc["PCCRS", "Fact Grounding"] and not t.loc["PCCRS", "Strategy Optimization"]
    assert not t.loc["w/o Fact Retriever", "Fact Grounding"]


# ------------------------------------------------------------------ claims: constructed evaluations
def _pd(ds, row, metric_col, values):
    """One system's per-dialogue rows; every system is run on the same users u0, u1, ... (the
    claims table pairs them by dialogue id)."""
    return pd.DataFrame(
        {"dataset": ds, "paper_row": row, "dialog_id": [f"u{i}" for i in range(len(values))], metric_col: values}
    )


def _per_dialogue(rso, others, col="cred", ds="inspired"):
    return pd.concat([_pd(ds, "RSO", col, rso)] + [_pd(ds, r, col, v) for r, v in others.items()], ignore_index=True)


def _cred_claim(pdl, **kw):
    t = C.claims_table(pdl, settings=C.Settings(n_boot=200, n_perm=2000, **kw))
    return t[(t["metric"] == "Cred") & (t["source"] == "Table IV")].iloc[0]


@pytest.mark.parametrize(
    "rso,other,want",
    [
        ([4.0, 4.2, 3.9, 4.1] * 10, [2.0, 2.1, 1.9, 2.2] * 10, C.SUPPORTED),  # clearly better
        ([2.0, 2.1, 1.9, 2.2] * 10, [4.0, 4.2, 3.9, 4.1] * 10, C.CONTRADICTED),  # clearly worse
        ([1.0, 5.0, 3.0] * 4, [5.0, 1.0, 3.1] * 4, C.INCONCLUSIVE),  # noise
        ([4.0, 4.2, 3.9], [2.0, 2.1, 1.9], C.TOO_FEW),  # clearly better, but 3 users
    ],
)
def test_best_of_claim_known_answers(rso, other, want):
    pdl = _per_dialogue(rso, {"QwenCRS": other, "PCCRS": [1.0] * len(rso)})
    row = _cred_claim(pdl)
    assert row["verdict"] == want
    assert row["paper_rso"] == P.TABLE_IV["inspired"]["RSO"]["Cred"]


def test_best_of_claim_needs_every_baseline():
    """Better than one baseline but tied with another: the "best of all" claim is not supported."""
    pdl = _per_dialogue([4.0, 4.2, 3.9, 4.1] * 10, {"QwenCRS": [2.0] * 40, "PCCRS": [4.0, 4.2, 3.9, 4.1] * 10})
    row = _cred_claim(pdl)
    assert row["verdict"] == C.INCONCLUSIVE and row["binding"].startswith("PCCRS")
    assert row["beats"] == "QwenCRS" and row["ties"] == "PCCRS"


def test_ablation_claims_known_answers():
    pdl = pd.concat(
        [_pd("redial", "RSO", "conv_success", [1.0] * 30), _pd("redial", "w/o Planner", "conv_success", [0.0] * 30)],
        ignore_index=True,
    )
    rows = C.claims_table(pdl, settings=C.Settings(n_boot=200)).set_index("claim")
    assert rows.loc["the Planner raises Conv-SR (Fig. 5)", "verdict"] == C.SUPPORTED
    assert rows.loc["the Planner raises Conv-SR (Fig. 5)", "paper_rso"] == 0.98
    assert rows.loc["the Planner raises Conv-SR (Fig. 5)", "test"] == "exact McNemar"
    assert rows.loc["the Fact Retriever raises Cred (Fig. 5)", "verdict"] == C.NOT_RUN


def test_claim_with_no_measurable_dialogue_is_too_few_not_run_without_rso():
    pdl = _per_dialogue([np.nan] * 12, {"QwenCRS": [3.0] * 12})
    row = _cred_claim(pdl)
    assert row["verdict"] == C.TOO_FEW and row["n_paired"] == 0 and row["n_dropped"] == 12
    only_baseline = pdl[pdl["paper_row"] != "RSO"]
    assert _cred_claim(only_baseline)["verdict"] == C.NOT_RUN
