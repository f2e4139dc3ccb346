"""Entropy-regularised REINFORCE for the Planner (paper Eq. 7-8), resumable.

Eq. 8 (discounted return of turn t):   R_t = sum_{i>=0} gamma^i r_{t+i}
Eq. 7 (loss of one dialogue):          L = - sum_t log pi(h_t | s_t) * R_t  -  beta * mean_t H(pi(.|s_t))

r_t is the Rewarder's score of turn t in [0, 1] (the mean value of 10 sampled acceptance
judgements on the authors' scale, :mod:`rso_lib.experts.rewarder`). Read top to bottom:
:class:`RLConfig`, :func:`discounted_returns` (Eq. 8), :func:`apply_baseline`, :func:`reinforce_loss` (Eq. 7), :func:`rl_update` (one policy-gradient
step on a batch of episodes -- plain data, no engine needed), :func:`train_rl` (epochs x updates
with checkpoints and resume), :func:`engine_collector` (the thin glue that gets episodes from the
dialogue engine); its training curves are drawn by :func:`rso_lib.plots.plot_rl_curves`.

Choices the paper leaves open, made explicit here:
* Returns are used plain (``baseline="none"``, the paper's form). ``"mean"`` subtracts the batch
  mean return; ``"normalise"`` standardises each episode longer than one turn (the authors'
  ``agent.py``; :func:`apply_baseline`).
* A batch of E episodes is averaged: L = -(1/E) sum_e sum_t log pi * R  -  beta * mean over all
  turns of H.
* During the update the Planner runs in eval mode (no dropout), so log pi is the probability of
  the very policy that sampled the strategies (``act`` also runs in eval mode).
* Gradient-norm clipping (``max_grad_norm``, notebook ``GRAD_CLIP``): neither the paper nor the
  authors' code clips; off (None / 0) in the paper profile, 1.0 in the smoke profile.
"""

from __future__ import annotations

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

from rso_lib.data.records import Turn
from rso_lib.experts.planner import Planner
from rso_lib.strategies import NUM_STRATEGIES, STRATEGIES
from rso_lib.train.checkpoint import (
    check_resumable,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_planner_atomic,
    weights_fingerprint,
)


@dataclass
class RLConfig:
    """RL settings; defaults are the paper's where it gives them."""

    lr: float = 1e-4  # Adam(W) learning rate (paper: 1e-4)
    gamma: float = 0.99  # discount of Eq. 8 (paper: 0.99)
    beta: float = 0.01  # entropy-bonus weight of Eq. 7 (paper value not transcribed here: our default)
    baseline: str = "none"  # "none" (paper: plain returns) | "mean" | "normalise"
    epochs: int = 10  # paper: 10
    dialogues_per_epoch: int = 100  # paper: 100
    dialogues_per_update: int = 10  # episodes per policy-gradient step (paper: not stated)
    max_turns: int = 10  # system turns per dialogue (paper: <= 10); passed to the engine by the caller
    max_grad_norm: float | None = None  # gradient-norm clipping (None / 0: off, as paper and authors)
    weight_decay: float = 0.0
    chunk_size: int = 32  # turns per forward/backward chunk (memory); the gradient is the same sum
    seed: int = 0  # target order per epoch, engine seeds per update
    save_every_updates: int = 1  # checkpoint every N updates (and always at the end)
    keep_last: int = 2

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RLConfig:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise TypeError(f"unknown RLConfig keys {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)

    @property
    def updates_per_epoch(self) -> int:
        return math.ceil(self.dialogues_per_epoch / self.dialogues_per_update)


@dataclass
class EpisodeData:
    """What RL needs from one dialogue: per system turn the state, the sampled strategy id and
    the reward; plus whether the simulated user accepted (the RL log's Accept-SR)."""

    histories: list[list[Turn]]  # s_t: dialogue history before turn t
    actions: list[int]  # h_t: index into STRATEGIES
    rewards: list[float]  # r_t in [0, 1]
    accepted: bool = False
    dialog_id: str = ""

    def __post_init__(self):
        if not (len(self.histories) == len(self.actions) == len(self.rewards)):
            raise ValueError(
                f"episode {self.dialog_id!r}: {len(self.histories)} states, {len(self.actions)} actions, "
                f"{len(self.rewards)} rewards"
            )


# ---------------------------------------------------------------- Eq. 8
def discounted_returns(rewards: Sequence[float], gamma: float) -> list[float]:
    """Eq. 8: R_t = sum_{i>=0} gamma^i r_{t+i}, computed backwards (R_t = r_t + gamma R_{t+1})."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    out, acc = [0.0] * len(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = float(rewards[t]) + gamma * acc
        out[t] = acc
    return out


#: The authors' epsilon of the standardisation (``np.finfo(np.float32).eps``).
_EPS = float(np.finfo(np.float32).eps)


def apply_baseline(returns: torch.Tensor, kind: str = "none", lengths: Sequence[int] | None = None) -> torch.Tensor:
    """Optional variance reduction over a batch of returns [N]. ``"none"`` is the paper's Eq. 7.

    ``"mean"`` subtracts the batch mean. ``"normalise"`` is the authors' (``agent.py``): each
    episode's returns are standardised on their own, ``(R - mean) / (std + eps)`` with the sample
    std, and **only episodes longer than one turn**; a one-turn episode keeps its plain return
    (standardising it would zero its gradient). ``lengths``: the episodes' turn counts, in order
    (default: the batch is one episode)."""
    if kind == "none":
        return returns
    if kind == "mean":
        return returns - returns.mean()
    if kind != "normalise":
        raise ValueError(f"baseline must be 'none', 'mean' or 'normalise', got {kind!r}")
    lengths = [int(returns.numel())] if lengths is None else [int(n) for n in lengths]
    if sum(lengths) != returns.numel():
        raise ValueError(f"apply_baseline: episode lengths {lengths} do not add up to {returns.numel()} returns")
    parts, i = [], 0
    for n in lengths:
        seg = returns[i : i + n]
        parts.append((seg - seg.mean()) / (seg.std() + _EPS) if n > 1 else seg)
        i += n
    return torch.cat(parts) if parts else returns


# ---------------------------------------------------------------- Eq. 7
def reinforce_loss(
    logp: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    beta: float,
    n_episodes: int = 1,
    n_turns: int | None = None,
) -> torch.Tensor:
    """Eq. 7 over a batch: -(1/E) sum_t log pi(h_t|s_t) R_t  -  beta * mean_t H(pi(.|s_t)).

    logp, returns, entropy: [N] over the N turns of E = ``n_episodes`` episodes (returns carry no
    gradient). ``n_turns`` (default N) is the denominator of the entropy mean -- pass the batch's
    total when this is one chunk of a bigger batch, so that the chunks' losses add up to the
    batch's loss."""
    n_turns = int(logp.numel()) if n_turns is None else int(n_turns)
    pg = -(logp * returns.detach()).sum() / max(1, int(n_episodes))
    return pg - beta * entropy.sum() / max(1, n_turns)


def rl_update(
    planner: Planner, optimizer: torch.optim.Optimizer, episodes: Sequence[EpisodeData], config: RLConfig
) -> dict[str, Any]:
    """One REINFORCE step (Eq. 7-8) on ``episodes``. Returns the update's log row: mean reward
    (per turn), Accept-SR (share of episodes whose simulated user accepted; not Conv-SR, which the
    evaluation tables take from the evaluator's reward), mean entropy and mean log-prob of the
    policy at the visited states (before the step), loss, gradient norm, strategy histogram."""
    eps = [e for e in episodes if e.actions]
    hist = np.bincount([a for e in episodes for a in e.actions], minlength=NUM_STRATEGIES)
    row: dict[str, Any] = {
        "n_episodes": len(episodes),
        "n_turns": int(hist.sum()),
        "mean_reward": float(np.mean([r for e in episodes for r in e.rewards])) if hist.sum() else float("nan"),
        "accept_sr": float(np.mean([e.accepted for e in episodes])) if episodes else float("nan"),
        "mean_episode_return": float(np.mean([discounted_returns(e.rewards, config.gamma)[0] for e in eps]))
        if eps
        else float("nan"),
    }
    row.update({f"n_{s}": int(c) for s, c in zip(STRATEGIES, hist)})
    if not eps:  # nothing to learn from: no step (the optimizer state stays as it was)
        row.update({"loss": float("nan"), "mean_entropy": float("nan"), "mean_logp": float("nan"), "grad_norm": 0.0})
        return row
    states = [h for e in eps for h in e.histories]
    actions = [a for e in eps for a in e.actions]
    returns = torch.tensor([R for e in eps for R in discounted_returns(e.rewards, config.gamma)], dtype=torch.float32)
    returns = apply_baseline(returns, config.baseline, [len(e.actions) for e in eps])
    n, n_eps = len(states), len(eps)
    was = planner.training
    planner.eval()  # log pi of the policy that acted (no dropout)
    optimizer.zero_grad(set_to_none=True)
    loss_sum, ent_sum, logp_sum = 0.0, 0.0, 0.0
    try:
        for i in range(0, n, config.chunk_size):
            sl = slice(i, i + config.chunk_size)
            logp, ent = planner.log_prob_and_entropy(states[sl], actions[sl])  # [c], [c]
            loss = reinforce_loss(logp, returns[sl].to(logp.device), ent, config.beta, n_eps, n)
            loss.backward()  # chunk losses add up to the batch loss, so do their gradients
            loss_sum += float(loss.detach())
            ent_sum += float(ent.detach().sum())
            logp_sum += float(logp.detach().sum())
        params = [p for p in planner.parameters() if p.requires_grad]
        # max_grad_norm None / 0: no clipping (the paper and the authors' code have none); the
        # norm is still measured for the log
        gn = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm if config.max_grad_norm else float("inf"))
        optimizer.step()
    finally:
        planner.train(was)
    row.update({"loss": loss_sum, "mean_entropy": ent_sum / n, "mean_logp": logp_sum / n, "grad_norm": float(gn)})
    return row


def build_rl_optimizer(planner: Planner, config: RLConfig) -> torch.optim.AdamW:
    """AdamW (fused where available, see :func:`rso_lib.train.sft.adamw`) over all parameters."""
    from rso_lib.train.sft import adamw

    return adamw([p for p in planner.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay)


# ---------------------------------------------------------------- the loop
#: collect(epoch, update, planner) -> the episodes of that update, sampled with the current planner.
Collector = Callable[[int, int, Planner], list[EpisodeData]]


@dataclass
class RLResult:
    planner: Planner
    log: list[dict[str, Any]]  # one row per update
    planner_dir: Path
    resumed_from: int | None
    seconds_per_update: float | None = None  # the update step only (not the dialogues)
    seconds_per_collect: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def train_rl(
    config: RLConfig,
    planner: Planner,
    collect: Collector,
    out_dir: str | os.PathLike,
    resume: bool = True,
    on_update: Callable[[int, dict], None] | None = None,
    log: Callable[[str], None] = print,
) -> RLResult:
    """``config.epochs`` x ``config.updates_per_epoch`` REINFORCE updates; each update first
    collects its episodes with the current Planner via ``collect(epoch, update, planner)``.

    ``out_dir`` (e.g. ``runs/<profile>/checkpoints/rl``) gets ``resume/step-*/`` checkpoints and
    ``planner/`` (the final Planner). A run killed between updates resumes from the last
    checkpoint; with a ``collect`` that is a deterministic function of (epoch, update, planner
    weights) -- as :func:`engine_collector` makes it -- the resumed run ends with bitwise the
    weights of an uninterrupted one. ``on_update(step, row)`` runs after each update (and its
    checkpoint)."""
    out_dir = Path(out_dir)
    ckpt_root = out_dir / "resume"
    optimizer = build_rl_optimizer(planner, config)
    total = config.epochs * config.updates_per_epoch
    step, rows, resumed_from = 0, [], None
    # the run's identity: settings (not the checkpoint cadence) + the weights it starts from (e.g.
    # which SFT Planner); a checkpoint of another run is refused, never silently continued
    _cadence = ("save_every_updates", "keep_last", "chunk_size")
    identity = {
        "kind": "rl",
        "total_updates": total,
        "start_weights": weights_fingerprint(planner),
        "config": {k: v for k, v in asdict(config).items() if k not in _cadence},
    }
    ckpt = latest_checkpoint(ckpt_root) if resume else None
    if ckpt is not None:
        check_resumable(json.loads((ckpt / "state.json").read_text()).get("identity", {}), identity, ckpt)
        st = load_checkpoint(ckpt, model=planner, optimizer=optimizer)
        step, rows, resumed_from = st["step"], st["log"], st["step"]
        log(f"[rl] resumed from {ckpt} (update {step}/{total})")
    else:
        if ckpt_root.exists():
            shutil.rmtree(ckpt_root)
        reset = getattr(collect, "reset", None)
        if reset is not None:  # a fresh run must not read back an earlier run's dialogues
            reset()

    t_upd, t_col, n_timed = 0.0, 0.0, 0
    while step < total:
        epoch, update = divmod(step, config.updates_per_epoch)
        t0 = time.perf_counter()
        episodes = collect(epoch, update, planner)
        t1 = time.perf_counter()
        row = {
            "step": step + 1,
            "epoch": epoch + 1,
            "update": update + 1,
            **rl_update(planner, optimizer, episodes, config),
        }
        t_col, t_upd, n_timed = t_col + (t1 - t0), t_upd + (time.perf_counter() - t1), n_timed + 1
        rows.append(row)
        step += 1
        log(
            f"[rl] epoch {epoch + 1}/{config.epochs} update {update + 1}/{config.updates_per_epoch}: "
            f"reward {row['mean_reward']:.3f} accept_sr {row['accept_sr']:.2f} entropy {row['mean_entropy']:.3f} "
            f"loss {row['loss']:.4f} ({row['n_episodes']} dialogues, {row['n_turns']} turns; "
            f"collect {t1 - t0:.1f}s, update {time.perf_counter() - t1:.2f}s)"
        )
        if step % max(1, config.save_every_updates) == 0 or step == total:
            save_checkpoint(
                ckpt_root,
                step,
                model=planner,
                optimizer=optimizer,
                keep_last=config.keep_last,
                state={"identity": identity, "log": rows},
            )
        if on_update is not None:
            on_update(step, row)
    save_planner_atomic(planner, out_dir / "planner")
    return RLResult(
        planner,
        rows,
        out_dir / "planner",
        resumed_from,
        seconds_per_update=(t_upd / n_timed) if n_timed else None,
        seconds_per_collect=(t_col / n_timed) if n_timed else None,
    )


# ---------------------------------------------------------------- engine glue
def episodes_from_engine(episodes: Sequence[Any]) -> list[EpisodeData]:
    """:class:`rso_lib.dialogue.transcript.Episode` -> :class:`EpisodeData`. A turn without a
    Planner strategy or without a reward is an error (RL needs both): use a system with
    ``strategy_mode="planner"`` and a rewarder."""
    out = []
    for ep in episodes:
        for t in ep.turns:
            if t.strategy_index is None or t.reward is None:
                raise ValueError(
                    f"dialogue {ep.dialog_id} turn {t.turn}: strategy_index={t.strategy_index}, "
                    f"reward={t.reward}; RL needs the Planner's strategy and a reward on every turn"
                )
        out.append(
            EpisodeData(
                [list(t.history_before) for t in ep.turns],
                [int(t.strategy_index) for t in ep.turns],
                [float(t.reward) for t in ep.turns],
                bool(ep.accepted),
                ep.dialog_id,
            )
        )
    return out


def update_seed(seed: int, epoch: int, update: int) -> int:
    """The engine seed of one update: a function of (seed, epoch, update) only."""
    return int(np.random.default_rng([int(seed), int(epoch), int(update), 31]).integers(0, 2**31 - 1))


def engine_collector(
    engine, targets: Sequence[Any], config: RLConfig, transcript_dir: str | os.PathLike | None = None
) -> Collector:
    """A :data:`Collector` running ``engine`` (a :class:`rso_lib.dialogue.engine.DialogueEngine`
    built with this Planner) with the Planner sampling.

    Epoch e visits ``config.dialogues_per_epoch`` targets in an order drawn from (seed, e)
    (cycling through ``targets`` when there are fewer); update u of that epoch takes the next
    ``config.dialogues_per_update`` of them. Before each run the engine's seed is set to
    :func:`update_seed` (seed, e, u), so the Planner's samples and every LLM call are a function
    of (seed, epoch, update, weights) -- what exact resume needs. Each update writes
    ``transcript_dir/rl_e{e}_u{u}.jsonl``; a rerun of a killed update reads its finished dialogues
    back from there (a fresh :func:`train_rl` run deletes them first, via ``collect.reset``)."""
    if not targets:
        raise ValueError("engine_collector: no targets")
    tdir = Path(transcript_dir) if transcript_dir is not None else None

    def collect(epoch: int, update: int, planner: Planner) -> list[EpisodeData]:
        if engine.planner is not planner:
            raise ValueError("engine_collector: the engine was built with a different Planner object")
        rng = np.random.default_rng([int(config.seed), int(epoch), 17])
        reps = math.ceil(config.dialogues_per_epoch / len(targets))
        order = np.concatenate([rng.permutation(len(targets)) for _ in range(reps)])[: config.dialogues_per_epoch]
        lo, hi = update * config.dialogues_per_update, (update + 1) * config.dialogues_per_update
        batch = []
        for pos in range(lo, min(hi, len(order))):
            # the k-th visit of a target in this epoch (k > 0 when the epoch cycles through the
            # targets) gets its own dialog_id, so transcripts and the engine never mix the two
            t, k = targets[int(order[pos])], int((order[:pos] == order[pos]).sum())
            batch.append(t if k == 0 else _renamed(t, f"{t.dialog_id}#{k}"))
        engine.seed = update_seed(config.seed, epoch, update)
        path = tdir / f"rl_e{epoch:02d}_u{update:03d}.jsonl" if tdir is not None else None
        return episodes_from_engine(engine.run(batch, path, sample_strategy=True))

    def reset() -> None:
        """Forget the transcripts of an earlier run (train_rl calls this on a fresh start)."""
        if tdir is not None and tdir.exists():
            for f in tdir.glob("rl_e*_u*.jsonl"):
                f.unlink()

    collect.reset = reset  # type: ignore[attr-defined]
    return collect


def _renamed(target, dialog_id: str):
    from dataclasses import replace

    return replace(target, dialog_id=dialog_id)
