"""What one decoding step of the embedded model costs on this machine, by batch size, in fp32
and with dynamic int8 weights, side by side: the floor under the smoke chain's dialogue time.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/decode_step.py [--context 300] [--steps 10] [--reps 2]

SmolLM2-135M-Instruct (the smoke profile's model for every role), a ``--context``-token prompt per
row, then ``--steps`` greedy decoding steps on the kit's preallocated KV cache
(:func:`rso_lib.llm.decoding.generation_cache`), as :class:`~rso_lib.llm.hf.HFChatLLM` runs them.
For each batch size the fp32 model and its ``torch.ao.quantization.quantize_dynamic`` int8 copy
are timed alternately; the best of ``--reps`` is kept. Prints ms per step and the threads used.

The int8 copy is only measured here: the kit never quantises (its numbers would no longer be
the model's). Last line: ``int8_decode_speedup_b8=X`` (fp32 ms over int8 ms at batch 8).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from _record import add_out_argument, recorded  # noqa: E402  (--out: a provenance file)

from rso_lib.llm.decoding import generation_cache  # noqa: E402
from rso_lib.llm.embedded import load_embedded  # noqa: E402
from rso_lib.threads import configure_torch_threads  # noqa: E402


def step_ms(model, batch: int, context: int, steps: int) -> float:
    """Mean milliseconds of one decoding step after a ``context``-token prompt pass."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 40000, (batch, context), generator=gen)
    with torch.inference_mode():
        cache = generation_cache(model, context + steps + 1)
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        nxt = out.logits[:, -1].argmax(-1)
        attn = torch.ones(batch, context, dtype=torch.long)
        pos = torch.full((batch, 1), context - 1)
        t0 = time.perf_counter()
        for _ in range(steps):
            attn = torch.cat([attn, torch.ones(batch, 1, dtype=torch.long)], dim=1)
            pos = pos + 1
            out = model(
                input_ids=nxt[:, None], attention_mask=attn, position_ids=pos, past_key_values=cache, use_cache=True
            )
            nxt = out.logits[:, -1].argmax(-1)
        return (time.perf_counter() - t0) / steps * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--context", type=int, default=300)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16])
    add_out_argument(ap)
    a = ap.parse_args()
    with recorded(a.out):
        run_bench(a)


def run_bench(a: argparse.Namespace) -> None:
    """The bench itself; what it prints is the measurement (``main`` records it with ``--out``)."""
    threads = configure_torch_threads()
    fp32 = load_embedded(dtype="fp32").model
    with warnings.catch_warnings():  # torch warns that its quantised tensors are deprecated
        warnings.simplefilter("ignore")
        int8 = torch.ao.quantization.quantize_dynamic(fp32, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
    print(f"threads: {threads}")
    print(f"{'batch':>5} {'fp32 ms/step':>13} {'int8 ms/step':>13}")
    res = {}
    for b in a.batches:
        t = {"fp32": [], "int8": []}
        for _ in range(a.reps):
            for name, m in (("fp32", fp32), ("int8", int8)):
                t[name].append(step_ms(m, b, a.context, a.steps))
        res[b] = (min(t["fp32"]), min(t["int8"]))
        print(f"{b:>5} {res[b][0]:>13.1f} {res[b][1]:>13.1f}")
    b8 = 8 if 8 in res else a.batches[-1]
    print(f"int8_decode_speedup_b{b8}={res[b8][0] / res[b8][1]:.2f}")


if __name__ == "__main__":
    main()
