"""Decoding pieces of the transformers backend (:mod:`rso_lib.llm.hf`): the nucleus sampler and the
preallocated generation KV cache. ``bench/decoding.py`` times each against what it replaced.

torch and transformers are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def sample_nucleus(logits, temperature: float, top_p: float, generators: Sequence) -> torch.Tensor:
    """One token per row from ``softmax(logits / temperature)`` restricted to the nucleus ``top_p``.

    Same distribution as :func:`apply_top_p` + ``torch.multinomial``, computed without sorting the
    whole vocabulary: the nucleus lies inside the top-k tokens as soon as the top-k mass exceeds
    ``top_p`` (every later token is preceded by more than ``top_p`` of mass), so k starts at 64
    and grows fourfold only while some row's nucleus is wider. Each row draws ONE uniform number
    from its own generator (``None``: torch's global RNG) and picks by inverse CDF, so a row's
    token does not depend on the other rows. ``bench/decoding.py`` times it against the sort +
    per-row ``multinomial`` it replaced (batch 16, vocabulary 49k, 2 CPU cores: ~30-40 ms -> ~1 ms
    a step).

    Args:
        logits: ``[b, V]`` float next-token logits.
        temperature: > 0.
        top_p: nucleus mass in (0, 1]; 1 keeps every token.
        generators: ``b`` ``torch.Generator`` (or None) objects, one per row.

    Returns:
        ``[b]`` long token ids.
    """
    import torch

    probs = torch.softmax(logits.float() / temperature, dim=-1)  # [b, V]
    V = probs.shape[-1]
    k = V if top_p >= 1.0 else min(V, 64)
    while True:
        sp, si = probs.topk(k, dim=-1)  # [b, k] descending
        cum = sp.cumsum(-1)
        if k == V or bool((cum[:, -1] > top_p).all()):
            break
        k = min(V, k * 4)
    keep = (cum - sp) <= top_p  # [b, k] a prefix of each row: mass before the token <= top_p
    sp = sp * keep
    c = sp.cumsum(-1)  # [b, k] unnormalised CDF over the nucleus
    u = torch.stack([torch.rand((), generator=g, device=probs.device) for g in generators]).to(c.dtype)
    j = torch.searchsorted(c, (u * c[:, -1])[:, None], right=True)[:, 0]  # first index with CDF > u
    j = torch.minimum(j, keep.sum(-1) - 1)  # u * total rounding up to the total: last kept token
    return si.gather(1, j[:, None])[:, 0]


def apply_top_p(probs, top_p: float):
    """Zero the tail outside the nucleus ``top_p`` (keeps at least the top token). probs [b, V]."""
    import torch

    if top_p >= 1.0:
        return probs
    sp, si = torch.sort(probs, dim=-1, descending=True)
    cum = sp.cumsum(-1)
    remove = (cum - sp) > top_p  # mass strictly before this token already exceeds top_p
    sp = sp.masked_fill(remove, 0.0)
    out = torch.zeros_like(probs).scatter(-1, si, sp)
    return out / out.sum(-1, keepdim=True)


@functools.cache
def _preallocated_layer_class():
    """A transformers ``DynamicLayer`` that writes new keys/values into preallocated storage.

    ``DynamicLayer.update`` grows the cache with ``torch.cat``: every decoding step copies the
    whole cache of every layer; at batch 16 on CPU that copy was ~24% of a decoding step
    (torch.profiler, SmolLM2-135M, 230-token prompts; ``bench/decoding.py`` times the two). This
    layer allocates ``capacity`` positions once ``[b, heads, capacity, head_dim]``, writes in
    place and returns views of the filled part; it doubles its storage if a step would overflow."""
    import torch
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        def __init__(self, capacity: int):
            super().__init__()
            self.capacity = int(capacity)
            self.length = 0

        def lazy_initialization(self, key_states, value_states) -> None:
            self.dtype, self.device = key_states.dtype, key_states.device
            b, h, _, d = key_states.shape
            self._k = torch.empty((b, h, self.capacity, d), dtype=key_states.dtype, device=key_states.device)
            self._v = torch.empty(
                (b, h, self.capacity, value_states.shape[-1]), dtype=value_states.dtype, device=value_states.device
            )
            self.is_initialized = True

        def _grow(self, need: int) -> None:
            cap = max(need, 2 * self._k.shape[2])
            k = self._k.new_empty(self._k.shape[:2] + (cap,) + self._k.shape[3:])
            v = self._v.new_empty(self._v.shape[:2] + (cap,) + self._v.shape[3:])
            k[:, :, : self.length] = self._k[:, :, : self.length]
            v[:, :, : self.length] = self._v[:, :, : self.length]
            self._k, self._v = k, v

        def _views(self) -> None:
            self.keys = self._k[:, :, : self.length]
            self.values = self._v[:, :, : self.length]

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            m = key_states.shape[-2]
            if self.length + m > self._k.shape[2]:
                self._grow(self.length + m)
            self._k[:, :, self.length : self.length + m] = key_states
            self._v[:, :, self.length : self.length + m] = value_states
            self.length += m
            self._views()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_select_indices(self, indices) -> None:
            if self.length > 0:
                self._k, self._v = self._k[indices], self._v[indices]
                self._views()

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self.length > 0:
                self._k = self._k.repeat_interleave(repeats, dim=0)
                self._v = self._v.repeat_interleave(repeats, dim=0)
                self._views()

        def crop(self, tokens_to_remove: int) -> None:
            raise NotImplementedError("the preallocated generation cache is never cropped")

        def reset(self) -> None:
            self.length = 0
            self.keys = self.values = None
            self.is_initialized = False

    return PreallocatedLayer


def generation_cache(model, capacity: int):
    """A KV cache for a decoding loop of at most ``capacity`` positions: preallocated layers
    (see :func:`_preallocated_layer_class`) when every layer of ``model`` is a plain full-attention
    ``DynamicLayer``, else transformers' own ``DynamicCache`` for that model (sliding windows,
    linear attention ...)."""
    from transformers import DynamicCache
    from transformers.cache_utils import Cache, DynamicLayer

    cache = DynamicCache(config=model.config)
    if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
        layer = _preallocated_layer_class()
        return Cache(layers=[layer(capacity) for _ in cache.layers])
    return cache


_apply_top_p = apply_top_p  # the name tests and bench/decoding.py use
