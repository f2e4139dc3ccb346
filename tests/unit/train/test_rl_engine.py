"""RL through the real DialogueEngine (scripted LLM backends, agenda simulator, real Planner on a
tiny encoder): episodes -> REINFORCE updates, transcripts, and kill-and-resume bitwise, including
a kill after an update's dialogues were written but before its step (read back on resume)."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import make_engine, targets

from rso_lib.dialogue.systems import RSO
from rso_lib.dialogue.transcript import validate_transcript
from rso_lib.experts.planner import Planner, make_tiny_encoder
from rso_lib.train.checkpoint import latest_checkpoint
from rso_lib.train.rl import RLConfig, engine_collector, train_rl


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny_enc"), seed=0)


def engine_with_planner(tiny_dir, tmp_path):
    eng, _ = make_engine(
        system=RSO, sim="agenda", reward="judge", max_turns=3, rating_probs=[0.1, 0.1, 0.2, 0.3, 0.3], tmp_path=tmp_path
    )
    planner = Planner.from_config(str(tiny_dir), max_length=48, seed=0)
    eng.planner = planner
    return eng, planner


# horror users accept a horror movie of the scripted catalogue; western users never find one
USERS = targets(2, ("horror",)) + targets(4, ("western",))[2:]
CFG = RLConfig(lr=1e-3, beta=0.05, epochs=2, dialogues_per_epoch=4, dialogues_per_update=2)


class Killed(RuntimeError):
    pass


def run(tiny_dir, tmp_path, out, on_update=None, wrap=None):
    eng, planner = engine_with_planner(tiny_dir, tmp_path)
    collect = engine_collector(eng, USERS, CFG, transcript_dir=out / "transcripts")
    return train_rl(CFG, planner, wrap(collect) if wrap else collect, out, on_update=on_update, log=lambda s: None)


def test_rl_with_engine_learns_logs_and_writes_transcripts(tiny_dir, tmp_path):
    res = run(tiny_dir, tmp_path, tmp_path / "a")
    assert len(res.log) == 4
    for row in res.log:
        assert row["n_episodes"] == 2 and 2 <= row["n_turns"] <= 6
        assert 0 <= row["mean_reward"] <= 1 and 0 <= row["accept_sr"] <= 1
        assert 0 < row["mean_entropy"] <= 2.64 + 1e-3
        assert (
            sum(v for k, v in row.items() if k.startswith("n_") and k not in ("n_episodes", "n_turns"))
            == row["n_turns"]
        )
    files = sorted((tmp_path / "a" / "transcripts").glob("*.jsonl"))
    assert len(files) == 4
    assert sum(validate_transcript(f)["dialogues"] for f in files) == 8
    assert sum(r["n_turns"] for r in res.log) == sum(validate_transcript(f)["rows"] for f in files)
    start = Planner.from_config(str(tiny_dir), max_length=48, seed=0)
    assert not torch.equal(start.head.weight, res.planner.head.weight)


@pytest.mark.parametrize("where", ["after_update", "after_dialogues"])
def test_rl_engine_kill_and_resume_identical(tiny_dir, tmp_path, where):
    ref = run(tiny_dir, tmp_path, tmp_path / "ref")

    def kill_after_update(step, row):
        if step == 3:
            raise Killed()

    def wrap(collect):  # dies after update 4's dialogues are in its transcript, before its step
        def c(epoch, update, planner):
            eps = collect(epoch, update, planner)
            if (epoch, update) == (1, 1) and not getattr(c, "done", False):
                c.done = True
                raise Killed()
            return eps

        c.reset = collect.reset
        return c

    with pytest.raises(Killed):
        if where == "after_update":
            run(tiny_dir, tmp_path, tmp_path / "run", on_update=kill_after_update)
        else:
            run(tiny_dir, tmp_path, tmp_path / "run", wrap=wrap)
    assert latest_checkpoint(tmp_path / "run" / "resume").name == "step-00000003"
    res = run(tiny_dir, tmp_path, tmp_path / "run")
    assert res.resumed_from == 3
    sa, sb = ref.planner.state_dict(), res.planner.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert res.log == ref.log
