"""vLLM against the transformers backend on this CPU, side by side in one process, on the `cpu`
profile's three kinds of model work. Run it from the second venv, which has both backends
(``make setup-vllm-chain``: the recording of ``--out`` reads provenance with pandas):

    VLLM_CPU_KVCACHE_SPACE=2 PYTHONPATH=. .venv-vllm/bin/python bench/vllm_vs_transformers.py \
        [--gen-model qwen2.5-0.5b] [--judge-model qwen2.5-1.5b] [--batch 8]

Workloads (prompts built from the knowledge base by the kit's own prompt functions):

* ``generate``: ``--batch`` chat prompts, greedy, 40 new tokens (the cpu profile's Actor budget),
  on ``--gen-model``: seconds for the batch;
* ``judge``: ``2 x --batch`` credibility judgements in score mode (one option-scoring pass each,
  how WI/PRS/Cred are judged), on ``--judge-model``: seconds per judgement;
* ``reward``: ``--batch`` prompts x 3 sampled judgements (temperature 1.1, top-p 0.95, 16 tokens:
  the Rewarder's sampled mode), on ``--judge-model``: seconds per rated turn.

Both backends load the same converted safetensors directory (``$RSO_CACHE_DIR``; the main venv
converts it on first use: ``make reproduce PROFILE=cpu`` or ``bench/judge_discrimination.py``).
Each workload runs once to warm up, then ``--repeats`` times with both backends' prefix caches
emptied before each timed call (within a call both reuse what its prompts share); the median is
printed. The threads
each backend uses are printed too (vLLM's CPU worker binds its own OpenMP threads). Last line:
``vllm_over_transformers=X``, the geometric mean over the three workloads of transformers time
over vLLM time (> 1: vLLM is faster).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from _record import add_out_argument, recorded  # noqa: E402  (--out: a provenance file)

from rso_lib.data.kb import load_kb  # noqa: E402
from rso_lib.eval.judges import JudgeConfig, credibility_messages, rate  # noqa: E402
from rso_lib.llm.protocol import Sampling  # noqa: E402


def prompts(kb, n: int) -> tuple[list, list]:
    """(chat prompts for generation, credibility-judge prompts), ``n`` and ``2 n`` of them."""
    items = [it for it in sorted(kb, key=lambda it: it.item_id) if it.plot and it.genres][: 2 * n]
    chats = [
        [
            {"role": "system", "content": "You are a movie recommender. Answer in two sentences."},
            {"role": "user", "content": f"I like {', '.join(it.genres[:2])} movies. Anything like {it.title}?"},
        ]
        for it in items[:n]
    ]
    claims = [
        credibility_messages(f"You will love {it.title}: it is a {it.genres[0].lower()} movie. {it.plot[:160]}", it)
        for it in items
    ]
    return chats, claims


def timed(fn, repeats: int, reset) -> float:
    """Median seconds of ``fn`` over ``repeats`` timed calls after one warm-up (first-call
    allocations, vLLM's graph capture). ``reset`` empties the backend's prefix store / vLLM's
    prefix cache before every timed call: the warm-up ran the same prompts, and a cache it filled
    would serve them whole (an earlier version of this bench timed exactly that for vLLM)."""
    fn()
    ts = []
    for _ in range(repeats):
        reset()
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def measure(llm, chats, claims, batch: int, repeats: int, gen: bool) -> dict:
    from rso_lib.llm import clear_prefix_caches

    out = {}
    reset = lambda: clear_prefix_caches(llm)  # noqa: E731
    if gen:
        s = Sampling(max_tokens=40)
        toks = [0]

        def run_gen():
            rs = llm.chat(chats, s)
            toks[0] = sum(len(r[0].split()) for r in rs)

        t = timed(run_gen, repeats, reset)
        out["generate_s"] = t
        out["generate_words"] = toks[0]
    else:
        cfg = JudgeConfig(mode="score", batch_size=len(claims))
        out["judge_s_per"] = timed(lambda: rate(llm, claims, cfg), repeats, reset) / len(claims)
        sampled = JudgeConfig(mode="sample", samples=3, temperature=1.1, max_tokens=16, batch_size=batch)
        res = {}

        def run_reward():
            res["r"] = rate(llm, claims[:batch], sampled)

        out["reward_s_per"] = timed(run_reward, repeats, reset) / batch
        out["reward_parse_failures"] = res["r"].parse_failures
        out["judge_mean"] = float(np.mean([v for v in rate(llm, claims, cfg).values if v is not None]))
    return out


def build(backend: str, model: str, dtype: str):
    from rso_lib.llm import build_llm
    from rso_lib.llm.embedded import packaged_dir

    d = str(packaged_dir(model))
    if backend == "transformers":
        # the prefix store on, as in the cpu profile: both backends reuse what a call shares
        spec = {"backend": "transformers", "model": d, "dtype": dtype, "max_context": 2048, "prefix_cache_mib": 1024}
    else:
        spec = {"backend": "vllm", "model": d, "dtype": dtype, "max_model_len": 2048, "enforce_eager": True}
        spec["engine_kwargs"] = {"enable_prefix_caching": True}
    return build_llm(spec), spec


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gen-model", default="qwen2.5-0.5b")
    ap.add_argument("--judge-model", default="qwen2.5-1.5b")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--hf-dtype", default="auto", help="transformers dtype (default auto: what the cpu profile uses)")
    ap.add_argument("--vllm-dtype", default="bfloat16", help="vLLM dtype (default bfloat16, vLLM's CPU default)")
    ap.add_argument("--data-dir", default=os.environ.get("RSO_DATA_DIR", ""))
    add_out_argument(ap)
    a = ap.parse_args(argv)
    with recorded(a.out):
        run_bench(a)


def run_bench(a: argparse.Namespace) -> None:
    """The bench itself; what it prints is the measurement (``main`` records it with ``--out``)."""
    try:
        import vllm
    except ImportError:
        sys.exit("vLLM is not importable here: run from .venv-vllm (make setup-vllm), see the docstring")
    import torch

    from rso_lib.threads import configure_torch_threads

    th = configure_torch_threads()
    print(f"vllm {vllm.__version__}, torch {torch.__version__}, torch threads {th}")
    chats, claims = prompts(load_kb(a.data_dir), a.batch)
    rows = {}
    for backend, dtype in (("transformers", a.hf_dtype), ("vllm", a.vllm_dtype)):
        for model, gen in ((a.gen_model, True), (a.judge_model, False)):
            llm, spec = build(backend, model, dtype)
            t = time.perf_counter()
            r = measure(llm, chats, claims, a.batch, a.repeats, gen)
            r["dtype"] = str(getattr(llm, "dtype", dtype)).replace("torch.", "")
            rows.setdefault(backend, {}).update(r)
            print(f"{backend:12s} {model:14s} {r}  ({time.perf_counter() - t:.0f} s)", flush=True)
            if hasattr(llm, "close"):
                llm.close()
            del llm
            gc.collect()
    hf, vl = rows["transformers"], rows["vllm"]
    print()
    print("| workload | transformers | vLLM | transformers / vLLM |")
    print("|---|---|---|---|")
    ratios = []
    for key, label in (
        ("generate_s", f"generate: {a.batch} prompts x 40 tokens, {a.gen_model} (s)"),
        ("judge_s_per", f"judge: score mode, {a.judge_model} (s a judgement)"),
        ("reward_s_per", f"reward: 3 samples, {a.judge_model} (s a turn)"),
    ):
        ratios.append(hf[key] / vl[key])
        print(f"| {label} | {hf[key]:.2f} | {vl[key]:.2f} | {ratios[-1]:.2f} |")
    print(f"| mean judge score on the same claims | {hf['judge_mean']:.2f} | {vl['judge_mean']:.2f} | |")
    print(f"dtypes: transformers {hf['dtype']}, vLLM {vl['dtype']}")
    print(f"vllm_over_transformers={float(np.exp(np.mean(np.log(ratios)))):.2f}")


if __name__ == "__main__":
    main()
