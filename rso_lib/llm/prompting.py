"""Backend-independent prompt handling shared by every LLM backend (no torch import): the
truncation rule, per-request seeds and the normalisation of option log-probs.

Seeds of a batched call
    ``chat(batch, Sampling(seed=s))`` is one call for many conversations (the engine sends every
    active dialogue's request for a role at once). Each conversation samples with its own seed,
    :func:`conversation_seed` ``(s, messages)``, and sample ``j`` of it with ``derive_seed(that,
    j)``. A seed shared by the whole batch would give sample ``j`` of every dialogue the same
    random stream: dialogues run in lockstep would be drawn with correlated noise, and the
    spread between them (the bootstrap CIs) would be understated. Derived from the content, the
    seed does not depend on what else shares the batch or on the backend, so the disk cache
    (keyed by messages + seed) stays exact and a conversation sent to a server
    (:mod:`~rso_lib.llm.openai_backend`, which sends this seed) samples as it does in-process.

Context limit (documented truncation rule, see :func:`truncate_messages`)
    A prompt that does not fit ``max_context - max_tokens`` tokens is shortened by: (1) keeping
    every system message and the last message whole, dropping the OLDEST non-system messages one
    at a time; (2) if only the last non-system message is left and it still does not fit, cutting
    the start of its text (keeping its end) and marking the cut with ``"[...] "``. A system prompt
    that alone does not fit raises :class:`PromptTooLongError`. Nothing is cut in the middle, and
    every truncation is counted in each backend's ``stats()`` and logged once.

Option scores
    Every backend returns the unnormalised log-probability of each option (the SUM over its
    tokens); :func:`normalise_logprobs` turns a ``[B, K]`` block into probabilities that sum to 1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence

import numpy as np

from rso_lib.llm.protocol import Messages, Sampling

TRUNCATION_MARK = "[...] "


class PromptTooLongError(ValueError):
    """A prompt cannot be made to fit the model's context by the truncation rule."""


def truncate_messages(
    messages: Messages,
    count_tokens: Callable[[Messages], int],
    budget: int,
    cut_left: Callable[[str, int], str],
) -> tuple[Messages, int]:
    """Shorten ``messages`` until ``count_tokens(messages) <= budget``, by the documented rule.

    Args:
        messages: the conversation (not modified).
        count_tokens: tokens of a rendered conversation (chat template included).
        budget: most prompt tokens allowed.
        cut_left: ``cut_left(text, n_tokens_to_drop)`` -> ``text`` without (at least) its first
            ``n_tokens_to_drop`` tokens.

    Returns:
        ``(messages, n_changes)`` where ``n_changes`` counts dropped messages + cut texts
        (0 when the conversation already fits).

    Raises:
        PromptTooLongError: when the system message(s) + the marker alone exceed the budget.
    """
    msgs = [dict(m) for m in messages]
    if count_tokens(msgs) <= budget:
        return msgs, 0
    changes = 0
    # (1) drop the oldest non-system message while more than one non-system message is left
    while count_tokens(msgs) > budget:
        non_sys = [i for i, m in enumerate(msgs) if m.get("role") != "system"]
        if len(non_sys) <= 1:
            break
        del msgs[non_sys[0]]
        changes += 1
    if count_tokens(msgs) <= budget:
        return msgs, changes
    # (2) left-cut the one remaining non-system message, keeping its end
    non_sys = [i for i, m in enumerate(msgs) if m.get("role") != "system"]
    if not non_sys:
        raise PromptTooLongError(
            f"the system message alone is {count_tokens(msgs)} tokens, over the budget of {budget}"
        )
    i = non_sys[0]
    text = msgs[i].get("content", "")
    # tokens to drop: start at the excess, double until it fits, then bisect (last miss, first fit]
    drop = max(1, count_tokens(msgs) - budget)
    lo = drop - 1
    while True:
        cand = TRUNCATION_MARK + cut_left(text, drop)
        trial = msgs[:i] + [{**msgs[i], "content": cand}] + msgs[i + 1 :]
        if count_tokens(trial) <= budget:
            best, hi = trial, drop
            break
        if cut_left(text, drop) == "":
            raise PromptTooLongError(
                f"prompt does not fit {budget} tokens even with the last message emptied "
                f"(system prompt + template = {count_tokens(trial)} tokens)"
            )
        lo, drop = drop, drop * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        cand = TRUNCATION_MARK + cut_left(text, mid)
        trial = msgs[:i] + [{**msgs[i], "content": cand}] + msgs[i + 1 :]
        if count_tokens(trial) <= budget:
            best, hi = trial, mid
        else:
            lo = mid
    return best, changes + 1


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integer parts (request seed, sample index, ...)."""
    return int(np.random.SeedSequence([int(p) % (2**63) for p in parts]).generate_state(2, dtype=np.uint64)[0] >> 1)


def conversation_seed(seed: int, messages: Messages) -> int:
    """The seed of one conversation of a batched ``chat`` call with request seed ``seed``:
    ``derive_seed(seed, first 8 bytes of sha256(canonical JSON of the messages' roles and
    contents))`` (see the module doc)."""
    canon = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False)
    return derive_seed(seed, int.from_bytes(hashlib.sha256(canon.encode()).digest()[:8], "big"))


def per_conversation(sampling: Sampling, batch: Sequence[Messages]) -> list[Sampling]:
    """One :class:`Sampling` per conversation of ``batch``: ``sampling`` with its seed replaced by
    :func:`conversation_seed` (unchanged when it has no seed or is greedy)."""
    if sampling.seed is None or sampling.temperature <= 0:
        return [sampling] * len(batch)
    return [dataclasses.replace(sampling, seed=conversation_seed(sampling.seed, m)) for m in batch]


def normalise_logprobs(lp: np.ndarray) -> np.ndarray:
    """Row-wise softmax of option log-probs ``[B, K]`` -> probabilities summing to 1."""
    lp = np.asarray(lp, dtype=np.float64)
    m = lp.max(axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(lp - m)
    s = e.sum(axis=1, keepdims=True)
    if np.any(s == 0) or not np.all(np.isfinite(s)):
        raise ValueError("option log-probabilities are all -inf for some row")
    return e / s
