"""Lockstep vs one-at-a-time dialogue simulation, same model, same seed, side by side.

Runs N simulated dialogues (default 16) of the RSO system (untrained MiniLM Planner, embedded
SmolLM2-135M for every LLM role, MiniLM Fact Retriever over the ReDial knowledge base, agenda
user) twice:

* lockstep: one ``engine.run(targets)``, every role's calls batched over the active dialogues;
* one at a time: ``engine.run([t])`` for each target in turn.

Prints simulated system turns per second for both, their ratio, and the share of wall time spent
outside model calls (LLM, embedder + faiss, Planner). Goals (issue 4): ratio >= 8x, outside <= 20%.

It also splits the LLM time into prompt passes (generation prefill and option scoring) and
decoding steps, with the batching gain of each, and prints a ceiling for lockstep on this machine
computed from the run's own numbers (no padding, decoding steps no dearer than one-row steps). On
a CPU, prompt passes are compute-bound: batching 16 rows gains ~2x there against ~9x for decoding,
which caps the overall ratio well below the decoding gain (see docs/performance.md, "Lockstep").

Short dialogues and short replies keep it under a minute on 2 idle CPU cores (``--turns 3
--max-tokens 32`` is the smoke profile's setting, ~2.5 minutes); the retriever index is built once
and cached under ``runs/smoke/cache`` (first run only, not timed).

    HF_HUB_OFFLINE=1 TQDM_DISABLE=1 RSO_DATA_DIR=../shared/data python bench/dialogue_engine.py

Last line: ``lockstep_speedup=X``.
"""

from __future__ import annotations

import argparse
import os
import time

from _record import add_out_argument, recorded  # bench/_record.py: --out writes a provenance file


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="dialogues (default 16)")
    ap.add_argument("--turns", type=int, default=1, help="max system turns per dialogue (default 1)")
    ap.add_argument("--max-tokens", type=int, default=24, help="new tokens per reply (default 24)")
    ap.add_argument("--system", default="RSO")
    ap.add_argument("--simulator", default="agenda", choices=["agenda", "llm"])
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--seed", type=int, default=0)
    add_out_argument(ap)
    args = ap.parse_args(argv)
    with recorded(args.out):
        run_bench(args)


def run_bench(args: argparse.Namespace) -> None:
    """The bench itself; what it prints is the measurement (``main`` records it with ``--out``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from rso_lib.data.kb import load_kb
    from rso_lib.data.targets import load_sim_targets
    from rso_lib.dialogue.config import EngineConfig
    from rso_lib.dialogue.systems import build_system, get_system
    from rso_lib.llm import build_llm, load_embedder
    from rso_lib.paths import data_dir, run_dir

    t0 = time.perf_counter()
    dd = data_dir(args.data_dir or None)
    kb = load_kb(dd)
    targets = [t for t in load_sim_targets(dd, "inspired", "test") if t.target_genres][: args.n]
    llm = build_llm({"backend": "embedded"})
    llms = {r: llm for r in ("actor", "reasoner", "chooser", "rewarder", "simulator", "judge")}
    emb = load_embedder()
    system = get_system(args.system)
    planner = None
    if system.strategy_mode == "planner":
        from rso_lib.experts.planner import Planner

        planner = Planner.from_config(seed=args.seed)

    config = EngineConfig(
        simulator=args.simulator,
        max_turns=args.turns,
        actor_max_tokens=args.max_tokens,
        user_max_tokens=args.max_tokens,
        reasoner_max_tokens=args.max_tokens,
    )

    def engine(retriever=None):
        return build_system(
            system,
            config,
            kb=kb,
            llms=llms,
            planner=planner,
            embedder=emb,
            retriever=retriever,
            cache_dir=run_dir("smoke") / "cache",
            seed=args.seed,
        )

    lock = engine()
    seq = engine(lock.retriever)
    # warm-up (first-call costs: kernels, allocator, tokenizer caches) outside the timed runs,
    # so neither mode pays it
    from rso_lib.llm.protocol import Sampling

    warm = [{"role": "user", "content": "Say hi."}]
    llm.chat([warm], Sampling(max_tokens=2))
    llm.chat([warm] * 4, Sampling(max_tokens=2))
    llm.score_options([warm], ["1", "2"])
    setup = time.perf_counter() - t0
    print(
        f"setup {setup:.1f}s: {len(kb)} items, {len(targets)} dialogues x <= {args.turns} turns, "
        f"{args.max_tokens} new tokens, system {system.name}, simulator {args.simulator}, "
        f"torch threads {torch.get_num_threads()}"
    )

    # one untimed lockstep pass first: the CPU kernels are built per tensor shape on first use,
    # and batch-16 shapes only occur in lockstep, so without it lockstep alone pays that cost
    lock.run(targets, None)
    lock.reset_stats()
    s0 = llm.stats()
    lock.run(targets, None)
    s1 = llm.stats()
    for t in targets:
        seq.run([t], None)
    s2 = llm.stats()
    rows = [("lockstep", lock.stats), ("one at a time", seq.stats)]
    print(f"{'mode':<14} {'turns':>6} {'wall s':>8} {'model s':>8} {'outside s':>10} {'outside':>8} {'turns/s':>8}")
    for name, s in rows:
        print(
            f"{name:<14} {s.turns:>6} {s.wall_s:>8.1f} {s.model_s:>8.1f} {s.wall_s - s.model_s:>10.3f} "
            f"{s.outside_share:>8.1%} {s.turns_per_s:>8.3f}"
        )
    by_role = ", ".join(f"{r} {v:.1f}s" for r, v in sorted(lock.stats.model_s_by_role.items(), key=lambda x: -x[1]))
    print(f"lockstep model time by role: {by_role}")

    # Where the time goes: prompt passes (generation prefill + option scoring) are compute-bound
    # on a CPU, so batching them gains little; decoding steps are bound by reading the weights
    # (and per-op overhead), so a batch of 16 costs about what one row does.
    lk = {k: s1[k] - s0[k] for k in s1}  # LLM counters over the lockstep run
    sq = {k: s2[k] - s1[k] for k in s2}  # ... over the one-at-a-time runs

    def ratio(a, b):
        return b / a if a else float("nan")

    print(f"{'phase':<34} {'lockstep s':>10} {'one-at-a-time s':>16} {'ratio':>6}")
    other_l = lk["seconds"] - lk["prefill_seconds"] - lk["decode_seconds"]
    other_s = sq["seconds"] - sq["prefill_seconds"] - sq["decode_seconds"]
    for label, a, b in (
        ("prompt passes (prefill, scoring)", lk["prefill_seconds"], sq["prefill_seconds"]),
        ("decoding steps", lk["decode_seconds"], sq["decode_seconds"]),
        ("LLM other (tokenise, sample)", other_l, other_s),
    ):
        print(f"{label:<34} {a:>10.2f} {b:>16.2f} {ratio(a, b):>5.1f}x")
    print(
        f"prompt tokens computed: lockstep {lk['prefill_padded_tokens']} (padded to the longest row; "
        f"{lk['shared_prefix_tokens_saved']} saved by shared prefixes), one at a time "
        f"{sq['prefill_padded_tokens']}; decoding steps: lockstep {lk['decode_steps']}, one at a time "
        f"{sq['decode_steps']}"
    )
    # A ceiling for lockstep on this machine, from this run's own numbers: its prompt passes with no
    # padding at the batched throughput it measured, and every decoding step no dearer than a
    # one-row step (a batch reads the same weights as one row, so it cannot be cheaper); the
    # rest (tokenising, sampling, embedder, Planner, outside) as measured.
    if lk["prefill_seconds"] and sq["prefill_seconds"] and sq["decode_steps"]:
        batched_tok_s = lk["prefill_padded_tokens"] / lk["prefill_seconds"]
        single_tok_s = sq["prefill_padded_tokens"] / sq["prefill_seconds"]
        step_s = sq["decode_seconds"] / sq["decode_steps"]
        best = (
            (sq["prefill_padded_tokens"] - lk["shared_prefix_tokens_saved"]) / batched_tok_s
            + lk["decode_steps"] * step_s
            + lock.stats.wall_s
            - lk["prefill_seconds"]
            - lk["decode_seconds"]
        )
        print(
            f"ceiling for lockstep here: {seq.stats.wall_s / best:.1f}x (prompt passes without padding at "
            f"{batched_tok_s:.0f} tok/s, one at a time {single_tok_s:.0f} tok/s; {lk['decode_steps']} "
            f"decoding steps at the one-row cost of {1000 * step_s:.0f} ms)"
        )
    speedup = lock.stats.turns_per_s / seq.stats.turns_per_s if seq.stats.turns_per_s else float("nan")
    print(
        f"goals: lockstep >= 8x (got {speedup:.1f}x), outside model calls <= 20% "
        f"(got {lock.stats.outside_share:.1%} lockstep)"
    )
    print(f"lockstep_speedup={speedup:.2f}")


if __name__ == "__main__":
    main()
