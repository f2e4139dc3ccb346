"""The three decoding changes of the transformers backend, each against what it replaced, side by side.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/decoding.py [--batch 16] [--max-tokens 32] [--reps 3]

Same embedded model (SmolLM2-135M-Instruct), same prompts (a shared system prompt + 16 different
requests, as every expert prompt of the kit is), same seeds; each pair is timed alternately and the
best of ``--reps`` is kept:

1. nucleus sampling of one token for every row, on real next-token logits: the sort of the whole
   vocabulary + one ``torch.multinomial`` per row (before) vs :func:`rso_lib.llm.decoding.sample_nucleus`;
2. decoding steps (greedy, ``--max-tokens``): transformers' ``DynamicCache`` (``torch.cat`` of the
   whole cache at every step) vs :func:`rso_lib.llm.decoding.generation_cache` (preallocated, in place);
3. the prompt pass: every row computed whole vs the shared prefix run once
   (``HFChatLLM.min_shared_prefix``);
4. a whole sampled ``chat`` call (temperature 0.7, top_p 0.9), all three before vs all three now;
5. ``n = 3`` samples of each of ``--batch // 4`` prompts (the Rewarder's sampled judgements, 16
   tokens, temperature 1.1): one prompt pass per row vs one per prompt
   (``HFChatLLM.share_repeated_prompts``).

Last line: ``batch16_sampled_chat_speedup=X`` (4., before over now; named for the default batch).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from _record import add_out_argument, recorded  # noqa: E402  (--out: a provenance file)

from rso_lib.llm import build_llm, decoding, hf  # noqa: E402  (hf: where the patched helpers are looked up)
from rso_lib.llm.protocol import Sampling  # noqa: E402

SYSTEM = (
    "You are a friendly movie recommender chatting with a user. Reply in one or two short sentences, "
    "mention one movie by name and say why it fits."
)
WANTS = [
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


def conversations(n: int) -> list[list[dict]]:
    return [
        [
            {"role": "system", "content": SYSTEM},
            {
                "role": "user",
                "content": f"Conversation:\nUser: I want a movie for {WANTS[i % len(WANTS)]}."
                + " I liked the last one I saw." * (i % 4)
                + "\n\nWrite your next reply to the user.",
            },
        ]
        for i in range(n)
    ]


def sort_multinomial(logits, temperature, top_p, generators):
    """The sampler this kit used before: full-vocabulary sort, then one multinomial per row."""
    probs = decoding._apply_top_p(torch.softmax(logits.float() / temperature, dim=-1), top_p)
    return torch.stack([torch.multinomial(probs[k], 1, generator=g)[0] for k, g in enumerate(generators)])


def dynamic_cache(model, capacity):
    from transformers import DynamicCache

    return DynamicCache()


class Before:
    """Context: the backend as it was (DynamicCache, sort sampler, no shared prefix)."""

    def __init__(self, llm, cache=True, sampler=True, prefix=True):
        self.llm, self.cache, self.sampler, self.prefix = llm, cache, sampler, prefix

    def __enter__(self):
        self.saved = (hf.generation_cache, hf.sample_nucleus, self.llm.min_shared_prefix)
        if self.cache:
            hf.generation_cache = dynamic_cache
        if self.sampler:
            hf.sample_nucleus = sort_multinomial
        if self.prefix:
            self.llm.min_shared_prefix = 0

    def __exit__(self, *exc):
        hf.generation_cache, hf.sample_nucleus, self.llm.min_shared_prefix = self.saved


def best_of(reps, before_fn, now_fn):
    """Alternate the two ``reps`` times; the best wall time of each (seconds)."""
    b, n = [], []
    for _ in range(reps):
        for fn, out in ((before_fn, b), (now_fn, n)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return min(b), min(n)


def report(name, before, now):
    print(f"{name:<44} before {before * 1000:>8.1f} ms   now {now * 1000:>8.1f} ms   {before / now:>5.1f}x")
    return before / now


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    add_out_argument(ap)
    args = ap.parse_args(argv)
    with recorded(args.out):
        run_bench(args)


def run_bench(args: argparse.Namespace) -> None:
    """The bench itself; what it prints is the measurement (``main`` records it with ``--out``)."""

    llm = build_llm({"backend": "embedded"})
    batch = conversations(args.batch)
    ids = [llm._encode(llm.render(m)) for m in batch]
    print(
        f"model={llm.model_id} dtype={str(llm.dtype).replace('torch.', '')} threads={torch.get_num_threads()} "
        f"batch={args.batch} prompt tokens={min(map(len, ids))}-{max(map(len, ids))} "
        f"shared prefix={llm._shared_prefix_len(ids, 1)} max_tokens={args.max_tokens}"
    )
    warm = Sampling(temperature=0.7, top_p=0.9, max_tokens=4, seed=0)
    llm.chat(batch, warm)  # build the batch-shaped kernels once, outside the timings
    with Before(llm):
        llm.chat(batch, warm)

    with torch.inference_mode():
        logits, _, _ = llm._forward(ids, 1)
    logits = logits[:, -1, :]  # [b, V] real next-token logits
    gens = lambda: [torch.Generator().manual_seed(r) for r in range(args.batch)]  # noqa: E731
    b, n = best_of(
        args.reps * 10,
        lambda: sort_multinomial(logits, 0.7, 0.9, gens()),
        lambda: decoding.sample_nucleus(logits, 0.7, 0.9, gens()),
    )
    report("1. sample one token per row (top_p 0.9)", b, n)

    greedy = Sampling(temperature=0.0, max_tokens=args.max_tokens)

    def decode_seconds(before: bool) -> float:
        s0 = llm.stats()["decode_seconds"]
        if before:
            with Before(llm, sampler=False, prefix=False):
                llm.chat(batch, greedy)
        else:
            llm.chat(batch, greedy)
        return llm.stats()["decode_seconds"] - s0

    bd, nd = [], []
    for _ in range(args.reps):
        bd.append(decode_seconds(True))
        nd.append(decode_seconds(False))
    report(f"2. decoding steps ({args.max_tokens}, greedy), KV cache", min(bd), min(nd))

    def prompt_pass(before: bool):
        with torch.inference_mode():
            if before:
                with Before(llm, cache=False, sampler=False):
                    llm._forward(ids, 1)
            else:
                llm._forward(ids, 1)

    b, n = best_of(args.reps, lambda: prompt_pass(True), lambda: prompt_pass(False))
    report("3. prompt pass, shared prefix", b, n)

    sampled = Sampling(temperature=0.7, top_p=0.9, max_tokens=args.max_tokens, seed=1)

    def chat_before():
        with Before(llm):
            llm.chat(batch, sampled)

    b, n = best_of(args.reps, chat_before, lambda: llm.chat(batch, sampled))
    speedup = report("4. whole sampled chat call, all three", b, n)

    rated = Sampling(temperature=1.1, top_p=0.95, max_tokens=16, n=3, seed=2)
    few = batch[: max(1, args.batch // 4)]

    def samples_unshared():
        llm.share_repeated_prompts = False
        try:
            llm.chat(few, rated)
        finally:
            llm.share_repeated_prompts = True

    b, n = best_of(args.reps, samples_unshared, lambda: llm.chat(few, rated))
    report(f"5. {len(few)} prompts x 3 samples, one prompt pass each", b, n)
    print(f"batch16_sampled_chat_speedup={speedup:.2f}")


if __name__ == "__main__":
    main()
