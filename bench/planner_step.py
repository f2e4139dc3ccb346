"""Planner training cost on this machine: one SFT step (MiniLM, batch 16, 128 tokens) in fp32 and
bf16 autocast, measured side by side in one run, one RL update per turn, and the implied wall time
of the paper-scale runs (SFT: ~14,700 INSPIRED train utterances x 10 epochs / batch 16; RL: 10
epochs x 100 dialogues x <= 10 turns, update cost only -- the dialogues themselves are the
engine's cost, see bench/dialogue_engine.py).

    HF_HUB_OFFLINE=1 RSO_DATA_DIR=../shared/data .venv/bin/python bench/planner_step.py [--steps 8]

Last line: ``sft_paper_cpu_hours=X`` (fp32, this CPU).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from _record import add_out_argument, recorded  # noqa: E402  (--out: a provenance file)

from rso_lib.experts.planner import Planner, format_history  # noqa: E402
from rso_lib.train.rl import EpisodeData, RLConfig, build_rl_optimizer, rl_update  # noqa: E402
from rso_lib.train.sft import build_optimizer, sft_loss, subsample  # noqa: E402


def real_examples(n: int):
    """Real INSPIRED train examples when the data dir is there (realistic lengths), else None."""
    try:
        from rso_lib.data.inspired import load_strategy_split
        from rso_lib.data.sft import build_sft_examples
        from rso_lib.paths import data_dir

        d, _ = load_strategy_split(data_dir(os.environ.get("RSO_DATA_DIR", "../shared/data")), "train")
        ex = build_sft_examples(d)
        return subsample(ex, n, seed=0), len(ex)
    except Exception as e:  # noqa: BLE001 -- a benchmark must still run without the data
        print(f"(no real data: {e}; using synthetic histories)")
        return None, 14662


def time_sft(planner: Planner, texts, labels, steps: int, bf16: bool) -> list[float]:
    opt = build_optimizer(planner, 6e-6, 0.01)
    planner.train()
    out = []
    for s in range(steps + 2):  # 2 warm-up steps not timed
        i = (s * 16) % (len(texts) - 16)
        t0 = time.perf_counter()
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
        with ctx:
            logits = planner(texts[i : i + 16])
        loss = sft_loss(logits, labels[i : i + 16])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(planner.parameters(), 1.0)
        opt.step()
        if s >= 2:
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8, help="timed SFT steps per precision")
    ap.add_argument("--rl-turns", type=int, default=60, help="turns in the timed RL update (10 dialogues x 6)")
    add_out_argument(ap)
    a = ap.parse_args()
    with recorded(a.out):
        run_bench(a)


def run_bench(a: argparse.Namespace) -> None:
    """The bench itself; what it prints is the measurement (``main`` records it with ``--out``)."""
    torch.manual_seed(0)
    ex, n_train = real_examples(16 * (a.steps + 2) + a.rl_turns)
    if ex is None:
        from rso_lib.data.records import RECOMMENDER, SEEKER, Turn

        hist = [
            Turn(SEEKER if j % 2 else RECOMMENDER, "I really liked the last horror movie I saw, it was great " * 2)
            for j in range(12)
        ]
        texts = [format_history(hist)] * (16 * (a.steps + 2) + a.rl_turns)
        histories = [hist] * a.rl_turns
    else:
        texts = [format_history(e.history) for e in ex]
        histories = [e.history for e in ex[: a.rl_turns]]
    labels = torch.randint(0, 14, (len(texts),))

    planner = Planner.from_config(max_length=128, seed=0)
    lens = [len(planner.tokenizer(t, truncation=True, max_length=129)["input_ids"]) for t in texts]
    load = os.getloadavg()[0]
    print(
        f"threads={torch.get_num_threads()} cpus={os.cpu_count()} loadavg_1min={load:.1f} "
        f"mean_tokens={statistics.mean(min(l, 128) for l in lens):.0f} (max_length 128) "
        f"share_truncated={sum(l > 128 for l in lens) / len(lens):.2f}"
    )
    if load > (os.cpu_count() or 1):
        print("WARNING: the machine is busy (load > cores): timings are inflated; rerun when idle")
    fp32 = time_sft(planner, texts, labels, a.steps, bf16=False)
    planner = Planner.from_config(max_length=128, seed=0)
    bf16 = time_sft(planner, texts, labels, a.steps, bf16=True)
    s32, s16 = statistics.median(fp32), statistics.median(bf16)

    # RL: one update over rl_turns turns (eval-mode forward + backward, chunked)
    planner = Planner.from_config(max_length=128, seed=0)
    cfg = RLConfig()
    opt = build_rl_optimizer(planner, cfg)
    eps = [
        EpisodeData(
            histories[i : i + 6],
            [int(x) for x in torch.randint(0, 14, (len(histories[i : i + 6]),))],
            [0.5] * len(histories[i : i + 6]),
        )
        for i in range(0, len(histories), 6)
    ]
    rl_update(planner, opt, eps[:2], cfg)  # warm-up
    t0 = time.perf_counter()
    rl_update(planner, opt, eps, cfg)
    rl_s = time.perf_counter() - t0
    per_turn = rl_s / len(histories)

    sft_steps = math.ceil(n_train / 16) * 10
    rl_turns_paper = 10 * 100 * 10  # upper bound: every dialogue runs the full 10 turns
    print(f"{'measure':38s} {'value':>10s}")
    print(f"{'SFT step fp32 (s, median)':38s} {s32:10.3f}")
    print(f"{'SFT step bf16 autocast (s, median)':38s} {s16:10.3f}")
    print(f"{'bf16 speed-up (fp32 / bf16)':38s} {s32 / s16:10.2f}")
    print(f"{f'RL update, {len(histories)} turns (s)':38s} {rl_s:10.3f}")
    print(f"{'RL update per turn (s)':38s} {per_turn:10.4f}")
    print(f"{f'paper SFT steps ({n_train} ex x 10 / 16)':38s} {sft_steps:10d}")
    print(f"{'paper SFT, fp32, this CPU (h)':38s} {sft_steps * s32 / 3600:10.2f}")
    print(f"{'paper SFT, bf16, this CPU (h)':38s} {sft_steps * s16 / 3600:10.2f}")
    print(f"{'paper RL updates only, <=10k turns (h)':38s} {rl_turns_paper * per_turn / 3600:10.2f}")
    print(f"sft_step_fp32_s={s32:.3f}")
    print(f"rl_update_per_turn_s={per_turn:.4f}")
    print(f"sft_paper_cpu_hours={sft_steps * s32 / 3600:.2f}")


if __name__ == "__main__":
    main()
