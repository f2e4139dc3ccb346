"""Real-model check of the simulated user and the acceptance Rewarder (issue 20, items 1-2).

Runs one system on a few INSPIRED test users with the LLM user (Qwen2.5-Coder-0.5B, as the cpu
profile) and the acceptance Rewarder (Qwen2.5-Coder-1.5B), then prints each dialogue and how long
the dialogues lasted, what the user did (asked / accepted / rejected) and the rewards. It measures
behaviour, not quality: small models, few users.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/protocol_sim_check.py --n 4 --max-turns 4
"""

from __future__ import annotations

import argparse
import collections
import json
import time

from _record import add_out_argument, recorded  # bench/_record.py: --out writes a provenance file

from rso_lib.data.kb import load_kb
from rso_lib.data.targets import apply_genre_rule, load_sim_targets, split_reachable
from rso_lib.dialogue.config import EngineConfig
from rso_lib.dialogue.systems import build_system
from rso_lib.paths import data_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4, help="simulated users (INSPIRED test, file order)")
    ap.add_argument("--max-turns", type=int, default=4)
    ap.add_argument("--system", default="RSO", help="RSO uses an untrained Planner (no checkpoint needed)")
    ap.add_argument("--model", default="qwen2.5-0.5b", help="system and user model (embedded alias)")
    ap.add_argument("--rewarder", default="qwen2.5-1.5b", help="Rewarder model (embedded alias)")
    ap.add_argument("--reward-mode", default="sampled", choices=("expected", "sampled"))
    ap.add_argument("--reward-samples", type=int, default=3)
    ap.add_argument("--tau", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--opening", default="Hello.", help='the user\'s first message ("" -> written by the LLM)')
    add_out_argument(ap)
    args = ap.parse_args()
    with recorded(args.out):
        run_bench(args)


def run_bench(args: argparse.Namespace) -> None:
    """The bench itself; what it prints is the measurement (``main`` records it with ``--out``)."""

    kb = load_kb(data_dir(""))
    targets, _ = split_reachable(apply_genre_rule(load_sim_targets(data_dir(""), "inspired"), "first"), kb)
    targets = targets[: args.n]
    planner = None
    if args.system.upper() in ("RSO", "NO_RETRIEVER", "NO_REASONER"):
        from rso_lib.experts.planner import Planner

        planner = Planner.from_config(seed=args.seed)
        planner.eval()
    llm_cfg = {
        "default": {"backend": "embedded", "model": args.model},
        "rewarder": {"backend": "embedded", "model": args.rewarder},
    }
    config = EngineConfig(
        simulator="llm",
        reward="judge",
        reward_mode=args.reward_mode,
        reward_samples=args.reward_samples,
        stop_threshold=args.tau,
        stop_on_reward=True,
        max_turns=args.max_turns,
        top_k=3,
        actor_max_tokens=40,
        reasoner_max_tokens=32,
        user_max_tokens=32,
        actor_temperature=0.0,
        user_temperature=0.0,
        require_kb_cover=False,
        user_opening=args.opening,
    )
    eng = build_system(args.system, config, kb=kb, llm_cfg=llm_cfg, planner=planner, seed=args.seed)
    t0 = time.perf_counter()
    eps = eng.run(targets, sample_strategy=False)
    wall = time.perf_counter() - t0
    actions: collections.Counter = collections.Counter()
    for e in eps:
        print(f"\n=== {e.dialog_id} target={e.target.target_genres} turns={len(e.turns)} end={e.stop_reason}")
        print(f"USER: {e.user_open}")
        for t in e.turns:
            actions[t.user_action] += 1
            print(f"SYS [{t.strategy}] {t.reply}")
            print(
                f"USER ({t.user_action}, item={t.mentioned_item}, p_accept={t.p_accept and round(t.p_accept, 3)}, "
                f"reward={t.reward and round(t.reward, 3)}, stop={t.stop}) {t.user_reply}"
            )
    lens = [len(e.turns) for e in eps]
    summary = {
        "dialogues": len(eps),
        "turns": lens,
        "mean_turns": sum(lens) / len(lens),
        "longer_than_one_turn": sum(n > 1 for n in lens),
        "user_actions": dict(actions),
        "dialogues_with_a_rejection": sum(any(t.user_action == "reject" for t in e.turns) for e in eps),
        "accept_sr": sum(e.accepted for e in eps) / len(eps),
        "conv_sr_final_state": sum(bool(e.turns) and e.turns[-1].stop for e in eps) / len(eps),
        "stop_reasons": dict(collections.Counter(e.stop_reason for e in eps)),
        "parse_failures": dict(sum((collections.Counter(e.parse_failures) for e in eps), collections.Counter())),
        "wall_s": round(wall, 1),
    }
    print("\n" + json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
