"""RL seeds (RL_SEEDS): the parameter check, one checkpoint per seed (the first keeps the
single-run name), the Planner lookup per seed, the between-seed spread table and the claims
table's "not stable across seeds" flag. Known numbers only, no model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rso_lib import run
from rso_lib.eval import claims as C
from rso_lib.eval import seeds as SD
from rso_lib.experiments import RunSpec, make_context, resolve_planner, rl_checkpoint_name, rl_seed_list

# --------------------------------------------------------------------------- the parameter


@pytest.mark.parametrize("bad", [[0, 0], [-1], [0, "1"], [True], [1.5], 3])
def test_parameter_check_names_a_bad_rl_seeds(bad):
    params = run.load_params(run.profile_files("smoke", []))
    params["03_rl"] = {**params.get("03_rl", {}), "RL_SEEDS": bad}
    with pytest.raises(run.ParamsError) as e:
        run.plan(params, run.notebooks())
    assert f"03_rl: RL_SEEDS = {bad!r}" in str(e.value)


def test_good_rl_seeds_pass_the_check_and_reach_the_rl_and_evaluation_notebooks():
    params = run.load_params(run.profile_files("smoke", []))
    params["common"]["RL_SEEDS"] = [0, 1, 7]
    todo = {nb.stem: p for nb, p in run.plan(params, run.notebooks()).items()}
    for stem in ("03_rl", "05_strategy_distribution", "06_ablations"):
        assert todo[stem]["RL_SEEDS"] == [0, 1, 7], stem


def test_empty_rl_seeds_is_one_run_with_seed():
    assert rl_seed_list([], 3) == [3]
    assert rl_seed_list([4, 2], 3) == [4, 2]
    with pytest.raises(ValueError, match="RL_SEEDS"):
        rl_seed_list([2, 2], 0)


# ------------------------------------------------------------------------ checkpoints, lookup


def test_checkpoint_names_differ_per_seed_and_the_first_keeps_todays_name():
    # the first seed is seed=None: exactly the names a single-seed run has always written
    assert rl_checkpoint_name() == "rl"
    assert rl_checkpoint_name("NO_REASONER", "redial") == "rl-no_reasoner-redial"
    names = {rl_checkpoint_name(sys, ds, s) for sys in ("RSO", "NO_REASONER") for ds in ("inspired", "redial")
             for s in (None, 1, 2)}  # fmt: skip
    assert len(names) == 12
    assert rl_checkpoint_name("RSO", "redial", 1) == "rl-redial-seed1"


def _planner_dir(root, name):
    d = root / name / "planner"
    d.mkdir(parents=True)
    (d / "planner.json").write_text("{}")
    return d


def test_resolve_planner_per_seed_never_falls_back_to_another_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("RSO_ROOT", str(tmp_path))
    ck = tmp_path / "runs" / "p" / "checkpoints"
    first, s1, s1_redial = (_planner_dir(ck, n) for n in ("rl", "rl-seed1", "rl-redial-seed1"))
    assert resolve_planner("rl", "p") == first
    assert resolve_planner("rl", "p", "RSO", "inspired", seed=1) == s1
    assert resolve_planner("rl", "p", "RSO", "redial", seed=1) == s1_redial
    assert resolve_planner("rl", "p", "NO_REASONER", "inspired", seed=1) == s1  # RSO's Planner of that seed
    with pytest.raises(FileNotFoundError, match="2 in RL_SEEDS"):
        resolve_planner("rl", "p", seed=2)  # seed 2 never trained: not seed 0's or 1's Planner


def test_planner_for_picks_each_seeds_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("RSO_ROOT", str(tmp_path))
    ck = tmp_path / "runs" / "p" / "checkpoints"
    first, s5 = _planner_dir(ck, "rl"), _planner_dir(ck, "rl-seed5")
    sft = _planner_dir(ck, "sft")

    class Stub:
        def __init__(self, d):
            self.d = d

        def eval(self):
            return self

    monkeypatch.setattr("rso_lib.experts.planner.Planner.load", staticmethod(lambda d: Stub(d)))
    ctx = make_context("p", str(tmp_path), 0, {"default": {"backend": "embedded"}}, llm_cache=False, rl_seeds=[0, 5])
    rso = RunSpec(name="RSO", system="RSO")
    assert ctx.planner_for(rso)[1] == first
    assert ctx.planner_for(rso, seed=0)[1] == first
    assert ctx.planner_for(rso, seed=5)[1] == s5
    (extra,) = ctx.seed_specs(rso)
    assert (extra.name, extra.rl_seed) == ("RSO@seed5", 5) and ctx.planner_for(extra)[1] == s5
    assert ctx.seed_specs(RunSpec(name="RSO@sft", system="RSO", planner="sft")) == []
    assert ctx.planner_for(RunSpec(name="x", system="RSO", planner="sft"), seed=5)[1] == sft  # SFT has no RL seed
    with pytest.raises(ValueError, match="RL seed 9 is not one of RL_SEEDS"):
        ctx.planner_for(rso, seed=9)


# ------------------------------------------------------------------------------- the spread


def _values(effects: dict[int, float], claim="c", dataset="inspired") -> pd.DataFrame:
    rows = []
    for s, e in effects.items():
        rows += SD._long(claim, "Fig. 5", dataset, "Conv-SR", "w/o Planner", s, 0.5 + e, e)
    return pd.DataFrame(rows)


def test_spread_table_of_known_numbers():
    t = SD.spread_table(_values({0: 0.10, 1: 0.30, 2: 0.20}))
    eff = t[t["quantity"] == SD.EFFECT].iloc[0]
    assert [eff["seed_0"], eff["seed_1"], eff["seed_2"]] == pytest.approx([0.10, 0.30, 0.20])
    assert eff["n_seeds"] == 3
    assert eff["mean"] == pytest.approx(0.2)
    assert eff["sd"] == pytest.approx(0.1)  # n - 1: sqrt((0.01 + 0.01 + 0) / 2)
    assert (eff["min"], eff["max"]) == pytest.approx((0.10, 0.30))
    assert eff["sign_stable"] is True
    rl = t[t["quantity"] == "RL"].iloc[0]
    assert rl["mean"] == pytest.approx(0.7) and rl["sign_stable"] is None


def test_spread_of_one_seed_has_no_sd_and_no_sign_verdict():
    eff = SD.spread_table(_values({4: -0.2})).query("quantity == 'effect'").iloc[0]
    assert eff["n_seeds"] == 1 and math.isnan(eff["sd"]) and eff["mean"] == pytest.approx(-0.2)
    assert eff["sign_stable"] is None


def test_sign_stability():
    assert SD.sign_stable(np.array([0.1, 0.4])) is True
    assert SD.sign_stable(np.array([-0.1, -0.4, np.nan])) is True
    assert SD.sign_stable(np.array([0.1, -0.4])) is False
    assert SD.sign_stable(np.array([0.1, 0.0])) is False  # one seed shows no effect at all
    assert SD.sign_stable(np.array([0.1, np.nan])) is None


def test_fig5_seed_values_pair_users_and_match_the_claims_effect():
    ids = [f"u{i}" for i in range(12)]
    no_planner = pd.DataFrame(
        {"dataset": "inspired", "paper_row": "w/o Planner", "dialog_id": ids, "seed": 0, "conv_success": [0.0] * 12}
    )
    succ = {0: [1.0] * 6 + [0.0] * 6, 1: [1.0] * 3 + [0.0] * 9}
    rso = {s: no_planner.assign(paper_row="RSO", conv_success=v) for s, v in succ.items()}
    vals = SD.fig5_seed_values(no_planner, rso)
    eff = vals[vals["quantity"] == SD.EFFECT].set_index("rl_seed")["value"]
    assert eff.to_dict() == pytest.approx({0: 0.5, 1: 0.25})
    # the first seed's effect is the claims table's effect for the Planner claim
    table = C.claims_table(pd.concat([no_planner, rso[0]]), settings=C.Settings(n_boot=50, n_perm=50))
    row = table[table["claim"] == SD.FIG5_PLANNER.text].iloc[0]
    assert row["effect"] == pytest.approx(eff[0])


def test_fig3_seed_values_of_known_turns():
    def turns(strategies):
        return pd.DataFrame({"dialog_id": [f"u{i // 2}" for i in range(len(strategies))], "strategy": strategies})

    sft = turns(["a", "a", "a", "a"])  # one strategy: entropy 0
    after = {0: turns(["a", "b", "a", "b"]), 1: turns(["a", "a", "a", "a"])}
    vals = SD.fig3_seed_values(sft, after, "SFT only")
    eff = vals[vals["quantity"] == SD.EFFECT].set_index(["metric", "rl_seed"])["value"]
    assert eff[("entropy", 0)] == pytest.approx(math.log(2))
    assert eff[("entropy", 1)] == pytest.approx(0.0)
    assert eff[("strategies_used", 0)] == 1 and eff[("strategies_used", 1)] == 0
    t = SD.spread_table(vals)  # one row per statistic and quantity, nothing crossed
    assert len(t) == 4 and set(zip(t["metric"], t["quantity"])) == {
        (m, q) for m in ("entropy", "strategies_used") for q in ("RL", SD.EFFECT)
    }
    ent = t[(t["metric"] == "entropy") & (t["quantity"] == SD.EFFECT)].iloc[0]
    assert ent["claim"] == C.FIG3_CLAIMS["entropy"] and ent["sign_stable"] is False  # log 2 and 0
    assert ent["mean"] == pytest.approx(math.log(2) / 2)


# ----------------------------------------------------------------------- the claims table


def _claims(effect_text):
    df = pd.DataFrame(
        [{c: None for c in C.COLUMNS} | {"claim": effect_text, "dataset": "inspired", "flags": "", "verdict": "supported"},
         {c: None for c in C.COLUMNS} | {"claim": "other", "dataset": "inspired", "flags": "", "verdict": "inconclusive"}]
    )  # fmt: skip
    df.attrs["notes"] = ["a note"]
    return df


def test_a_claim_whose_effect_changes_sign_across_seeds_is_flagged():
    text = SD.FIG5_PLANNER.text
    spread = SD.spread_table(_values({0: 0.2, 1: -0.1}, claim=text))
    out = SD.add_seed_spread(_claims(text), spread)
    row = out.iloc[0]
    assert SD.UNSTABLE in row["flags"] and "0: +0.2" in row["flags"] and "1: -0.1" in row["flags"]
    assert row["verdict"] == "supported"  # the verdict rules are not changed
    assert "2 RL seeds" in row["seed_spread"] and "sd 0.2121" in row["seed_spread"]
    assert out.iloc[1]["flags"] == "" and out.iloc[1]["seed_spread"] == ""
    assert any(SD.UNSTABLE in n and text in n for n in out.attrs["notes"])
    assert list(out.columns).index("seed_spread") == list(out.columns).index("verdict") - 1


def test_a_claim_whose_effects_agree_is_not_flagged_even_read_back_from_csv(tmp_path):
    text = SD.FIG5_PLANNER.text
    SD.spread_table(_values({0: 0.2, 1: 0.05}, claim=text)).to_csv(tmp_path / "s.csv", index=False)
    out = SD.add_seed_spread(_claims(text), pd.read_csv(tmp_path / "s.csv"))
    assert out.iloc[0]["flags"] == "" and "2 RL seeds" in out.iloc[0]["seed_spread"]
    assert any("same sign for every seed" in n for n in out.attrs["notes"])
    flagged = SD.spread_table(_values({0: 0.2, 1: -0.05}, claim=text))
    flagged.to_csv(tmp_path / "f.csv", index=False)  # sign_stable read back as text / bool
    assert SD.UNSTABLE in SD.add_seed_spread(_claims(text), pd.read_csv(tmp_path / "f.csv")).iloc[0]["flags"]


def test_one_seed_adds_an_empty_column_and_says_so():
    text = SD.FIG5_PLANNER.text
    for spread in (None, SD.spread_table(_values({0: 0.2}, claim=text))):
        out = SD.add_seed_spread(_claims(text), spread)
        assert (out["seed_spread"] == "").all() and (out["flags"] == "").all()
        assert any("one RL seed" in n for n in out.attrs["notes"])
