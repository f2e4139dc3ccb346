"""The decoding pieces of the transformers backend: nucleus sampling and the generation KV cache."""

from __future__ import annotations

import pytest
import torch
from llm_fixtures import convs, embedded

from rso_lib.llm import hf
from rso_lib.llm.decoding import _apply_top_p, generation_cache, sample_nucleus
from rso_lib.llm.protocol import Sampling


def _empirical(logits, temperature, top_p, draws=6000, seed=0):
    gens = [torch.Generator().manual_seed(seed + r) for r in range(logits.shape[0])]
    counts = torch.zeros_like(logits)
    for _ in range(draws):
        tok = sample_nucleus(logits, temperature, top_p, gens)
        counts[torch.arange(logits.shape[0]), tok] += 1
    return counts / draws


@pytest.mark.parametrize("top_p", [0.3, 0.9, 1.0])
def test_nucleus_sampler_matches_the_sort_based_reference(top_p):
    torch.manual_seed(0)
    logits = torch.randn(3, 40) * 2
    ref = _apply_top_p(torch.softmax(logits / 0.7, dim=-1), top_p)
    freq = _empirical(logits, 0.7, top_p)
    assert not ((freq > 0) & (ref == 0)).any(), "drew a token outside the nucleus"
    # 6000 draws: the standard error of a frequency is <= 0.0065, so 0.03 is ~5 sigma
    assert (freq - ref).abs().max() < 0.03


def test_nucleus_sampler_widens_its_window_when_the_nucleus_is_wide():
    # a flat distribution over 5000 tokens: the 0.9 nucleus holds 4500 of them, far beyond k=64
    logits = torch.zeros(1, 5000)
    gens = [torch.Generator().manual_seed(1)]
    toks = {int(sample_nucleus(logits, 1.0, 0.9, gens)[0]) for _ in range(400)}
    assert max(toks) > 1000 and len(toks) > 300


def test_a_rows_token_does_not_depend_on_the_other_rows():
    torch.manual_seed(3)
    logits = torch.randn(4, 1000)
    alone = [int(sample_nucleus(logits[r : r + 1], 0.8, 0.9, [torch.Generator().manual_seed(r)])[0]) for r in range(4)]
    together = sample_nucleus(logits, 0.8, 0.9, [torch.Generator().manual_seed(r) for r in range(4)]).tolist()
    assert alone == together


def test_preallocated_cache_gives_the_same_greedy_text_as_dynamic_cache(monkeypatch):
    from transformers import DynamicCache

    llm = embedded()
    batch = convs(5)
    s = Sampling(temperature=0.0, max_tokens=16)
    assert type(generation_cache(llm.model, 8).layers[0]).__name__ == "PreallocatedLayer"
    pre = llm.chat(batch, s)
    monkeypatch.setattr(hf, "generation_cache", lambda model, capacity: DynamicCache())
    dyn = llm.chat(batch, s)
    # capacity 2 makes every layer grow (copy into larger storage) during prefill and decoding
    monkeypatch.setattr(hf, "generation_cache", lambda model, capacity: generation_cache(model, 2))
    grown = llm.chat(batch, s)
    assert pre == dyn == grown
    assert len({r[0] for r in pre}) > 1  # real, different replies
