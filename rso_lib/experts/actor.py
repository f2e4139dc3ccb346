"""Actor (paper Eq. 5): u_t = LLM(prompt_act(h_t), p_t, e_t, s_t), the item chooser, and the
PC-CRS baseline's explanation strategy + self-check refinement.

All calls are batched over the active dialogues: one ``chat`` (or ``score_options``) call per role
per step.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from rso_lib.data.records import Item, Turn
from rso_lib.experts.prompts import (
    EXPLANATION_STRATEGIES,
    LETTERS,
    NONE_OPTION,
    actor_prompt,
    chooser_prompt,
    explanation_strategy_prompt,
    refine_prompt,
    self_check_prompt,
)
from rso_lib.experts.reasoner import clean_reply
from rso_lib.llm.protocol import ChatLLM, Sampling


def _seeded(s: Sampling, seed: int | None) -> Sampling:
    return s if seed is None or s.temperature == 0 else replace(s, seed=seed)


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", s.lower()).split())


# --------------------------------------------------------------------------------------------
# Item chooser
# --------------------------------------------------------------------------------------------


@dataclass
class Choice:
    """The chooser's decision for one dialogue."""

    item_id: str | None  # None when the chooser abstained or its answer was no candidate (a parse failure)
    probs: list[float] = field(default_factory=list)  # over the candidates [+ "none"] (scoring modes)
    parse_failure: int = 0
    raw: str | None = None  # the free-text answer ("generate" mode)
    abstained: bool = False  # the chooser answered "none of these yet": no recommendation this turn


@dataclass
class ItemChooser:
    """Which of the retrieved candidates the Actor recommends.

    Modes:
        ``"letters"`` (default): candidates listed as A, B, C...; one ``score_options`` call over
            the letters for the whole batch (letters are single tokens, so no length bias), argmax.
        ``"titles"``: ``score_options`` over the candidate names. Options differ per dialogue, so
            this is one call *per dialogue* (not lockstep); kept for large models.
        ``"generate"``: free-text answer, matched to a candidate letter or title; an answer that
            matches no candidate is a parse failure and the turn has no chosen item (never
            silently replaced by the top candidate).

    With ``allow_none`` (default True) one more option, "none of these yet", follows the
    candidates: the authors' reasoner may judge that no candidate is ready to recommend, and the
    turn then carries no item.
    """

    llm: ChatLLM
    mode: str = "letters"
    sampling: Sampling = Sampling(temperature=0.0, max_tokens=24)
    allow_none: bool = True

    def __post_init__(self):
        if self.mode not in ("letters", "titles", "generate"):
            raise ValueError(f"ItemChooser: unknown mode {self.mode!r} (letters | titles | generate)")

    def choose(
        self,
        histories: Sequence[Sequence[Turn]],
        preferences: Sequence[str],
        candidates: Sequence[Sequence[Item]],
        seed: int | None = None,
    ) -> list[Choice]:
        if not histories:
            return []
        extra = 1 if self.allow_none else 0
        if any(len(c) + extra > len(LETTERS) for c in candidates):
            raise ValueError("ItemChooser: more candidates than letters")
        if self.mode == "titles":
            out = []
            for h, p, cands in zip(histories, preferences, candidates):
                names = [c.name for c in cands] + ([NONE_OPTION] if self.allow_none else [])
                probs = self.llm.score_options([chooser_prompt(h, p, names, names)], names)[0]
                out.append(self._pick(np.asarray(probs, dtype=np.float64), cands))
            return out
        k = max(len(c) for c in candidates)
        labels = list(LETTERS[: k + extra])
        batch = [
            chooser_prompt(
                h,
                p,
                [c.name for c in cands] + ([NONE_OPTION] if self.allow_none else []),
                labels[: len(cands)] + labels[k:],
            )
            for h, p, cands in zip(histories, preferences, candidates)
        ]
        if self.mode == "letters":
            probs = np.asarray(self.llm.score_options(batch, labels), dtype=np.float64)  # [B, k + extra]
            out = []
            for row, cands in zip(probs, candidates):
                keep = np.concatenate([row[: len(cands)], row[k:]])  # mask absent letters
                out.append(self._pick(keep / max(keep.sum(), 1e-12), cands))
            return out
        replies = self.llm.chat(batch, _seeded(self.sampling, seed))
        return [self._parse(r[0], cands, labels[: len(cands)], labels[k:]) for r, cands in zip(replies, candidates)]

    def _pick(self, probs: np.ndarray, cands: Sequence[Item]) -> Choice:
        """argmax over the candidates [+ "none"]."""
        j = int(np.argmax(probs))
        if j >= len(cands):
            return Choice(None, [float(x) for x in probs], abstained=True)
        return Choice(cands[j].item_id, [float(x) for x in probs])

    @staticmethod
    def _parse(text: str, cands: Sequence[Item], labels: Sequence[str], none_labels: Sequence[str] = ()) -> Choice:
        t = (text or "").strip()
        m = re.match(r"^\(?([A-Z])[\).:\s]", t + " ")
        if m and m.group(1) in labels:
            return Choice(cands[list(labels).index(m.group(1))].item_id, raw=t)
        if (m and m.group(1) in none_labels) or (none_labels and _norm(NONE_OPTION) in _norm(t)):
            return Choice(None, raw=t, abstained=True)
        nt = _norm(t)
        hits = [c for c in cands if _norm(c.title) and _norm(c.title) in nt]
        if hits:  # longest title wins ("Alien" vs "Aliens")
            return Choice(max(hits, key=lambda c: len(c.title)).item_id, raw=t)
        return Choice(None, parse_failure=1, raw=t)


# --------------------------------------------------------------------------------------------
# Actor (Eq. 5)
# --------------------------------------------------------------------------------------------


@dataclass
class Actor:
    """Eq. 5: the system's reply. ``reply(...)`` -> (replies [B], empty-reply flags [B]).

    Args:
        llm: the ``actor`` role's backend.
        sampling: decoding settings (default temperature 0.7, 64 new tokens; seeded per step by
            the engine, so runs are reproducible).
    """

    llm: ChatLLM
    sampling: Sampling = Sampling(temperature=0.7, top_p=0.9, max_tokens=64)

    def reply(
        self,
        histories: Sequence[Sequence[Turn]],
        strategy_descriptions: Sequence[str | None],
        preferences: Sequence[str],
        facts: Sequence[Sequence[str]],
        item_names: Sequence[str | None],
        candidate_names: Sequence[Sequence[str]] | None = None,
        seed: int | None = None,
        modes: Sequence[str] | None = None,
    ) -> tuple[list[str], list[int]]:
        """``modes[i]`` (see :func:`rso_lib.experts.prompts.actor_prompt`): ``"item"``,
        ``"candidates"``, ``"ask"`` (no recommendation this turn) or ``"own"`` (the LLM's own
        knowledge); default: ``"item"`` where an item is given, else ``"candidates"``/``"ask"``."""
        if not histories:
            return [], []
        candidate_names = candidate_names or [()] * len(histories)
        modes = modes or ["item" if i else "candidates" if c else "ask" for i, c in zip(item_names, candidate_names)]
        batch = [
            actor_prompt(h, s, p, f, i, c, m)
            for h, s, p, f, i, c, m in zip(
                histories, strategy_descriptions, preferences, facts, item_names, candidate_names, modes
            )
        ]
        out = self.llm.chat(batch, _seeded(self.sampling, seed))
        replies = [clean_reply(r[0]) for r in out]
        return replies, [int(not r) for r in replies]


# --------------------------------------------------------------------------------------------
# PC-CRS baseline pieces: explanation strategy + self-check refinement
# --------------------------------------------------------------------------------------------

EXPLANATION_NAMES: tuple[str, ...] = tuple(EXPLANATION_STRATEGIES)


def choose_explanation_strategy(
    llm: ChatLLM, histories: Sequence[Sequence[Turn]], item_names: Sequence[str | None]
) -> tuple[list[str], np.ndarray]:
    """PC-CRS: pick an explanation strategy per dialogue by option scoring (one call).
    Returns (strategy names [B], probabilities [B, 6])."""
    if not histories:
        return [], np.zeros((0, len(EXPLANATION_NAMES)))
    batch = [explanation_strategy_prompt(h, i) for h, i in zip(histories, item_names)]
    probs = np.asarray(llm.score_options(batch, [n.replace("_", " ") for n in EXPLANATION_NAMES]))
    return [EXPLANATION_NAMES[int(j)] for j in probs.argmax(axis=1)], probs


def self_check_and_refine(
    llm: ChatLLM,
    histories: Sequence[Sequence[Turn]],
    replies: Sequence[str],
    facts: Sequence[Sequence[str]],
    item_names: Sequence[str | None],
    rounds: int = 2,
    sampling: Sampling = Sampling(temperature=0.0, max_tokens=64),
    seed: int | None = None,
) -> tuple[list[str], list[int]]:
    """PC-CRS's iterative explanation refinement: up to ``rounds`` times, score "is every claim
    supported by the facts?" (yes/no, one call over the still-unchecked replies) and rewrite those
    judged unsupported (one chat call). Returns (final replies, refinements made per dialogue)."""
    replies = list(replies)
    n_refined = [0] * len(replies)
    pending = list(range(len(replies)))
    for r in range(rounds):
        if not pending:
            break
        p = np.asarray(llm.score_options([self_check_prompt(replies[i], facts[i]) for i in pending], ["yes", "no"]))
        failing = [i for i, row in zip(pending, p) if row[1] > row[0]]
        if not failing:
            break
        new = llm.chat(
            [refine_prompt(histories[i], replies[i], facts[i], item_names[i]) for i in failing],
            _seeded(sampling, None if seed is None else seed + r),
        )
        for i, out in zip(failing, new):
            text = clean_reply(out[0])
            if text:  # an empty rewrite keeps the draft (the refinement count says it was tried)
                replies[i] = text
            n_refined[i] += 1
        pending = failing
    return replies, n_refined
