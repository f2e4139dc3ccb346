"""Same seed, same result tables: the evaluation pipeline (engine run + judge + table writer) run
twice with the real embedded models into two separate roots gives byte-identical CSVs.

Kept cheap: 2 dialogues x 2 turns of RSO on INSPIRED, a 300-item slice of the real knowledge base
(so the retrieval index builds in seconds), no LLM cache (both runs really compute)."""

import os

import pandas as pd
import pytest

from rso_lib.data.kb import KnowledgeBase, load_kb
from rso_lib.dialogue.config import EngineConfig
from rso_lib.eval.evaluate import EvalConfig
from rso_lib.eval.judges import JudgeConfig
from rso_lib.eval.tables import metrics_table
from rso_lib.experiments import RunContext, parse_specs, run_and_evaluate, run_provenance, strategy_turns
from rso_lib.results import write_table

pytestmark = pytest.mark.slow


def _once(root, data_dir, kb):
    os.environ["RSO_ROOT"] = str(root)
    ctx = RunContext(
        profile="det",
        data_dir=data_dir,
        llm_cfg={"default": {"backend": "embedded"}},
        engine=EngineConfig(
            max_turns=2, actor_max_tokens=24, user_max_tokens=16, reward="simulator", stop_on_reward=False
        ),
        planner="untrained",
        seed=7,
        sample_strategy=True,
    )
    ctx._kbs[ctx.kb_source_for("inspired")] = kb  # the hand-built slice stands in for INSPIRED's catalogue
    specs = parse_specs(["RSO"])
    judge = EvalConfig(judge=JudgeConfig(mode="score"))
    evals, dialogues, info = run_and_evaluate(ctx, specs, ["inspired"], 2, judge, n_boot=200, log=lambda *_: None)
    table = metrics_table(evals)
    paths = write_table(table, "table_det", "det", run_provenance(ctx, specs, judge, info))
    turns = strategy_turns(dialogues[("inspired", "RSO")], "RL")
    transcript = (root / "runs" / "det" / "transcripts" / "inspired" / "RSO.jsonl").read_bytes()
    return paths["csv"].read_bytes(), transcript, table, turns


def test_same_seed_same_table(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("RSO_ROOT", str(tmp_path))  # restored after the test
    full = load_kb(data_dir)
    kb = KnowledgeBase(list(full)[:300], source="redial-slice")
    a = _once(tmp_path / "a", data_dir, kb)
    b = _once(tmp_path / "b", data_dir, kb)
    assert a[1] == b[1], "transcripts differ between two runs with the same seed"
    assert a[0] == b[0], "result tables differ between two runs with the same seed"
    table, turns = a[2], a[3]
    row = table.iloc[0]
    assert row["n"] == 2 and row["system"] == "RSO"
    assert 1.0 <= row["WI"] <= 5.0  # a real judgement happened (expected rating of 1..5)
    assert len(turns) >= 2 and turns["strategy"].notna().all()
    got = pd.read_csv(tmp_path / "a" / "results" / "det" / "table_det.csv")
    assert got.loc[0, "Conv-SR"] == pytest.approx(row["Conv-SR"])
