"""Run specs from params, planner resolution, Fig. 4 rows, Fig. 3 turn extraction (no models)."""

import pytest
from eval_support import _rows, _turn, _write  # tests/eval_support.py

from rso_lib.eval.transcripts import read_transcript
from rso_lib.experiments import RunSpec, make_context, parse_specs, resolve_planner, scale_specs, strategy_turns


def test_parse_specs_strings_dicts_and_errors():
    s = parse_specs(["rso", {"name": "PROMPT_ONLY@big", "llm": {"backend": "openai", "model": "m"}, "label": "Big"}])
    assert s[0] == RunSpec(name="RSO", system="RSO")
    assert s[1].system == "PROMPT_ONLY" and s[1].display == "Big" and s[1].paper == "QwenCRS"
    with pytest.raises(ValueError, match="unknown key"):
        parse_specs([{"name": "RSO", "colour": "red"}])
    with pytest.raises(ValueError, match="unique"):
        parse_specs(["RSO", "RSO"])
    with pytest.raises(TypeError):
        parse_specs([3])


def test_scale_specs_reuse_default_backbone():
    specs = scale_specs(
        [{"label": "S", "llm": {"backend": "embedded"}}, {"label": "L", "llm": {"backend": "vllm", "model": "big"}}],
        {"backend": "embedded"},
        "S",
    )
    assert [s.name for s in specs] == ["RSO", "PROMPT_ONLY", "PROMPT_ONLY@L"]
    assert specs[1].llm is None and specs[2].llm == {"backend": "vllm", "model": "big"}
    assert [s.display for s in specs] == ["RSO (S)", "PromptCRS (S)", "PromptCRS (L)"]
    with pytest.raises(ValueError):
        scale_specs([{"label": "x"}], {}, "S")


def test_resolve_planner(tmp_path, monkeypatch):
    monkeypatch.setenv("RSO_ROOT", str(tmp_path))
    assert resolve_planner("untrained", "p") is None
    with pytest.raises(FileNotFoundError, match="02_sft and 03_rl"):
        resolve_planner("rl", "p")
    d = tmp_path / "runs" / "p" / "checkpoints" / "sft" / "planner"
    d.mkdir(parents=True)
    (d / "planner.json").write_text("{}")
    assert resolve_planner("sft", "p") == d
    # "rl": the Planner trained for that system and dataset, else the closest one trained
    ck = tmp_path / "runs" / "p" / "checkpoints"
    for name in ("rl", "rl-redial", "rl-no_reasoner"):
        (ck / name / "planner").mkdir(parents=True)
        (ck / name / "planner" / "planner.json").write_text("{}")
    assert resolve_planner("rl", "p", "RSO", "inspired") == ck / "rl" / "planner"
    assert resolve_planner("rl", "p", "RSO", "redial") == ck / "rl-redial" / "planner"
    assert resolve_planner("rl", "p", "NO_REASONER", "redial") == ck / "rl-no_reasoner" / "planner"
    assert resolve_planner("rl", "p", "NO_RETRIEVER", "redial") == ck / "rl-redial" / "planner"
    assert resolve_planner("rl-no_reasoner", "p") == ck / "rl-no_reasoner" / "planner"


def test_make_context_rejects_cache_in_llm_cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("RSO_ROOT", str(tmp_path))
    with pytest.raises(ValueError, match="llm_cache"):
        make_context("p", str(tmp_path), 0, {"default": {}, "cache": "x"})
    ctx = make_context("p", str(tmp_path), 0, {"default": {"backend": "embedded"}})
    assert ctx.llm_cfg["cache"].endswith("runs/p/cache/llm.sqlite")


def test_strategy_turns_from_transcript(tmp_path):
    p = _write(
        tmp_path / "t.jsonl",
        [
            _rows("a", False, [_turn("x", strategy="credibility"), _turn("y", strategy="encouragement")]),
            _rows("b", True, [_turn("z", chosen="m1", retrieved=["m1"], strategy="offer_help")]),
        ],
    )
    t = strategy_turns(read_transcript(p), "RL")
    assert t.values.tolist() == [
        ["RL", "a", 0, "credibility"],
        ["RL", "a", 1, "encouragement"],
        ["RL", "b", 0, "offer_help"],
    ]


def test_unreachable_targets_left_out_and_counted(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RSO_ROOT", str(tmp_path))
    ctx = make_context("p", str(data_dir), 0, {"default": {"backend": "embedded"}}, llm_cache=False)
    ts = ctx.targets("inspired", 0)
    assert ctx.left_out == {"inspired": 20} and len(ts) == 79
    assert all(ctx.kb_for("inspired").valid_targets(t.target_genres) for t in ts)
