"""A scripted stand-in LLM for unit tests of parsing and control flow.

It is never the thing that "works": every real run uses a real backend. It answers from a
user-supplied function (or a fixed list of replies, cycled) and records every request, so tests
can assert what the engine sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rso_lib.llm.protocol import Messages, Sampling


class ScriptedLLM:
    backend = "scripted"

    def __init__(
        self,
        replies: Sequence[str] | Callable[[Messages], str] = ("ok",),
        option_probs: Callable[[Messages, Sequence[str]], Sequence[float]] | None = None,
        model_id: str = "scripted",
    ):
        self.model_id = model_id
        self._replies = replies
        self._option_probs = option_probs
        self._i = 0
        self.chat_calls: list[tuple[list[Messages], Sampling]] = []  # one entry per batched call
        self.score_calls: list[tuple[list[Messages], list[str]]] = []

    def _reply(self, messages: Messages) -> str:
        if callable(self._replies):
            return self._replies(messages)
        r = self._replies[self._i % len(self._replies)]
        self._i += 1
        return r

    def chat(self, batch: Sequence[Messages], sampling: Sampling) -> list[list[str]]:
        self.chat_calls.append((list(batch), sampling))
        return [[self._reply(m) for _ in range(sampling.n)] for m in batch]

    def score_options(self, batch: Sequence[Messages], options: Sequence[str], prefix: str = "") -> np.ndarray:
        self.score_calls.append((list(batch), list(options)))
        if self._option_probs is None:
            p = np.full((len(batch), len(options)), 1.0 / len(options))
        else:
            p = np.array([self._option_probs(m, options) for m in batch], dtype=np.float64)
        return p / p.sum(axis=1, keepdims=True)
