"""LLM judges for the judged metrics (paper section IV-C): watching intentions (WI and the three
intentions of PRS) and credibility (Cred).

Two ways to get a 1-5 rating, chosen by :attr:`JudgeConfig.mode`:

* ``"score"`` -- one option-scoring pass: the probability of each of ``"1".."5"`` after the
  assistant prefix ``"Rating: "``, and the expected value (never fails to parse; the reliable
  choice for small models);
* ``"sample"`` -- ``samples`` sampled replies, each parsed for ``Rating: N``; the mean of the
  parsed ones. Replies that cannot be parsed are counted (``parse_failures``), never replaced;
  a request with no parsable reply gives ``None`` (a missing value, not a score).

All requests of one kind go to the backend in batches of ``batch_size`` (one call each), so that
judging N dialogues is a handful of batched calls, not N * turns calls.

The prompts and rubrics below are this kit's own wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rso_lib.data.records import Item
from rso_lib.llm.protocol import ChatLLM, Messages, Sampling, expected_rating, parse_rating

RATING_OPTIONS = ("1", "2", "3", "4", "5")
RATING_PREFIX = "Rating: "


@dataclass(frozen=True)
class JudgeConfig:
    """How judgements are made.

    Args:
        mode: ``"score"`` (expected value of option probabilities) or ``"sample"`` (default "score").
        samples: replies per request in ``"sample"`` mode (default 3; the paper's reward uses 10).
        temperature: sampling temperature in ``"sample"`` mode (default 0.7).
        max_tokens: most new tokens per sampled judgement (default 8: the reply is "Rating: N").
        batch_size: requests per backend call (default 16).
        max_dialogue_chars: the dialogue shown to the post-dialogue judge is cut to its last
            this-many characters (default 3000; small models have short contexts).
        max_facts_chars: an item's knowledge-base facts are cut to this many characters
            (default 1200; long plots cost prefill time and say little more).
        seed: base seed of sampled judgements (default 0).
    """

    mode: str = "score"
    samples: int = 3
    temperature: float = 0.7
    max_tokens: int = 8
    batch_size: int = 16
    max_dialogue_chars: int = 3000
    max_facts_chars: int = 1200
    seed: int = 0

    def __post_init__(self):
        if self.mode not in ("score", "sample"):
            raise ValueError(f"JudgeConfig.mode must be 'score' or 'sample', got {self.mode!r}")
        if self.samples < 1 or self.batch_size < 1:
            raise ValueError("JudgeConfig.samples and batch_size must be >= 1")


# --------------------------------------------------------------------------------------------
# Prompts (the kit's own wording)
# --------------------------------------------------------------------------------------------

_WI_RUBRIC = (
    "How likely are you to watch this movie?\n"
    "5 = certainly: it is just what I am looking for\n"
    "4 = probably: it sounds good for me\n"
    "3 = maybe: I cannot tell yet\n"
    "2 = probably not: it does not sound like my kind of movie\n"
    "1 = certainly not\n"
    f'Answer with "{RATING_PREFIX}" and one digit from 1 to 5.'
)

_CRED_RUBRIC = (
    "How truthful is what the recommender says about the movie, judged only against the facts above?\n"
    "5 = every claim about the movie is backed by the facts\n"
    "4 = the claims are backed by or follow from the facts; minor details are unchecked\n"
    "3 = some claims are backed, others are not in the facts\n"
    "2 = most claims are not in the facts\n"
    "1 = a claim contradicts the facts\n"
    f'Answer with "{RATING_PREFIX}" and one digit from 1 to 5.'
)


def _persona_block(persona: str, target_genres: Sequence[str]) -> str:
    who = persona.strip() or "A person looking for a movie to watch."
    genres = ", ".join(target_genres) if target_genres else "any genre"
    return f"You are this person: {who}\nYou are looking for a movie of these genres: {genres}."


def _facts(item: Item, max_chars: int) -> str:
    f = item.facts()
    return f if len(f) <= max_chars else f[: max_chars - 3].rstrip() + "..."


def intention_messages(
    kind: str,
    persona: str,
    target_genres: Sequence[str],
    item: Item,
    dialogue_text: str = "",
    max_facts_chars: int = 1200,
) -> Messages:
    """Messages asking the persona's watching intention for ``item``.

    Args:
        kind: ``"pre"`` (title only), ``"post"`` (what the dialogue said) or ``"true"`` (the full
            knowledge-base record).
        persona: persona description the judge role-plays.
        target_genres: the genres the simulated user wants.
        item: the recommended item.
        dialogue_text: the dialogue (``"post"`` only), already cut to length.
        max_facts_chars: cut of the item facts (``"true"`` only).
    """
    if kind == "pre":
        evidence = f"All you know about the movie is its title: {item.name}."
    elif kind == "post":
        evidence = (
            f"You just talked with a movie recommender. All you know about the movie {item.name} "
            f"is what was said in this conversation:\n---\n{dialogue_text}\n---"
        )
    elif kind == "true":
        evidence = f"Here is everything about the movie:\n{_facts(item, max_facts_chars)}"
    else:
        raise ValueError(f"intention kind must be pre|post|true, got {kind!r}")
    return [
        {"role": "system", "content": "You rate, honestly and in character, whether you would watch a movie."},
        {"role": "user", "content": f"{_persona_block(persona, target_genres)}\n\n{evidence}\n\n{_WI_RUBRIC}"},
    ]


def credibility_messages(reply: str, item: Item, max_facts_chars: int = 1200) -> Messages:
    """Messages asking how truthful ``reply`` is about ``item`` given its knowledge-base facts."""
    return [
        {"role": "system", "content": "You are a careful fact-checker of movie recommendations."},
        {
            "role": "user",
            "content": (
                f"Facts about the movie from a movie database:\n{_facts(item, max_facts_chars)}\n\n"
                f'The recommender said:\n"{reply.strip()}"\n\n{_CRED_RUBRIC}'
            ),
        },
    ]


def dialogue_text(turns, max_chars: int) -> str:
    """``Recommender: ...`` / ``You: ...`` lines of a dialogue, keeping the last ``max_chars``."""
    lines = []
    for t in turns:
        lines.append(f"Recommender: {t.reply.strip()}")
        if t.user_reply:
            lines.append(f"You: {t.user_reply.strip()}")
    text = "\n".join(lines)
    if len(text) > max_chars:
        text = "..." + text[-max_chars:]
    return text


# --------------------------------------------------------------------------------------------
# Rating
# --------------------------------------------------------------------------------------------


@dataclass
class Ratings:
    values: list[float | None]  # one per request; None = no parsable judgement
    parse_failures: int  # unparsable sampled replies (0 in "score" mode)
    requests: int  # judge requests made (each asks for `samples` replies in sample mode)


def rate(llm: ChatLLM, batch: Sequence[Messages], cfg: JudgeConfig) -> Ratings:
    """1-5 rating of each conversation in ``batch``, per ``cfg.mode`` (see module doc)."""
    values: list[float | None] = []
    failures = 0
    for start in range(0, len(batch), cfg.batch_size):
        chunk = list(batch[start : start + cfg.batch_size])
        if cfg.mode == "score":
            probs = llm.score_options(chunk, RATING_OPTIONS, prefix=RATING_PREFIX)  # [b, 5]
            values.extend(float(v) for v in expected_rating(probs))
        else:
            sampling = Sampling(
                temperature=cfg.temperature, max_tokens=cfg.max_tokens, n=cfg.samples, seed=cfg.seed + start
            )
            replies = llm.chat(chunk, sampling)  # [b][samples]
            for rs in replies:
                parsed = [parse_rating(r) for r in rs]
                ok = [p for p in parsed if p is not None]
                failures += len(parsed) - len(ok)
                values.append(float(np.mean(ok)) if ok else None)
    return Ratings(values=values, parse_failures=failures, requests=len(batch))
