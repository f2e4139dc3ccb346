"""What each notebook must produce, asserted from the result files of a chain run.

``make test`` runs the notebooks under nbval in a temporary output root (``RSO_ROOT``) and then
this module with ``RSO_CHAIN_ROOT`` pointing at it; the expected counts are read from the smoke
parameters (``params/base.yaml`` + ``params/smoke.yaml``), never typed here. Without
``RSO_CHAIN_ROOT`` (a plain ``pytest tests``) the module is skipped.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from rso_lib import run

ROOT = os.environ.get("RSO_CHAIN_ROOT")
pytestmark = pytest.mark.skipif(
    not ROOT, reason="needs RSO_CHAIN_ROOT: the output root of a notebook chain run (make test sets it after nbval)"
)


@pytest.fixture(scope="module")
def res() -> Path:
    return Path(ROOT) / "results" / "smoke"


@pytest.fixture(scope="module")
def params() -> dict:
    """The parameters each notebook ran with: its own defaults, then the smoke profile on top."""
    todo = run.plan(run.load_params(run.profile_files("smoke", [])), run.notebooks())
    return {nb.stem: {**run.declared_parameters(nb), **p} for nb, p in todo.items()}


def test_sft_beats_the_majority_class(res):
    m = pd.read_csv(res / "sft_metrics.csv")
    planner, majority = m.iloc[0], m[m["model"].str.startswith("majority")].iloc[0]
    assert planner["accuracy"] > majority["accuracy"]


def test_rl_log_has_one_row_per_update(res, params):
    p = params["03_rl"]
    updates = math.ceil(p["DIALOGUES_PER_EPOCH"] / p["DIALOGUES_PER_UPDATE"])
    log = pd.read_csv(res / "rl_log.csv")
    seeds = max(1, len(p["RL_SEEDS"]))  # RL_SEEDS empty: one run with SEED
    assert len(log) == p["RL_EPOCHS"] * updates * len(p["RL_DATASETS"]) * len(p["RL_SYSTEMS"]) * seeds
    assert log["seed"].nunique() == seeds


@pytest.mark.parametrize("table", ["rl_seeds_fig3", "rl_seeds_fig5"])
def test_rl_seed_tables_have_a_column_per_seed(res, params, table):
    seeds = params["03_rl"]["RL_SEEDS"] or [params["03_rl"]["SEED"]]
    t = pd.read_csv(res / f"{table}.csv")
    assert len(t) and [c for c in t.columns if c.startswith("seed_")] == [f"seed_{s}" for s in seeds]
    assert (t["n_seeds"] <= len(seeds)).all()


@pytest.mark.parametrize(
    "table,nb", [("table_iv", "04_eval_tables"), ("table_v", "04_eval_tables"), ("fig4_scale", "07_scale")]
)
def test_every_run_row_has_the_dialogues_asked_for(res, params, table, nb):
    t = pd.read_csv(res / f"{table}.csv")
    ran = t[t["status"] == "run"]
    assert len(ran) and (ran["n"] == params[nb]["N_DIALOGUES"]).all()
    assert set(ran["dataset"]) == set(params[nb]["DATASETS"])


def test_table_v_improve_is_against_unicrs_or_says_why(res):
    t = pd.read_csv(res / "table_v.csv")
    for _, r in t[t["status"] == "run"].iterrows():
        assert pd.notna(r["Improve."]) or isinstance(r["Improve. note"], str) and r["Improve. note"]


def test_fig3_shares_sum_to_one_per_bin(res):
    s = pd.read_csv(res / "fig3_strategy_shares.csv")
    sums = s.groupby(["stage", "bin"]).agg(share=("share", "sum"), count=("count", "sum"))
    assert (sums.loc[sums["count"] > 0, "share"] - 1).abs().max() < 1e-3


def test_fig5_by_module_and_claims(res, params):
    f5 = pd.read_csv(res / "fig5_ablations.csv")
    assert set(f5["module"]) == {"Fact Retriever", "Planner", "Preference Reasoner"}
    assert f5["paper:with"].notna().all()
    c = pd.read_csv(res / "claims.csv")
    from rso_lib.eval import claims as C

    assert set(c["verdict"]) <= set(C.VERDICTS)
    assert (c["effect_lo"].isna() | (c["effect_lo"] <= c["effect"] + 1e-9)).all()
    # no supported / contradicted verdict from fewer paired users than the minimum
    decided = c[c["verdict"].isin([C.SUPPORTED, C.CONTRADICTED])]
    assert (decided["n_paired"] >= params["09_claims"]["MIN_PAIRED_N"]).all()
    assert decided["p_adj"].notna().all() and (c["p_adj"].isna() | (c["p_adj"] >= c["p_claim"] - 1e-9)).all()


def test_every_table_records_its_provenance(res):
    metas = sorted(res.glob("*.meta.json"))
    assert len(metas) >= 15
    for m in metas:
        meta = json.loads(m.read_text())
        assert {"seed", "packages", "git_commit", "python", "threads"} <= set(meta), m.name
        assert meta["packages"].get("torch"), m.name
    for name in ("table_iv", "table_v", "fig4_scale", "fig5_ablations"):
        roles = json.loads((res / f"{name}.meta.json").read_text())["llm_roles"]
        assert {"actor", "judge"} <= set(roles) and all(r.get("backend") for r in roles.values()), name


def test_validity_card_has_both_halves_and_the_contract_columns(res, params):
    from rso_lib.eval import validity as V

    card = V.read_card(res / "validity.csv")  # raises unless the contract's columns are there
    assert {"judge", "rewarder", "user", "independence"} <= set(card["role"])
    assert {"cred_true_vs_vague", "user_names_satisfying_title_first"} <= set(card["check"])
    assert set(card["metric"]) <= {"", *V.GUARDED_METRICS}
    dyn = pd.read_csv(res / "validity_dynamics.csv")
    assert (dyn["dialogues"] == params["04_eval_tables"]["N_DIALOGUES"]).all()
    ended = dyn[[c for c in dyn.columns if c.startswith("ended_")]].sum(axis=1)
    assert ((ended - 1).abs() < 1e-9).all()
