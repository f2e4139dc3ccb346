"""Throughput of an LLM backend (default: the embedded SmolLM2-135M-Instruct), measured side by side.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/llm_throughput.py [--max-tokens 32] [--fp32] [--model qwen2.5-0.5b]
    # vLLM on the CPU, from the second venv (make setup-vllm):
    PYTHONPATH=. .venv-vllm/bin/python bench/llm_throughput.py --spec '{"backend": "vllm", "model": DIR}'

Prints: generated tok/s at batch 1, 8 and 16 (same prompts, greedy, fixed max_tokens); the
batched-over-sequential ratio; the disk-cache hit speed-up; option scoring on a 1-5 rating
prompt (distribution, its sum, expected value) and the time of one scoring pass against 10
sampled free-form judgements (and how many of those parse as a bare 1-5 integer). ``--fp32``
adds the fp32-vs-bf16 comparison behind the default dtype choice. Last line:
``batch16_speedup=X`` (batch-16 tok/s over batch-1 tok/s).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _record import add_out_argument, recorded  # noqa: E402  (--out: a provenance file)

from rso_lib.llm import build_llm, expected_rating  # noqa: E402
from rso_lib.llm.cache import CachedLLM  # noqa: E402
from rso_lib.llm.protocol import Sampling  # noqa: E402

TOPICS = [
    "a rainy day",
    "a family night",
    "fans of space",
    "a road trip",
    "a scary evening",
    "learning history",
    "a first date",
    "kids who like animals",
    "a sad mood",
    "sports fans",
    "music lovers",
    "a long flight",
    "a holiday",
    "a heist story",
    "a detective story",
    "a musical",
]
JUDGE = [
    {
        "role": "system",
        "content": "You rate how much a user liked a movie recommendation, from 1 (hated it) to 5 (loved it).",
    },
    {
        "role": "user",
        "content": "Recommender: You should watch Toy Story, a funny animated film.\n"
        "User: Oh I love animated comedies, thank you so much, I will watch it tonight!\n"
        "How much did the user like the recommendation? Answer with one number from 1 to 5.",
    },
]


def convs(n):
    return [
        [
            {
                "role": "user",
                "content": f"Recommend one movie for {TOPICS[i % len(TOPICS)]} and say why in two sentences.",
            }
        ]
        for i in range(n)
    ]


def tok_per_s(llm, batch, sampling):
    """Generated tokens per second for ONE batched call (tokens counted by the backend)."""
    g0 = llm.stats()["generated_tokens"]
    t0 = time.perf_counter()
    llm.chat(batch, sampling)
    dt = time.perf_counter() - t0
    return (llm.stats()["generated_tokens"] - g0) / dt, dt


def sequential_tok_per_s(llm, batch, sampling):
    g0 = llm.stats()["generated_tokens"]
    t0 = time.perf_counter()
    for c in batch:
        llm.chat([c], sampling)
    dt = time.perf_counter() - t0
    return (llm.stats()["generated_tokens"] - g0) / dt, dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--seq", type=int, default=6, help="prompts run one by one for the batch-1 figure")
    ap.add_argument("--fp32", action="store_true", help="also measure fp32 (slow on bf16 CPUs)")
    ap.add_argument("--model", default=None, help="embedded model: smollm2 (default), qwen2.5-0.5b, qwen2.5-1.5b")
    ap.add_argument("--spec", default=None, help="any LLM spec as JSON (overrides --model)")
    add_out_argument(ap)
    a = ap.parse_args()
    with recorded(a.out):
        run_bench(a)


def run_bench(a: argparse.Namespace) -> None:
    """The bench itself; what it prints is the measurement (``main`` records it with ``--out``)."""
    spec = json.loads(a.spec) if a.spec else {"backend": "embedded", **({"model": a.model} if a.model else {})}
    t0 = time.perf_counter()
    llm = build_llm(spec)
    print(
        f"model={llm.model_id} backend={llm.backend} dtype={str(getattr(llm, 'dtype', '?')).replace('torch.', '')} "
        f"load_s={time.perf_counter() - t0:.2f} torch_threads={__import__('torch').get_num_threads()}"
    )
    s = Sampling(max_tokens=a.max_tokens)
    llm.chat(convs(2), Sampling(max_tokens=4))  # warm-up
    b1, dt1 = sequential_tok_per_s(llm, convs(a.seq), s)
    print(f"batch1_tok_s={b1:.1f}  ({a.seq} prompts one by one, {dt1:.1f}s)")
    b8, dt8 = tok_per_s(llm, convs(8), s)
    print(f"batch8_tok_s={b8:.1f}  ({dt8:.1f}s)")
    b16, dt16 = tok_per_s(llm, convs(16), s)
    print(f"batch16_tok_s={b16:.1f}  ({dt16:.1f}s)")
    print(f"batched_over_sequential: batch8={b8 / b1:.2f}x batch16={b16 / b1:.2f}x")
    if a.fp32:
        f32 = build_llm({**spec, "dtype": "fp32"})
        f8, _ = tok_per_s(f32, convs(8), s)
        print(f"fp32_batch8_tok_s={f8:.1f}  bf16_over_fp32={b8 / f8:.2f}x")

    with tempfile.TemporaryDirectory() as d:
        cached = CachedLLM(llm, Path(d) / "cache.sqlite")
        batch = convs(8)
        t = time.perf_counter()
        first = cached.chat(batch, s)
        miss_s = time.perf_counter() - t
        t = time.perf_counter()
        second = cached.chat(batch, s)
        hit_s = time.perf_counter() - t
        st = cached.stats()
        assert first == second
        print(
            f"cache: miss_s={miss_s:.2f} hit_s={hit_s:.4f} speedup={miss_s / hit_s:.0f}x "
            f"hits={st['hits']} misses={st['misses']}"
        )
        cached.close()

    opts = ["1", "2", "3", "4", "5"]
    llm.score_options([JUDGE], opts, prefix="Rating: ")  # warm-up
    t = time.perf_counter()
    p = llm.score_options([JUDGE], opts, prefix="Rating: ")
    score_s = time.perf_counter() - t
    raw = llm.score_options_raw([JUDGE], opts, prefix="Rating: ")
    import numpy as np

    mass = float(np.exp(raw).sum())
    print(
        "rating_probs="
        + " ".join(f"{o}:{v:.3f}" for o, v in zip(opts, p[0]))
        + f" sum={p[0].sum():.6f} expected={expected_rating(p)[0]:.3f} unnormalised_mass_on_1to5={mass:.3f}"
    )
    t = time.perf_counter()
    judged = llm.chat([JUDGE], Sampling(temperature=0.7, max_tokens=16, n=10, seed=0))[0]
    sample_s = time.perf_counter() - t
    parsed = sum(bool(re.fullmatch(r"\s*[1-5]\s*\.?\s*", j)) for j in judged)
    print(
        f"scoring_pass_s={score_s:.3f} ten_sampled_judgements_s={sample_s:.3f} "
        f"scoring_speedup={sample_s / score_s:.1f}x (goal >= 5x) bare_integer_replies={parsed}/10"
    )
    print(f"total_s={time.perf_counter() - t0:.1f}")
    print(f"batch16_speedup={b16 / b1:.2f}")


if __name__ == "__main__":
    main()
