"""The one batched protocol every LLM backend speaks.

Two calls, both batched over dialogues so that the engine can send every active dialogue's request
for one role in one go:

* :meth:`ChatLLM.chat` -- a batch of chat conversations + :class:`Sampling` -> ``n`` replies each.
* :meth:`ChatLLM.score_options` -- a batch of conversations + a list of option strings -> the
  normalised probability of each option as the assistant's next words (shape ``[B, n_options]``,
  rows sum to 1). Used for 1-5 ratings and small choices: with small models, scoring is far more
  reliable than parsing free text (see README).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}
Messages = list[Message]


@dataclass(frozen=True)
class Sampling:
    """Sampling settings. ``temperature == 0`` means greedy decoding.

    Args:
        temperature: softmax temperature; 0 is greedy (default 0.0).
        top_p: nucleus sampling mass (default 1.0).
        max_tokens: most new tokens per reply (default 128).
        stop: strings that end a reply; the stop string itself is not returned (default none).
        seed: per-request seed; with temperature > 0 it makes the call deterministic (default None).
        n: replies per conversation (default 1).
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 128
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1

    @property
    def deterministic(self) -> bool:
        """Whether the same request must give the same replies (and so may be cached)."""
        return self.temperature == 0 or self.seed is not None


@runtime_checkable
class ChatLLM(Protocol):
    """What every backend provides."""

    model_id: str  # a stable name of the model (recorded in results files and cache keys)
    backend: str  # "embedded" | "transformers" | "vllm" | "openai"

    def chat(self, batch: Sequence[Messages], sampling: Sampling) -> list[list[str]]:
        """Replies for each conversation: a list of ``len(batch)`` lists of ``sampling.n`` strings."""
        ...

    def score_options(
        self, batch: Sequence[Messages], options: Sequence[str], prefix: str = ""
    ) -> np.ndarray:
        """Probability of each option as the start of the assistant's reply, after ``prefix``
        (e.g. ``"Rating: "``). Returns float64 ``[len(batch), len(options)]``; rows sum to 1."""
        ...


def expected_rating(probs: np.ndarray, values: Sequence[float] = (1, 2, 3, 4, 5)) -> np.ndarray:
    """Expected value of a rating from option probabilities: ``probs [B, K] @ values [K] -> [B]``."""
    return np.asarray(probs, dtype=np.float64) @ np.asarray(values, dtype=np.float64)
