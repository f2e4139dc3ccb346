"""Checkpoints: atomic writes, RNG round trip, and kill-and-resume ending in bitwise the weights of
an uninterrupted run (SFT killed by an exception and by SIGKILL in a subprocess)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from repo_paths import REPO_ROOT, TESTS_DIR

from rso_lib.data.records import RECOMMENDER, SEEKER, Turn
from rso_lib.experts.planner import Planner, make_tiny_encoder
from rso_lib.strategies import STRATEGIES
from rso_lib.train.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from rso_lib.train.sft import SFTConfig, train_sft


class Ex:  # duck-typed SFT example (history, strategy)
    def __init__(self, history, strategy):
        self.history, self.strategy = history, strategy


def synthetic_examples(n: int = 40) -> list[Ex]:
    rng = random.Random(0)
    words = ["horror", "comedy", "drama", "love", "action", "seen", "like", "movie", "watch", "great"]
    out = []
    for i in range(n):
        h = [
            Turn(SEEKER if j % 2 else RECOMMENDER, " ".join(rng.choices(words, k=6))) for j in range(rng.randint(0, 4))
        ]
        out.append(Ex(h, STRATEGIES[i % 5]))
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny_enc"), seed=0)


def cfg_for(tiny_dir) -> SFTConfig:
    # 40 examples / batch 8 = 5 steps per epoch, 2 epochs = 10 steps; checkpoint every 2 steps
    return SFTConfig(
        encoder=str(tiny_dir), max_length=32, lr=1e-3, batch_size=8, epochs=2, save_every_steps=2, log_every=0, seed=0
    )


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    diff = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not diff, f"weights differ in {diff[:5]}"


class Killed(RuntimeError):
    pass


def test_rng_state_roundtrip():
    g = torch.Generator().manual_seed(7)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    st = capture_rng_state({"planner": g})
    want = (random.random(), np.random.rand(), torch.rand(3), torch.rand(2, generator=g))
    random.seed(9), np.random.seed(9), torch.manual_seed(9), g.manual_seed(9)
    restore_rng_state(st, {"planner": g})
    got = (random.random(), np.random.rand(), torch.rand(3), torch.rand(2, generator=g))
    assert want[0] == got[0] and want[1] == got[1] and torch.equal(want[2], got[2]) and torch.equal(want[3], got[3])
    with pytest.raises(KeyError, match="other"):
        restore_rng_state(st, {"other": torch.Generator()})


def test_checkpoint_atomic_layout_and_weights_only(tiny_dir, tmp_path):
    p = Planner.from_config(str(tiny_dir), max_length=16, seed=0)
    opt = torch.optim.AdamW(p.parameters(), lr=1e-3)
    p(["SEEKER: hi"]).sum().backward()
    opt.step()
    root = tmp_path / "ck"
    for s in (1, 2, 3):
        save_checkpoint(root, s, model=p, optimizer=opt, state={"epoch": 0, "batch": s}, keep_last=2)
    assert [c.name for c in list_checkpoints(root)] == ["step-00000002", "step-00000003"]
    assert latest_checkpoint(root).name == "step-00000003"
    # a crash while writing leaves only a hidden temporary dir: it is never taken for a checkpoint
    (root / ".tmp-step-00000004-999").mkdir()
    (root / "step-00000005").mkdir()  # incomplete (no state.json)
    assert latest_checkpoint(root).name == "step-00000003"
    (root / "LATEST").unlink()
    assert latest_checkpoint(root).name == "step-00000003"
    # optimizer / rng files load with weights_only=True (no pickle of arbitrary objects)
    ck = latest_checkpoint(root)
    torch.load(ck / "optimizer.pt", weights_only=True)
    torch.load(ck / "rng.pt", weights_only=True)
    q = Planner.from_config(str(tiny_dir), max_length=16, seed=1)
    opt_q = torch.optim.AdamW(q.parameters(), lr=1e-3)
    st = load_checkpoint(ck, model=q, optimizer=opt_q)
    assert st["step"] == 3 and st["batch"] == 3
    assert_same_weights(p, q)
    assert all(
        torch.equal(opt.state_dict()["state"][k]["exp_avg"], opt_q.state_dict()["state"][k]["exp_avg"])
        for k in opt.state_dict()["state"]
    )


@pytest.mark.parametrize(
    "save_every,kill_step,resume_step",
    [
        (2, 7, 6),  # mid-epoch 2, one step after the step-6 checkpoint
        (0, 8, 5),  # only epoch-end checkpoints: resume at the start of epoch 2
    ],
)
def test_sft_kill_and_resume_gives_identical_weights(tiny_dir, tmp_path, save_every, kill_step, resume_step):
    data = synthetic_examples()
    cfg = cfg_for(tiny_dir)
    cfg.save_every_steps = save_every
    ref = train_sft(cfg, data, data[:8], tmp_path / "ref", log=lambda s: None)

    def kill(step, loss):
        if step == kill_step:
            raise Killed()

    with pytest.raises(Killed):
        train_sft(cfg, data, data[:8], tmp_path / "run", on_step=kill, log=lambda s: None)
    assert latest_checkpoint(tmp_path / "run" / "resume").name == f"step-{resume_step:08d}"
    res = train_sft(cfg, data, data[:8], tmp_path / "run", log=lambda s: None)
    assert res.resumed_from == resume_step
    assert_same_weights(ref.planner, res.planner)
    assert res.step_losses == ref.step_losses
    assert res.history == ref.history
    # the downstream planner dirs hold the same bytes too
    assert (ref.planner_dir / "model.safetensors").read_bytes() == (res.planner_dir / "model.safetensors").read_bytes()
    # a killed run whose resume data differs is refused, not silently mixed
    with pytest.raises(ValueError, match="different run.*n_train"):
        train_sft(cfg, data[:24], data[:8], tmp_path / "run", log=lambda s: None)
    cfg2 = cfg_for(tiny_dir)
    cfg2.lr = 5e-4
    with pytest.raises(ValueError, match="different run.*config"):
        train_sft(cfg2, data, data[:8], tmp_path / "run", log=lambda s: None)
    other_start = Planner.from_config(str(tiny_dir), max_length=32, seed=1)  # other starting weights
    with pytest.raises(ValueError, match="different run.*start_weights"):
        train_sft(cfg, data, data[:8], tmp_path / "run", planner=other_start, log=lambda s: None)
    cfg3 = cfg_for(tiny_dir)
    cfg3.log_every = 3  # cadence settings may change on resume
    assert train_sft(cfg3, data, data[:8], tmp_path / "run", log=lambda s: None).resumed_from == 10


def test_resume_is_not_trivially_equal(tiny_dir, tmp_path):
    """Guard against a vacuous resume test: resuming with the wrong RNG state (other dropout masks)
    must end with different weights, so the equality above really depends on the saved state."""
    data = synthetic_examples()
    cfg = cfg_for(tiny_dir)
    ref = train_sft(cfg, data, [], tmp_path / "ref", log=lambda s: None)

    def kill_at_7(step, loss):
        if step == 7:
            raise Killed()

    with pytest.raises(Killed):
        train_sft(cfg, data, [], tmp_path / "run", on_step=kill_at_7, log=lambda s: None)
    ck = latest_checkpoint(tmp_path / "run" / "resume")
    torch.manual_seed(999)
    torch.save(capture_rng_state(), ck / "rng.pt")
    res = train_sft(cfg, data, [], tmp_path / "run", log=lambda s: None)
    assert res.resumed_from == 6
    sa, sb = ref.planner.state_dict(), res.planner.state_dict()
    assert not all(torch.equal(sa[k], sb[k]) for k in sa)


SIGKILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    sys.path.insert(0, {tests!r})  # the shared helpers (repo_paths), as pytest's pythonpath has it
    sys.path.insert(0, {here!r})  # this test file's folder
    from test_resume import synthetic_examples, cfg_for
    from rso_lib.train.sft import train_sft
    from pathlib import Path

    def die(step, loss):
        if step == {kill_step}:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: like an OOM kill

    data = synthetic_examples()
    train_sft(cfg_for(Path({tiny!r})), data, data[:8], Path({out!r}), on_step=die, log=lambda s: None)
    """
)


def test_sft_sigkill_and_resume_gives_identical_weights(tiny_dir, tmp_path):
    data = synthetic_examples()
    cfg = cfg_for(tiny_dir)
    ref = train_sft(cfg, data, data[:8], tmp_path / "ref", log=lambda s: None)
    script = SIGKILL_SCRIPT.format(
        repo=str(REPO_ROOT),
        tests=str(TESTS_DIR),
        here=str(Path(__file__).resolve().parent),
        tiny=str(tiny_dir),
        out=str(tmp_path / "run"),
        kill_step=7,
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    ck = latest_checkpoint(tmp_path / "run" / "resume")
    assert ck is not None and json.loads((ck / "state.json").read_text())["step"] == 6  # killed at 7
    res = train_sft(cfg, data, data[:8], tmp_path / "run", log=lambda s: None)
    assert res.resumed_from == 6
    assert_same_weights(ref.planner, res.planner)
    assert res.step_losses == ref.step_losses
