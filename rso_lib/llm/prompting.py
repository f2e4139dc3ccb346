"""Backend-independent prompt handling shared by every LLM backend (no torch import): the
truncation rule, per-request seeds and the normalisation of option log-probs.

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

from typing import Callable

import numpy as np

from rso_lib.llm.protocol import Messages

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
