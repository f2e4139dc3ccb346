"""Training UniCRS / BARCOR: staged, seeded, checkpointed, exactly resumable.

Conventions of the Planner trainers (:mod:`rso_lib.train.checkpoint`): atomic checkpoints
(``<out>/checkpoints/step-*``, safetensors weights, optimizer and RNG states loaded with
``weights_only=True``), a run identity checked on resume, a metrics file per run
(``<out>/metrics.json``: config, data sizes, the loss of every step, per-stage first / last
mean losses, seconds) and the final model in ``<out>/model`` (written atomically).

The batch of step ``s`` is drawn from ``numpy.random.default_rng([seed, s])`` over the pool of
examples its stage can learn from, so the data order needs no state: a run resumed from a
checkpoint at step ``s`` continues with exactly the batches, dropout masks and optimizer state of
an uninterrupted run and ends with bitwise the same weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rso_lib.baselines.examples import Example
from rso_lib.paths import temp_sibling
from rso_lib.train.checkpoint import (
    check_resumable,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_planner_atomic,
)


@dataclass
class PLMTrainConfig:
    """One training run.

    Attributes:
        stages: ``[(task, steps), ...]`` in order; UniCRS tasks ``pretrain`` / ``rec`` / ``conv``
            (its paper's three stages), BARCOR ``rec`` / ``conv``.
        batch_size: examples per step (default 8).
        lr / weight_decay / grad_clip: AdamW settings (defaults 1e-3 / 0.0 / 1.0).
        seed: seeds torch / numpy / python and the batch order (default 0).
        ckpt_every: checkpoint every this many steps (0: only at the end; default 20).
        keep_last: checkpoints kept (default 2).
    """

    stages: list = field(default_factory=lambda: [["rec", 20], ["conv", 20]])
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    ckpt_every: int = 20
    keep_last: int = 2

    def __post_init__(self):
        self.stages = [[str(t), int(n)] for t, n in self.stages]
        if not self.stages or any(n < 0 for _, n in self.stages):
            raise ValueError(f"PLMTrainConfig.stages: need [(task, steps >= 0), ...], got {self.stages}")

    @property
    def total_steps(self) -> int:
        return sum(n for _, n in self.stages)

    def stage_at(self, step: int) -> str:
        for t, n in self.stages:
            if step < n:
                return t
            step -= n
        raise IndexError(step)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def task_pool(examples: Sequence[Example], task: str) -> list[int]:
    """Indices of the examples a task can learn from (rec: a named movie; pretrain: a linked
    entity in the response; conv: all)."""
    if task == "rec":
        return [i for i, e in enumerate(examples) if e.targets]
    if task == "pretrain":
        return [i for i, e in enumerate(examples) if e.response_entities]
    return list(range(len(examples)))


def batch_for(step: int, pool: list[int], batch_size: int, seed: int) -> list[int]:
    rng = np.random.default_rng([seed, step])
    return sorted(rng.choice(pool, size=batch_size, replace=len(pool) < batch_size).tolist())


def data_fingerprint(examples: Sequence[Example]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.dialog_id, [t.text for t in e.context][-2:], e.response, e.targets]).encode())
    return h.hexdigest()[:16]


def train_plm(
    model,
    examples: Sequence[Example],
    cfg: PLMTrainConfig,
    out_dir: str | Path,
    resume: bool = True,
    stop_after: int | None = None,
    on_step: Callable[[dict], None] | None = None,
) -> dict:
    """Train ``model`` (UniCRS / BARCOR) on ``examples``; returns the metrics dict.

    Args:
        model: the model (its ``loss(batch, task)`` is minimised).
        examples: training examples (:func:`rso_lib.baselines.examples.build_examples`).
        cfg: the run's config.
        out_dir: run directory (checkpoints, metrics.json, model/).
        resume: continue from the latest checkpoint of the same run (config + data + model kind).
        stop_after: stop after this many total steps (tests interrupt runs with it).
        on_step: called with each step's record.
    """
    out = Path(out_dir)
    ck_root = out / "checkpoints"
    identity = {
        "config": dataclasses.asdict(cfg),
        "kind": model.kind,
        "model_config": dataclasses.asdict(model.cfg),
        "data": data_fingerprint(examples),
        "n_examples": len(examples),
    }
    pools = {t: task_pool(examples, t) for t, _ in cfg.stages}
    for t, n in cfg.stages:
        if n and not pools[t]:
            raise ValueError(
                f"train_plm: stage {t!r} has {n} steps but no example can train it "
                f"({len(examples)} examples, none with {'a named movie' if t == 'rec' else 'an entity'})"
            )
    seed_everything(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, history = 0, []
    ck = latest_checkpoint(ck_root) if resume else None
    if ck is not None:
        saved = json.loads((ck / "state.json").read_text())
        check_resumable(saved["identity"], identity, ck)
        state = load_checkpoint(ck, model=model, optimizer=opt)
        step, history = state["step"], state["history"]
    end = cfg.total_steps if stop_after is None else min(cfg.total_steps, stop_after)
    t0 = time.perf_counter()
    model.train()
    while step < end:
        task = cfg.stage_at(step)
        if (step == 0 or cfg.stage_at(step - 1) != task) and hasattr(model, "on_stage_start"):
            model.on_stage_start(task)  # e.g. UniCRS initialises its conversation prompt encoder
        batch = [examples[i] for i in batch_for(step, pools[task], cfg.batch_size, cfg.seed)]
        loss = model.loss(batch, task)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        step += 1
        rec = {"step": step, "task": task, "loss": float(loss.detach())}
        history.append(rec)
        if on_step is not None:
            on_step(rec)
        if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or step == end:
            save_checkpoint(
                ck_root,
                step,
                model=model,
                optimizer=opt,
                keep_last=cfg.keep_last,
                state={"identity": identity, "history": history},
            )
    model.eval()
    metrics = {
        "kind": model.kind,
        "config": dataclasses.asdict(cfg),
        "model_config": dataclasses.asdict(model.cfg),
        "kg": model.kg.summary(),
        "n_examples": len(examples),
        "pools": {t: len(p) for t, p in pools.items()},
        "steps_done": step,
        "history": history,
        "seconds_this_call": round(time.perf_counter() - t0, 2),
        "stages": stage_summary(history),
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out / "metrics.json")
    tmp.write_text(json.dumps(metrics, indent=1) + "\n")
    tmp.replace(out / "metrics.json")
    if step == cfg.total_steps:
        save_planner_atomic(model, out / "model")
    return metrics


def stage_summary(history: list[dict], window: int = 5) -> dict:
    """Per task: steps, mean loss of its first and last ``window`` steps (at most half its steps,
    so the two never overlap when it has two or more)."""
    out: dict[str, dict] = {}
    for t in dict.fromkeys(r["task"] for r in history):
        ls = [r["loss"] for r in history if r["task"] == t]
        w = min(window, max(1, len(ls) // 2))
        out[t] = {"steps": len(ls), "first_loss": float(np.mean(ls[:w])), "last_loss": float(np.mean(ls[-w:]))}
    return out
