"""Tables IV/V, system comparison, Fig. 3 shares, and the figures, asserted from written files."""

import numpy as np
import pandas as pd
import pytest
from eval_support import KB, _judge, _rows, _turn, _write  # tests/eval_support.py

from rso_lib.eval import paper_numbers as P
from rso_lib.eval.evaluate import evaluate_system
from rso_lib.eval.tables import NOT_RUN, compare_systems, metrics_table, strategy_entropy, strategy_shares
from rso_lib.eval.transcripts import read_transcript


@pytest.fixture
def evals(tmp_path):
    """RSO accepts in 3 of 4 dialogues, PromptCRS in 0 of 4, on two datasets."""
    out = []
    for ds in ("redial", "inspired"):  # written out of order on purpose
        for system, acc in (("RSO", [True, True, True, False]), ("PromptCRS", [False] * 4)):
            dialogues = [
                _rows(
                    f"{ds}{k}",
                    a,
                    [_turn("Alien is scary.", chosen="m1", retrieved=["m1", "m2"])],
                    system=system,
                    dataset=ds,
                )
                for k, a in enumerate(acc)
            ]
            p = _write(tmp_path / f"{ds}-{system}.jsonl", dialogues)
            out.append(evaluate_system(read_transcript(p), KB, _judge(), seed=0))
    return out


def test_table_iv_rows_order_not_run_and_files(evals, tmp_path, monkeypatch):
    df = metrics_table(evals, paper_rows={"PromptCRS": "QwenCRS"}, not_run=NOT_RUN)
    assert list(df["dataset"].unique()) == ["inspired", "redial"]  # the paper's order
    ins = df[df["dataset"] == "inspired"]
    assert list(ins["system"]) == ["UniCRS", "BARCOR", "RSO", "PromptCRS"]
    assert ins.iloc[0]["status"].startswith("not run") and np.isnan(ins.iloc[0]["Conv-SR"])

    monkeypatch.setenv("RSO_ROOT", str(tmp_path))
    from rso_lib.results import provenance, write_table

    paths = write_table(df, "table_iv", "unit", provenance(0, judge="scripted"), caption="Table IV")
    got = pd.read_csv(paths["csv"])
    rso = got[(got["dataset"] == "redial") & (got["system"] == "RSO")].iloc[0]
    assert rso["Conv-SR"] == pytest.approx(0.75) and rso["n"] == 4
    assert rso["Conv-SR_lo"] <= 0.75 <= rso["Conv-SR_hi"]
    assert rso["Cred"] == pytest.approx(3.0)
    assert "not run" in paths["md"].read_text() and paths["tex"].read_text().startswith("\\begin{table}")
    # same inputs, same bytes
    again = write_table(
        metrics_table(evals, paper_rows={"PromptCRS": "QwenCRS"}, not_run=NOT_RUN),
        "table_iv2",
        "unit",
        provenance(0, judge="scripted"),
    )
    assert again["csv"].read_bytes() == paths["csv"].read_bytes()


def test_paper_values_appear_when_transcribed(evals, monkeypatch):
    monkeypatch.setitem(P.TABLE_IV["inspired"]["QwenCRS"], "Conv-SR", 0.42)
    df = metrics_table(evals, paper_rows={"PromptCRS": "QwenCRS"})
    row = df[(df["dataset"] == "inspired") & (df["system"] == "PromptCRS")].iloc[0]
    assert row["paper:Conv-SR"] == pytest.approx(0.42)
    rso = df[(df["dataset"] == "redial") & (df["system"] == "RSO")].iloc[0]
    assert rso["paper:Conv-SR"] == pytest.approx(0.9798) and rso["paper:WI"] == pytest.approx(3.8393)
    unknown = metrics_table(evals, paper_rows={"RSO": "not a paper row", "PromptCRS": "QwenCRS"})
    assert unknown[unknown["system"] == "RSO"]["paper:Conv-SR"].isna().all()


def test_compare_systems_verdicts(evals):
    rso, prompt = evals[0], evals[1]
    c = compare_systems(rso, prompt, metrics=("Conv-SR", "Cred"), seed=0).set_index("metric")
    assert c.loc["Conv-SR", "diff"] == pytest.approx(0.75)
    assert c.loc["Conv-SR", "n_paired"] == 4  # the same four users on both sides, paired
    assert c.loc["Conv-SR", "verdict"] == "RSO better"
    assert c.loc["Cred", "verdict"] == "no clear difference"  # both judged 3.0


def test_strategy_shares_hand_computed():
    turns = pd.DataFrame(
        [
            # SFT: dialogue a has 2 turns, b has 1 -> bins with n_bins=2: a0->0, a1->1, b0->0
            ("SFT", "a", 0, "credibility"),
            ("SFT", "a", 1, "encouragement"),
            ("SFT", "b", 0, "credibility"),
            ("RL", "a", 0, "opinion_inquiry"),
            ("RL", "a", 1, "credibility"),
        ],
        columns=["stage", "dialog_id", "turn_index", "strategy"],
    )
    s = strategy_shares(turns, n_bins=2).set_index(["stage", "bin", "strategy"])
    assert s.loc[("SFT", 0, "credibility"), "share"] == 1.0
    assert s.loc[("SFT", 1, "encouragement"), "share"] == 1.0
    assert s.loc[("RL", 0, "opinion_inquiry"), "count"] == 1
    assert len(s) == 2 * 2 * 14
    assert s.groupby(["stage", "bin"])["share"].sum().tolist() == pytest.approx([1, 1, 1, 1])
    e = strategy_entropy(s.reset_index()).set_index("stage")
    assert e.loc["RL", "entropy"] == pytest.approx(np.log(2), abs=1e-4)
    assert e.loc["SFT", "strategies_used"] == 2


@pytest.mark.slow
def test_figures_written(evals, tmp_path, monkeypatch):
    monkeypatch.setenv("RSO_ROOT", str(tmp_path))
    from rso_lib import plots
    from rso_lib.results import save_figure

    df = metrics_table(evals, not_run=NOT_RUN)
    turns = pd.DataFrame(
        [("SFT", "a", 0, "credibility"), ("RL", "a", 0, "encouragement")],
        columns=["stage", "dialog_id", "turn_index", "strategy"],
    )
    figs = {
        "fig5": plots.fig_ablations(df),
        "fig4": plots.fig_scale(df),
        "fig3": plots.fig_strategy_distribution(strategy_shares(turns, 1)),
    }
    for name, fig in figs.items():
        paths = save_figure(fig, name, "unit")
        assert paths["png"].stat().st_size > 5000 and paths["pdf"].read_bytes()[:4] == b"%PDF"


def test_conv_sr_is_the_evaluators_and_accept_sr_the_simulators(tmp_path):
    """Paper Sec. IV-C: Conv-SR comes from the evaluator's reward (Eq. 9 stop rule), not from the
    simulator's acceptance, which is reported apart as Accept-SR."""
    dialogues = [
        _rows("a", True, [_turn("Alien.", chosen="m1")], reward_stop=False),
        _rows("b", False, [_turn("Alien.", chosen="m1")], reward_stop=True),
        _rows("c", False, [_turn("Alien.", chosen="m1")], reward_stop=True),
    ]
    ev = evaluate_system(read_transcript(_write(tmp_path / "t.jsonl", dialogues)), KB, _judge(), seed=0)
    assert ev.row["Conv-SR"] == pytest.approx(2 / 3)
    assert ev.row["Accept-SR"] == pytest.approx(1 / 3)


def test_transcript_viewer_rows_per_turn(tmp_path):
    from rso_lib.eval.case_study import transcript_table

    d = [
        _rows(
            "a", True, [_turn("What do you like?", strategy="opinion_inquiry"), _turn("Alien is scary.", chosen="m1")]
        )
    ]
    t = transcript_table(_write(tmp_path / "t.jsonl", d), KB)
    assert list(t["turn"]) == [1, 2] and t.loc[0, "strategy"] == "Opinion Inquiry (0.50)"
    assert t.loc[1, "recommended"] == KB.get("m1").name and "Ridley Scott" in t.loc[1, "facts"]
    assert t.loc[1, "stop"] == "accepted" and t.loc[1, "reward"] == 1.0
    with pytest.raises(KeyError, match="no finished dialogue 'zz'"):
        transcript_table(tmp_path / "t.jsonl", KB, "zz")
