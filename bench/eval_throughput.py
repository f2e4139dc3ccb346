"""Evaluated dialogue-turns per hour for the ``cpu`` profile's models: today's path against the new
one, side by side in one process.

What runs (per path, the same work): the ``cpu`` profile's evaluation settings (params/base.yaml +
params/cpu.yaml, section ``04_eval_tables``: LLM user simulator, Rewarder, Qwen2.5-Coder 0.5B for
the system roles and the user, 1.5B for the Rewarder and the judges, the MiniLM retriever) on K
dialogues of at most T turns of RSO (untrained Planner: the bench needs no 03_rl checkpoint) and
of the prompt-only baseline, each followed by the judged metrics (WI / PRS / Cred), as
``rso_lib.experiments.run_and_evaluate`` does, without the LLM response cache (it would answer the
second path from the first).

Paths:

* ``today``: every prompt is run through the model whole (prompt-prefix reuse off);
* ``reuse``: prompt-prefix KV reuse on (:mod:`rso_lib.llm.prefix_cache`): what a prompt shares
  with an earlier one (the dialogue so far, the persona, the system prompt) is loaded, not run.

Printed per path: dialogue-turns, wall time, dialogue-turns per hour, prompt tokens per turn as
sent and as computed, seconds per role (engine roles + judge), and whether the two paths gave the
same transcripts; beside them the machine's measured prefill throughput and decode step time per
model (prompt passes of 4 x ~300 tokens, 16 decode steps at batch 4), and the prefill-bound ceiling
of each path (turns per hour if computing its prompt tokens at that throughput were the only cost).

    RSO_DATA_DIR=/work/shared/data HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 \\
        python bench/eval_throughput.py --k 2 --turns 2

Last line: ``eval_turns_per_hour_speedup=X``: dialogue-turns per CPU-hour (process CPU time, which
other processes on the same cores do not inflate the way they inflate wall time), reuse over today;
the wall-clock ratio is printed above it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter

from _record import add_out_argument, recorded  # bench/_record.py: --out writes a provenance file


def cpu_params(k: int, turns: int) -> dict:
    """The ``cpu`` profile's parameters of notebook 04_eval_tables, sized to K dialogues of T turns."""
    from rso_lib.run import load_params, profile_files

    merged = load_params(profile_files("cpu"))
    p = {**merged.get("common", {}), **merged.get("04_eval_tables", {})}
    p.update(N_DIALOGUES=k, MAX_TURNS=turns, LLM_CACHE=False, PLANNER="untrained", PROFILE="cpu")
    p.setdefault("SAMPLE_STRATEGY", True)
    return p


def distinct_models(llms) -> list:
    out = []
    for m in llms.values():
        if not any(m is o for o in out):
            out.append(m)
    return out


def ceilings(llm) -> tuple[float, float]:
    """(prefill tokens/s, decode ms per step at batch 4) of ``llm`` on this machine, reuse off."""
    import torch

    from rso_lib.llm.protocol import Sampling

    g = torch.Generator().manual_seed(0)
    V = min(int(llm.model.config.vocab_size), 30000)
    prompts = [torch.randint(100, V, (300 + 7 * i,), generator=g).tolist() for i in range(4)]
    llm.generate_ids(prompts[:1], Sampling(max_tokens=2))  # warm-up: shapes, allocator
    s0 = llm.stats()
    llm.generate_ids(prompts, Sampling(max_tokens=16))
    s1 = llm.stats()
    d = {k: s1[k] - s0[k] for k in s1}
    return d["prefill_padded_tokens"] / d["prefill_seconds"], 1000 * d["decode_seconds"] / max(1, d["decode_steps"])


def run_path(ctx, specs, judge, judge_cfg, k: int) -> dict:
    """Run and judge every spec on INSPIRED; wall time, turns, per-role seconds, transcripts."""
    from dataclasses import replace

    from rso_lib.dialogue.systems import build_system, get_system
    from rso_lib.eval.evaluate import judge_dialogues
    from rso_lib.eval.transcripts import to_eval_dialogue

    roles: Counter = Counter()
    turns = 0
    texts = []
    t0, c0 = time.perf_counter(), time.process_time()
    for spec in specs:
        system = replace(get_system(spec.system), name=spec.name)
        planner = ctx.planner_for(spec, "inspired")[0] if system.strategy_mode == "planner" else None
        eng = build_system(
            system,
            ctx.engine,
            kb=ctx.kb_for("inspired"),
            llms=ctx.llms_for(spec),
            planner=planner,
            retriever=ctx.retriever("inspired") if system.use_retriever else None,
            seed=ctx.seed,
        )
        eps = eng.run(ctx.targets("inspired", k), None, sample_strategy=ctx.sample_strategy)
        turns += eng.stats.turns
        roles.update(eng.stats.model_s_by_role)
        texts += [(t.reply, t.user_reply) for e in eps for t in e.turns]
        dls = [to_eval_dialogue(e, system=spec.display, dataset="inspired") for e in eps]
        tj = time.perf_counter()
        judge_dialogues(dls, ctx.kb_for("inspired"), judge, judge_cfg)
        roles["judge"] += time.perf_counter() - tj
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "turns": turns, "roles": roles, "texts": texts}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=2, help="dialogues per system (default 2)")
    ap.add_argument("--turns", type=int, default=2, help="most system turns per dialogue (default 2)")
    ap.add_argument("--systems", default="PROMPT_ONLY,RSO")
    ap.add_argument("--reuse-mib", type=float, default=1024, help="prefix store per model (default 1024 MiB)")
    ap.add_argument("--reuse-first", action="store_true", help="run the reuse path first (order check)")
    add_out_argument(ap)
    args = ap.parse_args(argv)
    with recorded(args.out):
        run_bench(args)


def run_bench(args: argparse.Namespace) -> None:
    """The bench itself; what it prints is the measurement (``main`` records it with ``--out``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")

    import torch

    from rso_lib.eval.judges import JudgeConfig
    from rso_lib.experiments import RunContext, parse_specs
    from rso_lib.llm import role_llms

    t0 = time.perf_counter()
    params = cpu_params(args.k, args.turns)
    ctx = RunContext.from_params(params)
    specs = parse_specs(args.systems.split(","))
    judge_cfg = JudgeConfig(mode=params.get("JUDGE_MODE", "score"), samples=params.get("JUDGE_SAMPLES", 3))
    llms = role_llms(ctx.llm_cfg)
    models = distinct_models(llms)
    ctx.retriever("inspired")
    ctx.targets("inspired", args.k)
    print(
        f"setup {time.perf_counter() - t0:.0f} s: K={args.k} dialogues x <= {args.turns} turns x {len(specs)} systems "
        f"({args.systems}) on INSPIRED, simulator {params.get('SIMULATOR')}, reward {params.get('REWARD')}/"
        f"{params.get('REWARD_MODE')}, judge {judge_cfg.mode}; torch threads {torch.get_num_threads()}"
    )
    for m in models:
        roles = ",".join(r for r, x in llms.items() if x is m)
        print(f"  model {m.model_id} ({str(m.dtype).replace('torch.', '')}): roles {roles}")

    for m in models:
        m.set_prefix_cache(None)
        tok_s, step_ms = ceilings(m)
        m.ceiling = tok_s
        print(
            f"ceiling {m.model_id}: prefill {tok_s:.0f} tok/s (batch 4 x ~310), decode {step_ms:.0f} ms/step (batch 4)"
        )

    results = {}
    paths = [("today", None), ("reuse", args.reuse_mib)]
    for name, mib in reversed(paths) if args.reuse_first else paths:
        for m in models:
            m.set_prefix_cache(mib)
        before = [m.stats() for m in models]
        results[name] = r = run_path(ctx, specs, llms["judge"], judge_cfg, args.k)
        r["llm"] = [{k: m.stats()[k] - b[k] for k in b} for m, b in zip(models, before)]
        print(f"[{name}] {json.dumps({k: v for k, v in r.items() if k != 'texts'}, default=str)}", flush=True)

    print(
        f"{'path':<6} {'turns':>5} {'wall s':>7} {'turns/h':>8} {'CPU s':>7} {'turns/CPU-h':>11}  "
        "prompt tok/turn sent -> computed (per model)"
    )
    for name, r in results.items():
        per = "; ".join(
            f"{m.model_id.split('-Instruct')[0]} {d['prompt_tokens'] / r['turns']:.0f} -> "
            f"{d['prefill_padded_tokens'] / r['turns']:.0f}"
            for m, d in zip(models, r["llm"])
        )
        print(
            f"{name:<6} {r['turns']:>5} {r['wall_s']:>7.0f} {3600 * r['turns'] / r['wall_s']:>8.1f} "
            f"{r['cpu_s']:>7.0f} {3600 * r['turns'] / r['cpu_s']:>11.1f}  {per}"
        )
    for name, r in results.items():
        roles = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["roles"].items(), key=lambda x: -x[1]))
        print(f"{name} seconds by role: {roles}")
        bound = sum(d["prefill_padded_tokens"] / m.ceiling for m, d in zip(models, r["llm"]))  # s at the ceiling
        for m, d in zip(models, r["llm"]):
            print(
                f"  {m.model_id}: prefill {d['prefill_seconds']:.0f} s, decode {d['decode_seconds']:.0f} s "
                f"({d['decode_steps']} steps), reused {d['prefix_reused_tokens']} prompt tokens"
            )
        print(f"  prefill-bound ceiling: {3600 * r['turns'] / bound:.0f} turns/h")
    results = {n: results[n] for n, _ in paths}
    same = sum(a == b for a, b in zip(results["today"]["texts"], results["reuse"]["texts"]))
    print(f"same system and user replies in both paths: {same} of {len(results['today']['texts'])} turns")
    # CPU time of this process is the measure: other processes share the cores, and the wall time
    # of a path depends on what they did meanwhile; CPU seconds are what the work itself took
    wall = {n: r["turns"] / r["wall_s"] for n, r in results.items()}
    cpu = {n: r["turns"] / r["cpu_s"] for n, r in results.items()}
    print(f"wall-clock turns per hour: reuse / today = {wall['reuse'] / wall['today']:.2f}")
    print(f"eval_turns_per_hour_speedup={cpu['reuse'] / cpu['today']:.2f}")


if __name__ == "__main__":
    main()
