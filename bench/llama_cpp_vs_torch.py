"""llama.cpp on the packaged GGUF files vs the kit's embedded (torch, bf16/fp32) path, side by side.

Issue 23, lever 3: the ``cpu`` profile's Qwen2.5-Coder models ship as Q4_K_M GGUF files that the
embedded backend dequantises into torch tensors (bf16 where the CPU has AVX512-BF16, else fp32).
llama.cpp (``llama-cpp-python``, built from its PyPI sdist) runs them as packaged: 4-bit weights,
activations quantised per block of 32 for the dot products (VNNI where the CPU has it). This bench
measures, in one process on this machine, with the same thread count:

1. prompt pass (prefill) tokens/s of a 400-token prompt, and single-stream decode ms/token, for
   each model in both runtimes (torch decode also at 4 rows: the engine's lockstep batches);
2. the price: how far the 1.5B judge's score-mode Cred ratings (expected value of P("1".."5")
   after ``Rating: ``, the kit's judge prompt) move from the embedded path's, and whether the judge
   still rates each true claim above its false twin (the validity card's known-answer pairs,
   :func:`rso_lib.eval.known_answers.claim_pairs`).

    make setup-llamacpp      # pip install llama-cpp-python into .venv (builds from the sdist, ~7 min)
    RSO_DATA_DIR=../shared/data PYTHONPATH=. python bench/llama_cpp_vs_torch.py [--pairs 10] [--threads 2]

Last line: ``llama_cpp_prefill_speedup_1.5b=X``: llama.cpp's prompt-pass rate over the embedded
path's for the 1.5B judge (the role with the most prompt tokens in 04_eval_tables); the rating
drift is printed on the line before it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _record import add_out_argument, recorded  # bench/_record.py: --out writes a provenance file
from cpu_ceilings import (  # the embedded side, measured as cpu_ceilings measures it
    claim_messages,
    cred_ratings,
    judge_view,
    load,
    speed,
    token_ids,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


def open_gguf(name: str, workdir: Path, threads: int):
    """llama.cpp on the packaged GGUF of ``name`` (parts assembled into ``workdir``)."""
    from llama_cpp import Llama

    from rso_lib.llm.embedded import assemble_gguf, packaged

    path = assemble_gguf(packaged(name), workdir)
    return Llama(
        model_path=str(path),
        n_ctx=2048,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        seed=0,
        verbose=False,
    )


def llama_last_logits(llm):
    """Logits of the last evaluated position (llama-cpp-python keeps only that row unless
    ``logits_all``)."""
    import numpy as np

    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()


def llama_speed(llm, tokens: int) -> tuple[float, float]:
    """(prefill tokens/s, decode ms/token single stream) of llama.cpp, on an emptied context."""
    ids = token_ids(tokens)  # the prompt the torch side is timed on
    llm.reset()
    llm.eval(ids[:32])  # warm-up
    llm.reset()
    t = time.perf_counter()
    llm.eval(ids)
    prefill = tokens / (time.perf_counter() - t)
    llm.reset()
    llm.eval(ids[:128])
    nxt = int(llama_last_logits(llm).argmax())
    t = time.perf_counter()
    for _ in range(8):
        llm.eval([nxt])
        nxt = int(llama_last_logits(llm).argmax())
    return prefill, 1000 * (time.perf_counter() - t) / 8


def llama_cred_ratings(llm, view, pairs) -> list[float]:
    """The score-mode Cred rating of each true and false claim by llama.cpp, on the very prompt
    text the kit's judge sends (``view``: the embedded model's backend; its chat rendering and
    ``Rating: `` prefix), read off the five digits' logits as the judge reads them."""
    import numpy as np

    from rso_lib.eval.judges import RATING_PREFIX

    tok = view.tokenizer
    digits = [tok(str(k), add_special_tokens=False)["input_ids"][0] for k in range(1, 6)]
    out = []
    for msgs in claim_messages(pairs):
        ids = tok(view.render(msgs) + RATING_PREFIX, add_special_tokens=False)["input_ids"]
        llm.reset()
        llm.eval(ids)
        z = llama_last_logits(llm)[digits].astype(np.float64)
        probs = np.exp(z - z.max())
        out.append(float(probs @ np.arange(1, 6) / probs.sum()))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="qwen2.5-0.5b,qwen2.5-1.5b")
    ap.add_argument("--pairs", type=int, default=10, help="Cred claim pairs for the drift check (default 10)")
    ap.add_argument("--tokens", type=int, default=400, help="prompt length of the prefill measurement")
    ap.add_argument("--threads", type=int, default=2)
    add_out_argument(ap)
    args = ap.parse_args(argv)
    with recorded(args.out):
        run_bench(args)


def run_bench(args: argparse.Namespace) -> None:
    try:
        import llama_cpp
    except ImportError:
        sys.exit("llama-cpp-python is not importable here: make setup-llamacpp (see the docstring)")
    import torch

    from rso_lib.data.kb import load_kb
    from rso_lib.eval.known_answers import claim_pairs
    from rso_lib.llm.hf import resolve_dtype
    from rso_lib.paths import data_dir

    torch.set_num_threads(args.threads)
    mode = "bf16" if resolve_dtype("auto", "cpu") == torch.bfloat16 else "fp32"
    print(
        f"torch {torch.__version__} ({mode}, the embedded path's dtype here), llama-cpp-python {llama_cpp.__version__}"
    )
    print(f"{args.threads} threads each; prompt {args.tokens} tokens")
    pairs = claim_pairs(list(load_kb(data_dir())), args.pairs, seed=0)
    speedup, drift = {}, None
    with tempfile.TemporaryDirectory(prefix="rso-gguf-") as tmp:
        for name in args.models.split(","):
            model, tok = load(name, mode)
            t_pre, t_d1, t_d4 = speed(model, args.tokens, rows=(1, 4))
            print(
                f"{name} torch {mode}: prefill {t_pre:.0f} tok/s, decode {t_d1:.0f} ms/step at 1 row, {t_d4:.0f} at 4"
            )
            view = judge_view(name, model, tok, mode) if name.endswith("1.5b") else None
            ref = cred_ratings(view, pairs) if view is not None else None
            llm = open_gguf(name, Path(tmp), args.threads)
            l_pre, l_d1 = llama_speed(llm, args.tokens)
            speedup[name] = l_pre / t_pre
            print(
                f"{name} llama.cpp Q4_K_M: prefill {l_pre:.0f} tok/s ({l_pre / t_pre:.2f}x), "
                f"decode {l_d1:.0f} ms/token single stream ({t_d1 / l_d1:.2f}x)"
            )
            if ref is not None:
                got = llama_cred_ratings(llm, view, pairs)
                diffs = [abs(a - b) for a, b in zip(got, ref)]
                for label, r in ((f"torch {mode}", ref), ("llama.cpp", got)):
                    acc = sum(t > f for t, f in zip(r[::2], r[1::2])) / len(pairs)
                    print(f"{name} {label}: true claim rated above its false twin in {acc:.0%} of {len(pairs)} pairs")
                drift = max(diffs)
                print(
                    f"{name} llama.cpp vs torch {mode} Cred ratings on {len(got)} claims: "
                    f"max |diff| {drift:.2f}, mean {sum(diffs) / len(diffs):.2f}"
                )
            del llm, model, view
    print(f"llama_cpp_judge_max_drift={drift if drift is not None else float('nan'):.3f}")
    print(f"llama_cpp_prefill_speedup_1.5b={speedup.get('qwen2.5-1.5b', float('nan')):.2f}")


if __name__ == "__main__":
    main()
