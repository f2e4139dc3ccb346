"""Prompt-prefix KV reuse for the transformers backend (:mod:`rso_lib.llm.hf`).

A dialogue's prompts grow turn by turn: each role's prompt at turn t shows the whole dialogue, so
it starts with everything its prompt at turn t-1 showed up to the end of the history (system
prompt, template, earlier turns) and differs only in the new turns and the instructions after
them. The simulated user's decision and reply prompts, and the judges' three intention prompts of
one persona, share their starts in the same way. Without reuse every one of those tokens is run
through the model again at every call; on a CPU the prompt pass is compute-bound and is most of
the cost of a short reply.

:class:`PrefixKVStore` keeps the keys and values of recent prompts (one entry per prompt, batch
row 1, on the model's device) and finds, for a new prompt, the stored prompt that shares the
longest start with it; the backend then loads that many positions from the store and runs only the
rest (as vLLM's automatic prefix caching and llama.cpp's prompt cache do). No caller has to name a
conversation: a conversation's entries are found by their tokens, whichever role or batch they
came from.

Memory is bounded by ``max_tokens`` stored positions in all; the least recently used entries go
first. A lookup marks the entry it serves from as used, so a live thread's newest entry stays
while its older turns (matched no more: the newer entry shares a longer start) and the entries of
finished dialogues age out. :meth:`PrefixKVStore.clear` drops everything at once.

Equality: the keys and values of a position depend only on the tokens up to it, so a prompt run
on top of stored positions gives what the whole prompt gives in one pass, up to floating-point
rounding of differently shaped matrix products (greedy replies identical, scores equal to ~1e-5:
``tests/unit/llm/test_llm_prefix_cache.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass
class PrefixEntry:
    """One stored prompt: its token ids and per layer ``(keys, values)`` ``[1, heads, n, dim]``."""

    tokens: np.ndarray  # int64 [n]
    kv: list[tuple]  # per layer (keys, values) tensors

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def common_prefix_len(a: np.ndarray, b: np.ndarray) -> int:
    """Number of leading positions where ``a`` and ``b`` agree."""
    n = min(a.shape[0], b.shape[0])
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


class PrefixKVStore:
    """Least-recently-used store of prompt KV caches, bounded by the positions it holds.

    Args:
        max_tokens: most positions held in all entries (memory ~ max_tokens x layers x 2 x
            kv_heads x head_dim x 4 bytes in fp32: ~24 KB a position for Qwen2.5-0.5B, ~57 KB
            for Qwen2.5-1.5B, ~92 KB for SmolLM2-135M).
        min_reuse: a match shorter than this many tokens is not worth a separate load (the
            backend runs the whole prompt instead).
    """

    def __init__(self, max_tokens: int, min_reuse: int = 16):
        if max_tokens < 1:
            raise ValueError(f"PrefixKVStore: max_tokens must be >= 1, got {max_tokens}")
        self.max_tokens = int(max_tokens)
        self.min_reuse = int(min_reuse)
        self._entries: OrderedDict[int, PrefixEntry] = OrderedDict()
        self._next_key = 0
        self.tokens = 0  # positions held now
        self.counters = {"lookups": 0, "hits": 0, "reused_tokens": 0, "stored": 0, "evicted": 0}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every entry (e.g. when a set of dialogues is finished)."""
        self._entries.clear()
        self.tokens = 0

    def lookup(self, ids: list[int], cap: int) -> tuple[int | None, int]:
        """``(entry key, n)``: the stored prompt sharing the longest start with ``ids``, and how
        many of its positions to reuse (at most ``cap``); ``(None, 0)`` below ``min_reuse``."""
        self.counters["lookups"] += 1
        if cap < self.min_reuse or not self._entries:
            return None, 0
        q = np.asarray(ids, dtype=np.int64)
        best_key, best = None, 0
        for key, e in self._entries.items():
            n = min(common_prefix_len(q, e.tokens), cap)
            if n > best:
                best_key, best = key, n
        if best < self.min_reuse:
            return None, 0
        self._entries.move_to_end(best_key)  # recently used
        self.counters["hits"] += 1
        self.counters["reused_tokens"] += best
        return best_key, best

    def contains(self, ids: list[int]) -> bool:
        """Whether a stored prompt starts with all of ``ids`` (storing ``ids`` would add nothing)."""
        q = np.asarray(ids, dtype=np.int64)
        return any(
            len(e) >= q.shape[0] and common_prefix_len(q, e.tokens) == q.shape[0] for e in self._entries.values()
        )

    def get(self, key: int) -> PrefixEntry:
        return self._entries[key]

    def put(self, ids: list[int], kv: list[tuple]) -> None:
        """Store a prompt's KV (``kv`` per layer ``(keys, values)`` ``[1, h, len(ids), d]``); least
        recently used entries are evicted until the store holds at most ``max_tokens`` positions
        (a prompt longer than that, or shorter than ``min_reuse``, is not stored)."""
        n = len(ids)
        if n < self.min_reuse or n > self.max_tokens:
            return
        while self.tokens + n > self.max_tokens:
            self._drop(next(iter(self._entries)))
            self.counters["evicted"] += 1
        self._entries[self._next_key] = PrefixEntry(np.asarray(ids, dtype=np.int64), kv)
        self._next_key += 1
        self.tokens += n
        self.counters["stored"] += 1

    def _drop(self, key: int) -> None:
        self.tokens -= len(self._entries.pop(key))
