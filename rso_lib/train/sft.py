"""Supervised warm-up of the Planner (paper Eq. 6), resumable.

Eq. 6:  L_SFT(theta1) = - E_{(s_t, h_t*) ~ D} log pi_theta1(h_t* | s_t)

D holds every recommender utterance of INSPIRED train: the history before it (s_t) and its
human strategy label (h_t*). Read top to bottom: :class:`SFTConfig` (every knob, documented
defaults = the paper's where it states one), :func:`sft_loss` (Eq. 6), :func:`epoch_order` (data
order = f(seed, epoch), which is what makes resume exact), :func:`train_sft` (the loop, with
validation each epoch and checkpoints), :func:`evaluate` (accuracy, macro-F1, confusion matrix).

Examples are duck-typed: anything with ``.history: list[Turn]`` and ``.strategy: str`` (helper
A's :class:`rso_lib.data.sft.SFTExample`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rso_lib.experts.planner import Planner, format_history
from rso_lib.strategies import NUM_STRATEGIES, STRATEGIES, STRATEGY_TO_ID, normalise_strategy
from rso_lib.train.checkpoint import (
    check_resumable,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_planner_atomic,
    weights_fingerprint,
)


@dataclass
class SFTConfig:
    """SFT settings. Defaults are the paper's where it gives them (lr 6e-6, batch 16, 10 epochs);
    the smoke profile overrides ``lr`` (a higher rate, e.g. 1e-4, so that a few hundred steps
    learn something), ``max_train_examples`` and ``epochs``."""

    encoder: str = "all-MiniLM-L6-v2"  # encoder name/dir (paper: roberta-large)
    max_length: int = 128  # history tokens kept, left-truncated
    pooling: str = "mean"  # "mean" | "cls"
    lr: float = 6e-6  # AdamW peak learning rate (paper: 6e-6)
    weight_decay: float = 0.01  # AdamW decoupled weight decay (not on biases / LayerNorm)
    batch_size: int = 16  # paper: 16
    epochs: int = 10  # paper: 10
    warmup_ratio: float = 0.0  # share of steps with linear warm-up, then linear decay to 0
    max_grad_norm: float | None = 1.0  # gradient clipping (None = off); paper: not stated
    seed: int = 0  # head init, data order, dropout
    max_train_examples: int | None = None  # random subset of the training examples (smoke)
    max_valid_examples: int | None = None  # random subset of the validation examples (smoke)
    eval_batch_size: int = 64
    save_every_steps: int = 0  # extra checkpoints every N steps (0: only at each epoch's end)
    keep_last: int = 2  # resume checkpoints kept on disk
    select_best: bool = True  # downstream planner = best validation macro-F1 epoch (else: last)
    bf16: bool = False  # CPU/GPU autocast to bfloat16 for the forward pass
    log_every: int = 20  # print the running loss every N steps (0: never)
    device: str = "auto"  # where a Planner built here lives: "auto" (cuda when available) | "cpu" | "cuda"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SFTConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TypeError(f"unknown SFTConfig keys {unknown}; known: {sorted(known)}")
        return cls(**d)


# ---------------------------------------------------------------- Eq. 6
def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 6 on a batch: -(1/B) sum_b log pi(h_b* | s_b). logits [B, 14], labels [B] -> scalar."""
    return torch.nn.functional.cross_entropy(logits.float(), labels)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the ``n`` examples: a permutation that depends
    only on ``(seed, epoch)``, so a resumed run sees exactly the batches it would have seen."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def subsample(examples: Sequence, k: int | None, seed: int) -> list:
    """A seeded random subset of ``k`` examples in their original order (all of them if ``k`` is
    None or >= len)."""
    if k is None or k >= len(examples):
        return list(examples)
    keep = np.sort(np.random.default_rng([int(seed), 7919]).choice(len(examples), size=int(k), replace=False))
    return [examples[i] for i in keep]


def to_texts_labels(examples: Sequence) -> tuple[list[str], torch.Tensor]:
    """Format each example's history once (``ROLE: text`` lines) and map its label to a class id."""
    texts = [format_history(e.history) for e in examples]
    labels = torch.tensor([STRATEGY_TO_ID[normalise_strategy(e.strategy)] for e in examples], dtype=torch.long)
    return texts, labels


def _autocast(enabled: bool, device: torch.device):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def adamw(param_groups, lr: float, **kw) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` with the fused kernel where the parameters' device supports it.

    Why: on CPU the default per-tensor AdamW took ~2 s per step for MiniLM's 22.7M parameters on
    this machine (slow paths on tiny second-moment values), the fused one ~0.05 s; same maths,
    deterministic."""
    try:
        return torch.optim.AdamW(param_groups, lr=lr, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # a device / dtype without the fused kernel
        return torch.optim.AdamW(param_groups, lr=lr, **kw)


def build_optimizer(planner: Planner, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (the usual BERT fine-tuning split)."""
    decay, no_decay = [], []
    for name, p in planner.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return adamw([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def linear_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0):
    """Linear warm-up to the peak lr over ``warmup_steps``, then linear decay to 0 at
    ``total_steps`` (the Hugging Face ``get_linear_schedule_with_warmup`` shape)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------- evaluation
@torch.no_grad()
def predict(planner: Planner, texts: Sequence[str], batch_size: int = 64, bf16: bool = False) -> torch.Tensor:
    """Logits [N, 14] (on CPU) in eval mode (no dropout); restores the previous mode."""
    was = planner.training
    planner.eval()
    dev = planner.head.weight.device
    try:
        with _autocast(bf16, dev):
            out = [planner(list(texts[i : i + batch_size])).float() for i in range(0, len(texts), batch_size)]
    finally:
        planner.train(was)
    return torch.cat(out).cpu() if out else torch.zeros(0, NUM_STRATEGIES)


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """Accuracy and macro-F1. Macro-F1 averages the per-class F1 over the classes present in
    ``y_true`` (a class nobody used in the reference cannot be scored; predicting it still costs
    precision elsewhere); a class never predicted has F1 0."""
    from sklearn.metrics import f1_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("no examples to score")
    labels = sorted(set(y_true.tolist()))
    return {
        "accuracy": float((y_true == y_pred).mean()),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    }


def confusion(y_true: Sequence[int], y_pred: Sequence[int]) -> np.ndarray:
    """Counts [14, 14]: row = true strategy, column = predicted (order of STRATEGIES)."""
    cm = np.zeros((NUM_STRATEGIES, NUM_STRATEGIES), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return cm


def evaluate(planner: Planner, examples: Sequence, batch_size: int = 64, bf16: bool = False) -> dict[str, Any]:
    """Loss (Eq. 6), accuracy, macro-F1 and predictions of ``planner`` on ``examples``."""
    texts, labels = to_texts_labels(examples)
    logits = predict(planner, texts, batch_size, bf16)
    pred = logits.argmax(-1)
    out: dict[str, Any] = {"loss": float(sft_loss(logits, labels)), "n": len(texts)}
    out.update(classification_metrics(labels.tolist(), pred.tolist()))
    out["y_true"], out["y_pred"] = labels.tolist(), pred.tolist()
    return out


def majority_baseline(train_examples: Sequence, test_examples: Sequence) -> dict[str, Any]:
    """The trivial classifier: always the most frequent training strategy. Its accuracy on test
    is the majority-class rate the Planner must beat (credibility, ~14% of recommender turns)."""
    from collections import Counter

    if not train_examples or not test_examples:
        raise ValueError("majority baseline needs non-empty train and test examples")
    top = Counter(normalise_strategy(e.strategy) for e in train_examples).most_common(1)[0][0]
    y_true = [STRATEGY_TO_ID[normalise_strategy(e.strategy)] for e in test_examples]
    m = classification_metrics(y_true, [STRATEGY_TO_ID[top]] * len(y_true))
    test_top, test_top_n = Counter(y_true).most_common(1)[0]
    return {
        "strategy": top,
        **m,
        "test_majority_strategy": STRATEGIES[test_top],
        "test_majority_rate": test_top_n / len(y_true),
    }


# ---------------------------------------------------------------- training
@dataclass
class SFTResult:
    planner: Planner  # the final (last-step) weights, in memory
    history: list[dict[str, Any]]  # one row per epoch: train_loss, val_loss, val_accuracy, val_macro_f1, ...
    step_losses: list[float]  # training loss of every optimizer step
    planner_dir: Path  # the planner to use downstream (best epoch when select_best, else last)
    best_epoch: int | None
    n_train: int  # examples actually used (after subsampling)
    n_train_available: int
    resumed_from: int | None  # step of the checkpoint the run continued from (None: fresh)
    seconds_per_step: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: SFTConfig fields that may change between a run and its resume (logging and checkpoint cadence,
#: evaluation batch, device): they do not change the weights a run ends with
_CADENCE = ("log_every", "keep_last", "save_every_steps", "eval_batch_size", "device")


def _resume_state(ckpt_root: Path, resume: bool, identity: dict, planner, optimizer, scheduler, log) -> dict:
    """The training state to start from: the latest checkpoint of this same run (loaded into
    ``planner``, ``optimizer`` and ``scheduler``), else a fresh start (with ``resume=False``, old
    checkpoints are removed so they cannot be mixed in later)."""
    fresh = {"step": 0, "epoch": 0, "batch": 0, "history": [], "step_losses": [], "resumed": False}
    fresh["best"] = {"epoch": None, "macro_f1": -1.0}
    ckpt = latest_checkpoint(ckpt_root) if resume else None
    if ckpt is None:
        if not resume and ckpt_root.exists():
            shutil.rmtree(ckpt_root)
        return fresh
    saved = json.loads((ckpt / "state.json").read_text()).get("identity", {})

    def drop(ident):
        return {**ident, "config": {k: v for k, v in ident.get("config", {}).items() if k not in _CADENCE}}

    check_resumable(drop(saved), drop(identity), ckpt)  # before anything is loaded into the planner
    st = load_checkpoint(ckpt, model=planner, optimizer=optimizer, scheduler=scheduler)
    log(f"[sft] resumed from {ckpt} (step {st['step']}, epoch {st['epoch']}, batch {st['batch']})")
    return {**st, "resumed": True}


def _sft_step(planner, optimizer, scheduler, texts: list[str], labels: torch.Tensor, config: SFTConfig) -> float:
    """One optimizer step of Eq. 6 on one batch; returns its loss."""
    dev = planner.head.weight.device
    with _autocast(config.bf16, dev):
        logits = planner(texts)  # [B, 14]
    loss = sft_loss(logits, labels.to(dev))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(planner.parameters(), config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


def _validate_epoch(planner, valid: Sequence, config: SFTConfig, row: dict, best: dict, planner_dir: Path) -> dict:
    """Add the validation metrics to the epoch's ``row``; when macro-F1 beats ``best``, keep this
    epoch's Planner (``select_best``). Returns the new best."""
    if not valid:
        return best
    ev = evaluate(planner, valid, config.eval_batch_size, config.bf16)
    row.update({"val_loss": ev["loss"], "val_accuracy": ev["accuracy"], "val_macro_f1": ev["macro_f1"]})
    if ev["macro_f1"] <= best["macro_f1"]:
        return best
    if config.select_best:
        save_planner_atomic(planner, planner_dir)
    return {"epoch": row["epoch"], "macro_f1": ev["macro_f1"]}


def train_sft(
    config: SFTConfig,
    train_examples: Sequence,
    valid_examples: Sequence,
    out_dir: str | os.PathLike,
    planner: Planner | None = None,
    resume: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    log: Callable[[str], None] = print,
) -> SFTResult:
    """Fine-tune the Planner with Eq. 6; validate after every epoch; checkpoint; resume.

    Layout of ``out_dir`` (e.g. ``runs/<profile>/checkpoints/sft``): ``resume/step-*/`` (full
    training state, see :mod:`rso_lib.train.checkpoint`), ``planner/`` (the downstream Planner:
    best validation macro-F1 epoch, or the last one), ``history.json``.

    With ``resume=True`` and a checkpoint in ``out_dir/resume``, training continues from it and
    ends with bitwise the weights of an uninterrupted run (same machine, same thread count).
    ``on_step(step, loss)`` runs after every optimizer step (after any checkpoint of that step);
    tests use it to kill the run.
    """
    out_dir = Path(out_dir)
    ckpt_root = out_dir / "resume"
    n_avail = len(train_examples)
    train = subsample(train_examples, config.max_train_examples, config.seed)
    valid = subsample(valid_examples, config.max_valid_examples, config.seed + 1)
    if not train:
        raise ValueError("no training examples")
    if config.max_train_examples is not None and len(train) < n_avail:
        log(
            f"[sft] SUBSAMPLED: training on {len(train)} of {n_avail} examples (max_train_examples={config.max_train_examples})"
        )
    texts, labels = to_texts_labels(train)

    if planner is None:
        planner = Planner.from_config(
            config.encoder, config.max_length, config.seed, config.pooling, device=config.device
        )
    bs = int(config.batch_size)
    steps_per_epoch = math.ceil(len(train) / bs)
    total_steps = steps_per_epoch * int(config.epochs)
    optimizer = build_optimizer(planner, config.lr, config.weight_decay)
    scheduler = linear_schedule(optimizer, total_steps, int(round(config.warmup_ratio * total_steps)))

    # what identifies this run: a checkpoint of another run (other data, settings or starting
    # weights) must not be resumed into it; logging / checkpoint cadence may change
    identity = {
        "kind": "sft",
        "n_train": len(train),
        "total_steps": total_steps,
        "config": asdict(config),
        "start_weights": weights_fingerprint(planner),
    }

    st = _resume_state(ckpt_root, resume, identity, planner, optimizer, scheduler, log)
    step, start_epoch, start_batch = st["step"], st["epoch"], st["batch"]
    history: list[dict[str, Any]] = st["history"]
    step_losses: list[float] = st["step_losses"]
    best = st["best"]
    resumed_from = step if st["resumed"] else None

    def state(epoch: int, batch: int) -> dict[str, Any]:
        return {
            "identity": identity,
            "epoch": epoch,
            "batch": batch,
            "history": history,
            "step_losses": step_losses,
            "best": best,
        }

    planner.train()
    t_steps, n_timed = 0.0, 0
    for epoch in range(start_epoch, int(config.epochs)):
        order = epoch_order(len(train), config.seed, epoch)
        first = start_batch if epoch == start_epoch else 0
        for b in range(first, steps_per_epoch):
            t0 = time.perf_counter()
            idx = order[b * bs : (b + 1) * bs]
            step_losses.append(_sft_step(planner, optimizer, scheduler, [texts[i] for i in idx], labels[idx], config))
            step += 1
            t_steps += time.perf_counter() - t0
            n_timed += 1
            if config.log_every and step % config.log_every == 0:
                recent = step_losses[-config.log_every :]
                log(
                    f"[sft] epoch {epoch + 1}/{config.epochs} step {step}/{total_steps} loss {np.mean(recent):.4f} "
                    f"lr {scheduler.get_last_lr()[0]:.2e} ({t_steps / n_timed:.2f} s/step)"
                )
            if config.save_every_steps and step % config.save_every_steps == 0 and b + 1 < steps_per_epoch:
                save_checkpoint(
                    ckpt_root,
                    step,
                    model=planner,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    state=state(epoch, b + 1),
                    keep_last=config.keep_last,
                )
            if on_step is not None:
                on_step(step, step_losses[-1])
        # ---- validation at the end of every epoch
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": float(np.mean(step_losses[-steps_per_epoch:])),
        }
        best = _validate_epoch(planner, valid, config, row, best, out_dir / "planner")
        history.append(row)
        log("[sft] " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        save_checkpoint(
            ckpt_root,
            step,
            model=planner,
            optimizer=optimizer,
            scheduler=scheduler,
            state=state(epoch + 1, 0),
            keep_last=config.keep_last,
        )

    if not config.select_best or not valid or not (out_dir / "planner").exists():
        save_planner_atomic(planner, out_dir / "planner")
    (out_dir / "history.json").write_text(json.dumps({"history": history, "best": best}, indent=1) + "\n")
    return SFTResult(
        planner=planner,
        history=history,
        step_losses=step_losses,
        planner_dir=out_dir / "planner",
        best_epoch=best["epoch"],
        n_train=len(train),
        n_train_available=n_avail,
        resumed_from=resumed_from,
        seconds_per_step=(t_steps / n_timed) if n_timed else None,
    )


def sft_test_report(
    planner: Planner, train_examples: Sequence, test_examples: Sequence, batch_size: int = 64, bf16: bool = False
):
    """The SFT results table on the test split: the Planner and, beside it, the majority-class
    baseline (always the most frequent training strategy). Returns (DataFrame, confusion [14,14],
    the Planner's :func:`evaluate` dict)."""
    import pandas as pd

    ev = evaluate(planner, test_examples, batch_size, bf16)
    mb = majority_baseline(train_examples, test_examples)
    df = pd.DataFrame(
        [
            {
                "model": f"Planner SFT ({planner.config.encoder})",
                "n_test": ev["n"],
                "accuracy": ev["accuracy"],
                "macro_f1": ev["macro_f1"],
                "test_loss": ev["loss"],
            },
            {
                "model": f"majority class ({mb['strategy']})",
                "n_test": ev["n"],
                "accuracy": mb["accuracy"],
                "macro_f1": mb["macro_f1"],
                "test_loss": float("nan"),
            },
        ]
    )
    return df, confusion(ev["y_true"], ev["y_pred"]), ev
