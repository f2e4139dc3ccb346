"""How close the ``cpu`` profile's models run to this CPU's arithmetic ceiling, and what int8 would cost.

Issue 23 asks for 5-10x more evaluated dialogue-turns per CPU-hour. This bench measures, side by
side in one process on this machine, the three numbers that bound any such gain:

1. the CPU's bf16 and fp32 matrix-product rate (GFLOP/s of one large ``torch.matmul``);
2. each Qwen2.5-Coder model's prompt pass (prefill) in tokens/s and the GFLOP/s that implies
   (2 x the weights of its linear layers per token, output layer and attention scores left out,
   so a lower bound), beside (1): the share of the
   machine's matrix-product rate the prompt pass already reaches; and its decode step at 4 and 16 rows;
3. the same for torch's dynamic int8 quantization of every ``nn.Linear`` (per-channel weights,
   int8 activations quantized at run time), the one lever that raises the arithmetic rate itself,
   and the price: how far the judge's score-mode Cred ratings (expected value of P("1".."5")
   after ``Rating:``, :mod:`rso_lib.eval.judges`) move from fp32's on the knowledge-base
   claim pairs of the validity card (:func:`rso_lib.eval.known_answers.claim_pairs`).

    RSO_DATA_DIR=/work/shared/data HF_HUB_OFFLINE=1 PYTHONPATH=. \\
        python bench/cpu_ceilings.py [--models qwen2.5-0.5b,qwen2.5-1.5b] [--pairs 10] [--threads 2]

Last line: ``int8_judge_max_drift=X``: the largest change of a Cred rating (1-5 scale) of the
1.5B judge under int8 against fp32 (bf16's drift is printed beside it).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

from _record import add_out_argument, recorded  # bench/_record.py: --out writes a provenance file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


_TORCH = {"bf16": "bfloat16", "fp32": "float32"}


def matmul_gflops(dtype, n: int = 3072, reps: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.matmul(a, b)
    t = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def load(name: str, mode: str):
    """The packaged model ``name`` in ``mode`` (bf16 | fp32 | int8) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rso_lib.llm.embedded import packaged_dir

    path = packaged_dir(name)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.bfloat16 if mode == "bf16" else torch.float32)
    if mode == "int8":
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's deprecation notice (it moves to torchao)
            model = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    return model.eval(), AutoTokenizer.from_pretrained(str(path))


def matmul_params(model) -> int:
    """Weights a prompt pass multiplies by per token: every ``nn.Linear`` but the output layer
    (run for the last position only: ``logits_to_keep=1``); the embedding is a lookup."""
    import torch

    out = model.get_output_embeddings()
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not out)


def token_ids(tokens: int) -> list[int]:
    """The pseudo-random prompt (Qwen vocabulary range, seed 0) every speed measurement uses."""
    import torch

    return torch.randint(100, 30000, (tokens,), generator=torch.Generator().manual_seed(0)).tolist()


def speed(model, tokens: int = 400, rows: tuple[int, ...] = (4, 16)) -> tuple[float, ...]:
    """(prefill tokens/s at 1 row, then decode ms/step at each of ``rows``) of a torch model."""
    import torch

    ids = torch.tensor([token_ids(tokens)])
    with torch.inference_mode():
        model(ids[:, :32], logits_to_keep=1)  # warm-up
        t = time.perf_counter()
        model(ids, logits_to_keep=1)
        prefill = tokens / (time.perf_counter() - t)
        steps = []
        for r in rows:
            out = model(ids[:, :128].repeat(r, 1), use_cache=True, logits_to_keep=1)
            kv, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            t = time.perf_counter()
            for _ in range(8):
                out = model(nxt, past_key_values=kv, use_cache=True)
                kv, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            steps.append(1000 * (time.perf_counter() - t) / 8)
    return (prefill, *steps)


def judge_view(name: str, model, tok, mode: str):
    """``model`` behind the kit's transformers backend, so that ratings go through the judge's own
    code (:func:`rso_lib.eval.judges.rate`): its chat rendering, prefix and option scoring."""
    from rso_lib.llm.hf import HFChatLLM

    dtype = "bf16" if mode == "bf16" else "fp32"  # int8: quantized Linear layers inside an fp32 model
    return HFChatLLM(name, model_id=f"{name}-{mode}", hf_model=model, hf_tokenizer=tok, dtype=dtype, device="cpu")


def claim_messages(pairs) -> list:
    """The Cred judge's request for the true and then the false claim of each pair."""
    from rso_lib.eval.judges import credibility_messages

    return [credibility_messages(p[key].text, p["item"]) for p in pairs for key in ("true", "false")]


def cred_ratings(llm, pairs) -> list[float]:
    """Score-mode Cred ratings of every true and false claim of ``pairs`` by the kit's judge code."""
    from rso_lib.eval.judges import JudgeConfig, rate

    return [float(v) for v in rate(llm, claim_messages(pairs), JudgeConfig(mode="score")).values]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="qwen2.5-0.5b,qwen2.5-1.5b")
    ap.add_argument("--pairs", type=int, default=10, help="Cred claim pairs for the drift check (default 10)")
    ap.add_argument("--threads", type=int, default=2)
    add_out_argument(ap)
    args = ap.parse_args(argv)
    with recorded(args.out):
        run_bench(args)


def run_bench(args: argparse.Namespace) -> None:
    """The bench itself; what it prints is the measurement (``main`` records it with ``--out``)."""

    import torch

    from rso_lib.data.kb import load_kb
    from rso_lib.eval.known_answers import claim_pairs
    from rso_lib.paths import data_dir

    torch.set_num_threads(args.threads)
    cpuinfo = Path("/proc/cpuinfo").read_text()
    flags = sorted({f for line in cpuinfo.splitlines() if line.startswith("flags") for f in line.split()})
    print(
        f"CPU flags: {' '.join(f for f in flags if f in ('avx2', 'avx512f', 'avx512_bf16', 'avx512_vnni', 'amx_bf16'))}"
    )
    print(f"torch {torch.__version__}, {args.threads} threads")
    peak = {dt: matmul_gflops(getattr(torch, dt)) for dt in ("bfloat16", "float32")}
    print(f"matmul 3072^3: bf16 {peak['bfloat16']:.0f} GFLOP/s, fp32 {peak['float32']:.0f} GFLOP/s")
    pairs = claim_pairs(list(load_kb(data_dir())), args.pairs, seed=0)
    drift = {}
    for name in args.models.split(","):
        ratings, n_params = {}, 0
        for mode in ("fp32", "bf16", "int8"):  # fp32 first: int8's Linear weights are no parameters
            model, tok = load(name, mode)
            n_params = n_params or matmul_params(model)
            prefill, d4, d16 = speed(model)
            gflops = 2 * n_params * prefill / 1e9
            share = (
                "int8 arithmetic" if mode == "int8" else f"{gflops / peak[_TORCH[mode]]:.0%} of the {mode} matmul rate"
            )
            print(
                f"{name} {mode}: prefill {prefill:.0f} tok/s (>= {gflops:.0f} GFLOP/s, {share}), "
                f"decode {d4:.0f} ms/step at 4 rows, {d16:.0f} at 16"
            )
            if name.endswith("1.5b"):
                ratings[mode] = cred_ratings(judge_view(name, model, tok, mode), pairs)
            del model
        if ratings:
            for mode in ("bf16", "int8"):
                diffs = [abs(a - b) for a, b in zip(ratings[mode], ratings["fp32"])]
                acc = sum(t > f for t, f in zip(ratings[mode][::2], ratings[mode][1::2])) / len(pairs)
                drift[mode] = max(diffs)
                print(
                    f"{name} {mode} vs fp32 Cred ratings on {2 * len(pairs)} claims: max |diff| {max(diffs):.2f}, "
                    f"mean {sum(diffs) / len(diffs):.2f}; true > false in {acc:.0%} of pairs"
                )
    print(f"bf16_judge_max_drift={drift.get('bf16', float('nan')):.3f}")
    print(f"int8_judge_max_drift={drift.get('int8', float('nan')):.3f}")


if __name__ == "__main__":
    main()
