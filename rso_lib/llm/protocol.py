"""The one batched protocol every LLM backend speaks.

Two calls, both batched over dialogues so that the engine can send every active dialogue's request
for one role in one go:

* :meth:`ChatLLM.chat` -- a batch of chat conversations + :class:`Sampling` -> ``n`` replies each.
* :meth:`ChatLLM.score_options` -- a batch of conversations + a list of option strings -> the
  normalised probability of each option as the assistant's next words (shape ``[B, n_options]``,
  rows sum to 1). Used for 1-5 ratings and small choices: with small models, scoring is far more
  reliable than parsing free text (see docs/backends.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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

    def score_options(self, batch: Sequence[Messages], options: Sequence[str], prefix: str = "") -> np.ndarray:
        """Probability of each option as the start of the assistant's reply, after ``prefix``
        (e.g. ``"Rating: "``). Returns float64 ``[len(batch), len(options)]``; rows sum to 1."""
        ...


def expected_rating(probs: np.ndarray, values: Sequence[float] = (1, 2, 3, 4, 5)) -> np.ndarray:
    """Expected value of a rating from option probabilities: ``probs [B, K] @ values [K] -> [B]``."""
    return np.asarray(probs, dtype=np.float64) @ np.asarray(values, dtype=np.float64)


# One rule for reading a 1-5 rating out of free text, shared by the Rewarder (Eq. 9) and the
# evaluation judges, so the same reply never counts as a rating in one place and a parse failure
# in the other. In order: "Rating: N" (also "rating=N", "**Rating:** N"); "N out of 5" / "N/5"
# anywhere; a bare "N" alone on the first line. N must be an integer 1-5 ("Rating: 7", "4.5",
# "10/10" and "45" are failures). Anything else is None: a parse failure to count, never a guess.
_RATING_LABEL = re.compile(r"rating\s*\**\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_RATING_OUT_OF = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*(?:/|out of)\s*5(?![\d.])", re.IGNORECASE)
_RATING_BARE = re.compile(r"^\s*\**\s*(\d+(?:\.\d+)?)\s*\**\s*[.!]?[ \t]*(?:\n|$)")
RATING_VALUES = ("1", "2", "3", "4", "5")


def parse_rating(text: str | None) -> int | None:
    """The 1-5 rating a free-text judgement states, or None (see the rule above).

    >>> [parse_rating(t) for t in ("Rating: 4", "I'd say 3 out of 5", "5", "Rating: 7", "great")]
    [4, 3, 5, None, None]
    """
    t = text or ""
    for pattern, method in ((_RATING_LABEL, "search"), (_RATING_OUT_OF, "search"), (_RATING_BARE, "match")):
        m = getattr(pattern, method)(t)
        if m:
            return int(m.group(1)) if m.group(1) in RATING_VALUES else None
    return None
