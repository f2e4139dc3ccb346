"""Preference Reasoner (paper Eq. 3): p_t = LLM(prompt_pref, s_t).

Summarises the user's current preferences from the dialogue state, for every active dialogue in
one batched ``chat`` call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rso_lib.data.records import Turn
from rso_lib.experts.prompts import reasoner_prompt
from rso_lib.llm.protocol import ChatLLM, Sampling


def clean_reply(text: str, max_chars: int = 400) -> str:
    """First paragraph of a model reply, whitespace-collapsed and capped (small models ramble)."""
    text = (text or "").strip()
    para = text.split("\n\n")[0]
    return " ".join(para.split())[:max_chars]


@dataclass
class PreferenceReasoner:
    """Eq. 3. ``infer(histories, previous)`` -> one preference sentence per dialogue.

    Args:
        llm: the ``reasoner`` role's backend.
        sampling: decoding settings (default greedy, 48 new tokens).
    """

    llm: ChatLLM
    sampling: Sampling = Sampling(temperature=0.0, max_tokens=48)

    def infer(
        self, histories: Sequence[Sequence[Turn]], previous: Sequence[str] | None = None, seed: int | None = None
    ) -> tuple[list[str], list[int]]:
        """Preference summaries ``[B]`` and, per dialogue, 1 if the reply was empty (a parse
        failure: the summary is then ``""``, never a made-up one), else 0."""
        previous = list(previous) if previous is not None else [""] * len(histories)
        if not histories:
            return [], []
        batch = [reasoner_prompt(h, p) for h, p in zip(histories, previous)]
        s = self.sampling if seed is None or self.sampling.temperature == 0 else _with_seed(self.sampling, seed)
        out = self.llm.chat(batch, s)
        prefs = [clean_reply(r[0]) for r in out]
        return prefs, [int(not p) for p in prefs]


def _with_seed(s: Sampling, seed: int) -> Sampling:
    from dataclasses import replace

    return replace(s, seed=seed)
