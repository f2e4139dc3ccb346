"""The claims table's statistics, on simulated data whose truth is known (numpy, seeded, fast):
error rates under a null after correction, power at the planned n, pairing, the minimum n, the
floor flag, the validity card, and the building blocks against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from repo_paths import REPO_ROOT

from rso_lib.eval import claims as C
from rso_lib.eval import paired as S
from rso_lib.eval import power as W

FAST = C.Settings(n_boot=100, n_perm=300)
#: enough sign-flips that a p-value can pass Holm over a whole table (resolution 1 / 2001)
FINE = C.Settings(n_boot=100, n_perm=2000)
SYSTEMS = ("RSO", "QwenCRS", "PCCRS", "w/o Planner", "w/o Fact Retriever")


def _users(rng, n, shift=None, sd_user=1.0, sd_noise=0.5):
    """Per-dialogue rows of every system on the same ``n`` users of both datasets: a user's
    latent level is shared by all systems (what pairing exploits); ``shift`` moves RSO."""
    shift = shift or {}
    rows = []
    for ds in ("inspired", "redial"):
        u, ub = rng.normal(0, sd_user, n), rng.random(n)
        for s in SYSTEMS:
            sh = shift.get(s, 0.0)
            rows.append(
                pd.DataFrame(
                    {
                        "dataset": ds,
                        "paper_row": s,
                        "dialog_id": [f"u{i}" for i in range(n)],
                        "seed": 0,
                        "i_post": 3 + u + sh + rng.normal(0, sd_noise, n),
                        "cred": 3 + u + sh + rng.normal(0, sd_noise, n),
                        "prs": 0.5 + 0.1 * u + rng.normal(0, 0.1, n),
                        "conv_success": (ub + rng.normal(0, 0.2, n) < 0.5 + sh / 4).astype(float),
                        "recall@1": (ub + rng.normal(0, 0.2, n) < 0.5 + sh / 4).astype(float),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


# ---------------------------------------------------------------------------------- simulations
def test_null_verdict_rate_at_or_under_nominal_after_correction():
    """Every system draws from the same per-user distribution: a claims table with any
    supported/contradicted verdict is a false one. Over 120 tables (14 open claims each) the rate stays
    at or under alpha (Monte Carlo slack: 2 standard errors); without the correction it does not."""
    rng = np.random.default_rng(0)
    tables, raw_any = 120, 0
    false_tables = 0
    for k in range(tables):
        t = C.claims_table(_users(rng, 30), settings=FAST, seed=k)
        open_ = t[t["p_claim"].notna()]
        assert len(open_) == 14  # 7 claims x 2 datasets with both sides run (the Reasoner ablation did not)
        false_tables += t["verdict"].isin([C.SUPPORTED, C.CONTRADICTED]).any()
        raw_any += (open_["p_claim"] < 0.05).any()
    se = math.sqrt(0.05 * 0.95 / tables)
    assert false_tables / tables <= 0.05 + 2 * se
    assert raw_any / tables > 0.05 + 2 * se  # uncorrected: the family-wise error grows with the claims


def test_power_near_nominal_at_the_planned_n():
    """A true paired effect at the n that :func:`power.n_paired` plans for 80% power is found about
    80% of the time, continuous (sign-flip) and binary (exact McNemar) alike."""
    rng = np.random.default_rng(1)
    n = int(W.n_paired(0.5, 1.0))
    hits = [S.compare(S.Paired(rng.normal(0.5, 1.0, n), np.zeros(n), [], 0, 0), rng, n_boot=10, n_perm=300).p < 0.05
            for _ in range(300)]  # fmt: skip
    assert 0.7 <= np.mean(hits) <= 0.9, (n, np.mean(hits))
    # binary: P(only RSO succeeds) = 0.25, P(only the comparator) = 0.05
    p10, p01 = 0.25, 0.05
    nb = int(W.n_paired(p10 - p01, math.sqrt(p10 + p01 - (p10 - p01) ** 2)))
    bhits = []
    for _ in range(300):
        r = rng.random(nb)
        x, y = (r < p10 + 0.3).astype(float), ((r >= p10) & (r < p10 + 0.3 + p01)).astype(float)
        bhits.append(S.compare(S.Paired(x, y, [], 0, 0), rng, n_boot=10).p < 0.05)
    assert 0.65 <= np.mean(bhits) <= 0.9, (nb, np.mean(bhits))


def test_paired_design_detects_a_correlated_effect_the_unpaired_one_misses():
    """Users differ a lot (sd 2), RSO adds 0.3 to each: pairing sees it, the independent bootstrap
    (the kit's old comparison) does not."""
    rng = np.random.default_rng(2)
    paired_hits = unpaired_hits = 0
    for _ in range(40):
        u = rng.normal(0, 2, 30)
        x, y = u + 0.3 + rng.normal(0, 0.3, 30), u + rng.normal(0, 0.3, 30)
        paired_hits += S.compare(S.Paired(x, y, [], 0, 0), rng, n_boot=200, n_perm=300).p < 0.05
        bx = x[rng.integers(0, 30, (500, 30))].mean(1)
        by = y[rng.integers(0, 30, (500, 30))].mean(1)
        unpaired_hits += np.quantile(bx - by, 0.025) > 0
    assert paired_hits >= 36 and unpaired_hits <= 8, (paired_hits, unpaired_hits)


def test_below_the_minimum_n_no_verdict_is_given():
    big = {"RSO": 3.0}  # an effect no test could miss
    t = C.claims_table(_users(np.random.default_rng(3), 12, big), settings=C.Settings(min_paired_n=13, n_perm=300))
    ran = t[t["verdict"] != C.NOT_RUN]
    assert len(ran) and (ran["verdict"] == C.TOO_FEW).all()
    assert ran["p_adj"].isna().all() and (ran["n_paired"] == 12).all()
    # the same data with the minimum at 12: the rule, not the data, withheld the verdicts
    low = C.claims_table(_users(np.random.default_rng(3), 12, big), settings=C.Settings(min_paired_n=12, n_perm=300))
    assert (low["verdict"] == C.SUPPORTED).any()


def test_an_all_zero_comparator_is_flagged_and_not_worse_is_not_supported():
    """Fig. 4: RSO and the larger CRS both score 0 on Recall@1 for 100 users: "not worse" holds
    only trivially; a strong 'better' claim against an all-zero comparator is flagged too."""
    n = 100
    ids = [f"u{i}" for i in range(n)]
    scale = pd.concat(
        [
            pd.DataFrame(
                {
                    "dataset": "inspired",
                    "paper_row": r,
                    "dialog_id": ids,
                    "recall@1": 0.0,
                    "recall@5": 0.0,
                    "cred": np.linspace(2, 4, n),
                }
            )  # fmt: skip
            for r in ("RSO (small)", "Qwen-large")
        ],
        ignore_index=True,
    )
    t = C.claims_table(pd.DataFrame(columns=["dataset", "paper_row", "dialog_id"]), scale=scale, settings=FAST)
    r1 = t[t["metric"] == "Recall@1"].iloc[0]
    assert "Qwen-large at floor" in r1["flags"] and r1["verdict"] == C.INCONCLUSIVE
    assert t[t["metric"] == "Cred"].iloc[0]["verdict"] == C.SUPPORTED  # identical Cred: within the margin
    main = _users(np.random.default_rng(4), 40, {"RSO": 1.0})
    main.loc[main["paper_row"] == "PCCRS", "cred"] = 0.0
    row = C.claims_table(main, settings=FAST).query("metric == 'Cred' and source == 'Table IV'").iloc[0]
    assert "PCCRS at floor" in row["flags"]


def test_a_user_missing_on_one_side_leaves_both_and_is_counted():
    x = pd.Series([1.0, 2.0, np.nan, 4.0], index=["a", "b", "c", "d"])
    y = pd.Series([0.5, np.nan, 1.0, 3.0, 9.0], index=["a", "b", "c", "d", "e"])
    p = S.pair(x, y)
    assert p.ids == ["a", "d"] and p.d.tolist() == [0.5, 1.0]
    assert (p.dropped_x, p.dropped_y) == (1, 1)  # c has no RSO value, b no comparator value
    with pytest.raises(ValueError, match="duplicated pairing key 'a'"):
        S.pair(pd.Series([1.0, 2.0], index=["a", "a"]), y)


# ------------------------------------------------------------------------------ best-of claims
def test_best_claim_reports_beats_ties_loses():
    rng = np.random.default_rng(5)
    df = _users(rng, 40, {"RSO": 1.0, "PCCRS": 1.0})  # RSO ahead of QwenCRS, level with PCCRS
    row = C.claims_table(df, settings=FAST).query("metric == 'Cred' and source == 'Table IV'").iloc[0]
    assert row["beats"] == "QwenCRS" and row["ties"] == "PCCRS" and row["loses"] == ""
    assert row["verdict"] == C.INCONCLUSIVE and row["binding"].startswith("PCCRS")
    worse = _users(np.random.default_rng(5), 40, {"QwenCRS": 1.0})
    row = C.claims_table(worse, settings=FINE).query("metric == 'Cred' and source == 'Table IV'").iloc[0]
    assert row["loses"] == "QwenCRS" and row["verdict"] == C.CONTRADICTED


# ------------------------------------------------------------------------------------ validity
def _card(path, rows):
    cols = list(C.VALIDITY_COLUMNS)
    pd.DataFrame([dict(zip(cols, r)) for r in rows], columns=cols).to_csv(path, index=False)
    return path


def test_validity_card_marks_claims_on_a_failing_metric(tmp_path):
    card = _card(
        tmp_path / "validity.csv",
        [
            ("cred_true_vs_vague", "judge", "Cred", "m", 0.55, 0.9, False, 20, 0, ""),
            ("wi_love_hate", "judge", "WI", "m", 0.95, 0.9, True, 20, 0, ""),
            ("independence", "judge", "", "m", 1.0, 0.0, False, 1, 0, "one model"),
        ],
    )
    bad = C.read_validity(card)
    assert bad == {"Cred": ["cred_true_vs_vague"]}
    t = C.claims_table(_users(np.random.default_rng(6), 40, {"RSO": 1.0}), validity=bad, settings=FAST)
    cred = t[t["metric"] == "Cred"]
    assert (cred["verdict"] == C.NOT_VALID).all() and cred["p_adj"].isna().all()
    assert (t[t["metric"] == "WI"]["verdict"] == C.SUPPORTED).all()
    assert any("failing checks by metric: Cred" in n for n in t.attrs["notes"])


def test_validity_card_absent_or_malformed(tmp_path):
    assert C.read_validity(tmp_path / "none.csv") is None
    t = C.claims_table(_users(np.random.default_rng(7), 12), settings=FAST)
    assert any("no validity card" in n for n in t.attrs["notes"])
    _card(tmp_path / "v.csv", [("c", "judge", "WI", "m", 1, 1, "maybe", 1, 0, "")])
    with pytest.raises(ValueError, match=r"v.csv, line 2: passed = 'maybe'"):
        C.read_validity(tmp_path / "v.csv")
    pd.DataFrame({"check": ["c"], "passed": [True]}).to_csv(tmp_path / "w.csv", index=False)
    with pytest.raises(ValueError, match="w.csv: missing column"):
        C.read_validity(tmp_path / "w.csv")


# ------------------------------------------------------------------------------ building blocks
def test_exact_tests_against_hand_values():
    assert S.mcnemar_exact_p(8, 1) == pytest.approx(2 * (1 + 9) / 2**9)
    assert S.mcnemar_exact_p(0, 0) == 1.0
    rng = np.random.default_rng(0)
    assert S.sign_flip_p(np.array([1.0, 2.0, 3.0]), 0.0, rng) == pytest.approx(2 / 8)
    assert S.sign_flip_p(np.array([1.0, -1.0]), 0.0, rng) == 1.0


def test_tango_keeps_its_size_at_the_margin():
    """Binary "not worse" at the boundary (true difference = -margin): rejection in the
    'not worse' direction stays near alpha/2 (the two-sided test's one tail)."""
    rng = np.random.default_rng(8)
    n, margin, p10 = 200, 0.05, 0.10
    p01 = p10 + margin
    rej = 0
    for _ in range(1000):
        r = rng.random(n)
        b, c = int((r < p10).sum()), int(((r >= p10) & (r < p10 + p01)).sum())
        rej += S.tango_p(b, c, n, -margin) < 0.05 and (b - c) / n > -margin
    assert rej / 1000 <= 0.025 + 2 * math.sqrt(0.025 * 0.975 / 1000)


def test_holm_and_bh_against_hand_values():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    assert S.holm(p)[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and np.isnan(S.holm(p)[4])
    assert S.benjamini_hochberg(p)[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    with pytest.raises(ValueError, match="correction"):
        S.adjust(p, "bonferroni")


def test_power_formulas_against_the_worked_estimates():
    """The issue's worked numbers (95% two-sided, 80% power, unpaired)."""
    assert W.n_unpaired(3.879 - 3.677, 0.8) == pytest.approx(246, abs=2)
    assert W.n_unpaired(3.833 - 3.288, 1.0) == pytest.approx(53, abs=1)
    assert W.n_two_proportions(0.758, 0.586) == pytest.approx(113, abs=2)
    assert W.n_two_proportions(0.980, 0.960) == pytest.approx(1100, rel=0.05)
    # the MDE at the n that n_paired plans for is the effect itself
    assert W.mde_paired(0.7, int(W.n_paired(0.3, 0.7))) == pytest.approx(0.3, rel=0.03)
    assert math.isnan(W.mde_paired(0.0, 50)) and math.isnan(W.n_paired(0.0, 1.0))
    assert W.sd_diff_from_rho(1.0, 1.0, 0.5) == pytest.approx(1.0)


def test_fig3_claims_known_answers():
    """SFT: one strategy everywhere; RL: four strategies evenly, on the same 20 users."""
    turns = pd.DataFrame(
        [("SFT only", f"d{i}", k, "credibility") for i in range(20) for k in range(3)]
        + [
            ("after RL", f"d{i}", k, ["credibility", "similarity", "opinion_inquiry", "encouragement"][(i + k) % 4])
            for i in range(20)
            for k in range(3)
        ],
        columns=["stage", "dialog_id", "turn_index", "strategy"],
    )
    s = {r["metric"]: r for r in C.strategy_claims(turns, "SFT only", "after RL", np.random.default_rng(0), FAST)}
    assert s["entropy"]["effect"] == pytest.approx(np.log(4), abs=1e-6) and s["entropy"]["p_raw"] < 0.01
    assert s["entropy"]["_direction"] and "paired" in s["entropy"]["test"]
    flipped = turns.assign(stage=turns["stage"].map({"SFT only": "after RL", "after RL": "SFT only"}))
    s2 = {r["metric"]: r for r in C.strategy_claims(flipped, "SFT only", "after RL", np.random.default_rng(0), FAST)}
    assert not s2["entropy"]["_direction"] and s2["entropy"]["p_raw"] < 0.01


def test_settings_reject_bad_parameters():
    with pytest.raises(ValueError, match="CORRECTION"):
        C.Settings(correction="bonferroni")
    with pytest.raises(ValueError, match="MIN_PAIRED_N"):
        C.Settings(min_paired_n=1)
    with pytest.raises(ValueError, match="MARGINS: missing \\['Cred'\\]"):
        C.Settings(margins={k: v for k, v in C.MARGINS.items() if k != "Cred"})


def test_docs_power_table_is_the_commands_output(capsys):

    doc = (REPO_ROOT / "docs" / "claims.md").read_text()
    table = doc.split("<!-- power:begin -->\n")[1].split("<!-- power:end -->")[0]
    assert W.main([]) == 0
    assert capsys.readouterr().out == table
