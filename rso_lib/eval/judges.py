"""LLM judges for the judged metrics (paper section IV-C): watching intentions (WI and the three
intentions of PRS) and credibility (Cred).

Public API (what the evaluation and the validity checks call)::

    judge_cred(llm, cases, mode="score" | "sample" | "reasoned", cfg=None) -> Judged
    judge_wi(llm, cases, kind="post", mode=..., cfg=None)                   -> Judged
    judge_prs(llm, cases, mode=..., cfg=None)                               -> PRSJudged
    judge_both(judge_fn, llm, cases, cfg=None, **kw)                        -> ModeAgreement

``cases`` are :class:`CredCase` (a reply and the item it presents) or :class:`IntentionCase` (a
persona, its target genres, the item and the evidence the persona sees). Every result carries one
score per case (``None`` where the judge's answer could not be read: counted in
``parse_failures``, never replaced) and the number of requests.

Three ways to get a 1-5 rating (``mode``):

* ``"reasoned"`` -- the reference procedure of the authors' and PC-CRS's evaluation scripts: the
  judge first writes its reasoning, then an integer score, as one JSON object
  (``{"Evidence": ..., "Truthfulness": N}`` / ``{"Evidence": ..., "Watching Intention": N}``),
  decoded greedily (the authors: temperature 1e-5) and read as they read it (the JSON, else the
  text after the score's key). The paper profile judges this way.
* ``"score"`` -- a declared CPU shortcut: one option-scoring pass, the probability of each of
  ``"1".."5"`` after the assistant prefix ``"Rating: "``, and their expected value (never fails to
  parse, one forward pass instead of a generated explanation).
* ``"sample"`` -- ``samples`` short sampled replies, each parsed for ``Rating: N``; the mean of the
  parsed ones.

:func:`judge_both` runs ``"score"`` and ``"reasoned"`` on the same cases and reports their rank
agreement (Spearman), so a profile that uses the shortcut can say how far it tracks the reference.

All requests of one kind go to the backend in batches of ``batch_size`` (one call each). The
prompts and rubrics below are this kit's own wording (the rubrics follow the criteria of the
authors' and PC-CRS's, not their text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from rso_lib.data.records import Item
from rso_lib.eval import metrics as M
from rso_lib.llm.protocol import ChatLLM, Messages, Sampling, expected_rating, parse_rating

RATING_OPTIONS = ("1", "2", "3", "4", "5")
RATING_PREFIX = "Rating: "
JUDGE_MODES = ("score", "sample", "reasoned")
INTENTION_KINDS = ("pre", "post", "true")
#: the JSON key of the score in reasoned mode (the authors' / PC-CRS's key names)
CRED_KEY = "Truthfulness"
WI_KEY = "Watching Intention"


@dataclass(frozen=True)
class JudgeConfig:
    """How judgements are made.

    Args:
        mode: ``"score"`` | ``"sample"`` | ``"reasoned"`` (see the module doc; default "score").
        samples: replies per request in ``"sample"`` mode (default 3).
        temperature: sampling temperature in ``"sample"`` mode (default 0.7).
        max_tokens: most new tokens per sampled judgement (default 8: the reply is "Rating: N").
        reasoned_max_tokens: most new tokens of a reasoned judgement (default 300: the authors'
            watching-intention judge; their credibility judge has 200).
        reasoned_temperature: temperature of reasoned judgements (default 0: greedy, as the
            authors' 1e-5).
        batch_size: requests per backend call (default 16).
        max_dialogue_chars: the evidence shown to the post-dialogue judge is cut to its last
            this-many characters (default 3000; small models have short contexts).
        max_facts_chars: an item's knowledge-base facts are cut to this many characters
            (default 1200).
        seed: base seed of sampled judgements (default 0).
    """

    mode: str = "score"
    samples: int = 3
    temperature: float = 0.7
    max_tokens: int = 8
    reasoned_max_tokens: int = 300
    reasoned_temperature: float = 0.0
    batch_size: int = 16
    max_dialogue_chars: int = 3000
    max_facts_chars: int = 1200
    seed: int = 0

    def __post_init__(self):
        if self.mode not in JUDGE_MODES:
            raise ValueError(f"JudgeConfig.mode must be one of {JUDGE_MODES}, got {self.mode!r}")
        if self.samples < 1 or self.batch_size < 1 or self.reasoned_max_tokens < 1:
            raise ValueError("JudgeConfig.samples, batch_size and reasoned_max_tokens must be >= 1")


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CredCase:
    """One system reply and the item it presents (judged against that item's facts)."""

    reply: str
    item: Item


@dataclass(frozen=True)
class IntentionCase:
    """A persona asked about one item.

    Attributes:
        persona: persona description the judge role-plays.
        target_genres: the genres the persona wants.
        item: the item (the recommended one, or the most similar candidate; see evaluate).
        evidence: what the persona was told (``"post"`` only): the recommender's words, already
            cut to length by the caller.
    """

    persona: str
    target_genres: tuple[str, ...]
    item: Item
    evidence: str = ""


# --------------------------------------------------------------------------------------------
# Prompts (the kit's own wording)
# --------------------------------------------------------------------------------------------

# Watching intention: the criteria PC-CRS's and the authors' rubrics weigh (fit with the wanted
# genres and the persona, an appealing plot, people involved, reception, mood), in our words.
_WI_RUBRIC = (
    "How much do you want to watch this movie?\n"
    "5 = very much: it fits the genres you want and your taste, and what you know of it (story, "
    "people, reception) is compelling\n"
    "4 = quite: it fits what you want and sounds engaging\n"
    "3 = somewhat: it fits partly, or you know too little to be keen\n"
    "2 = hardly: it barely fits what you want, or you know almost nothing that draws you to it\n"
    "1 = not at all: it does not fit what you want, or nothing you know about it appeals to you"
)

# Credibility: consistency with the facts. A reply that states nothing checkable does not show
# consistency, so it sits in the middle (3), below replies whose specific details the facts
# support (the audit found "every claim is backed" let a vague reply score 5, above true facts).
_CRED_RUBRIC = (
    "How well does what the recommender says about the movie agree with the facts above?\n"
    "5 = it states specific details of the movie (story, people, genre, year, ...) and the facts "
    "support every one of them\n"
    "4 = its specific details are supported by the facts or follow from them; a minor one cannot "
    "be checked\n"
    "3 = it says little that can be checked against the facts (only the title, general praise, "
    "opinions), or some of its details are supported and others are not in the facts\n"
    "2 = most of its specific details are not in the facts\n"
    "1 = it states something the facts contradict"
)


def _answer_format(mode: str, key: str, reason: str) -> str:
    if mode == "reasoned":
        return (
            f"First {reason}, then give your integer score.\n"
            f'Reply with one JSON object and nothing else: {{"Evidence": "<your reasoning>", "{key}": <1-5>}}'
        )
    return f'Answer with "{RATING_PREFIX}" and one digit from 1 to 5.'


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
    mode: str = "score",
) -> Messages:
    """Messages asking the persona's watching intention for ``item``.

    Args:
        kind: ``"pre"`` (title only), ``"post"`` (what the recommender said) or ``"true"`` (the
            full knowledge-base record).
        persona: persona description the judge role-plays.
        target_genres: the genres the simulated user wants.
        item: the item asked about.
        dialogue_text: the evidence (``"post"`` only), already cut to length.
        max_facts_chars: cut of the item facts (``"true"`` only).
        mode: the judging procedure (decides the answer format).
    """
    if kind == "pre":
        evidence = f"All you know about the movie is its title: {item.name}."
    elif kind == "post":
        evidence = (
            f"A movie recommender talked with you about the movie {item.name}. All you know about it "
            f"is what the recommender said:\n---\n{dialogue_text}\n---"
        )
    elif kind == "true":
        evidence = f"Here is everything about the movie:\n{_facts(item, max_facts_chars)}"
    else:
        raise ValueError(f"intention kind must be one of {INTENTION_KINDS}, got {kind!r}")
    rule = "Judge only from the information above: pretend you know nothing else about this movie."
    fmt = _answer_format(mode, WI_KEY, "say briefly what you know about the movie and how it fits you")
    return [
        {"role": "system", "content": "You rate, honestly and in character, whether you would watch a movie."},
        {
            "role": "user",
            "content": f"{_persona_block(persona, target_genres)}\n\n{evidence}\n\n{rule}\n\n{_WI_RUBRIC}\n{fmt}",
        },
    ]


def credibility_messages(reply: str, item: Item, max_facts_chars: int = 1200, mode: str = "score") -> Messages:
    """Messages asking how well ``reply`` agrees with ``item``'s knowledge-base facts."""
    fmt = _answer_format(
        mode, CRED_KEY, "list what the recommender states about the movie and check each point against the facts"
    )
    return [
        {"role": "system", "content": "You are a careful fact-checker of movie recommendations."},
        {
            "role": "user",
            "content": (
                f"Facts about the movie from a movie database:\n{_facts(item, max_facts_chars)}\n\n"
                f'The recommender said:\n"{reply.strip()}"\n\n{_CRED_RUBRIC}\n{fmt}'
            ),
        },
    ]


def dialogue_text(turns, max_chars: int, include_user: bool = True) -> str:
    """``Recommender: ...`` (and, with ``include_user``, ``You: ...``) lines of a dialogue, keeping
    the last ``max_chars``. PC-CRS judges the intention after the recommender's words alone: with
    ``include_user=False`` the user's own lines ("I'll watch it") are not evidence."""
    lines = []
    for t in turns:
        if t.reply.strip():
            lines.append(f"Recommender: {t.reply.strip()}")
        if include_user and t.user_reply:
            lines.append(f"You: {t.user_reply.strip()}")
    text = "\n".join(lines)
    if len(text) > max_chars:
        text = "..." + text[-max_chars:]
    return text


# --------------------------------------------------------------------------------------------
# Decoding a reasoned judgement
# --------------------------------------------------------------------------------------------

_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_reasoned(text: str | None, key: str) -> int | None:
    """The integer 1-5 under ``key`` in a reasoned judgement, read as the authors read it: the
    reply as JSON (also the first ``{...}`` in it, for a model that wraps it in a code block),
    else the number right after ``"<key>":``. Anything else, or a number outside 1-5, is None."""
    t = text or ""
    for cand in (t, *(m.group(0) for m in [_JSON_OBJECT.search(t)] if m)):
        try:
            obj = json.loads(cand)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(obj, dict) and key in obj:
            return _as_rating(obj[key])
    m = re.search(r'"' + re.escape(key) + r'"\s*:\s*"?(\d+(?:\.\d+)?)', t)
    return _as_rating(m.group(1)) if m else None


def _as_rating(v) -> int | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if f.is_integer() and 1 <= f <= 5 else None


# --------------------------------------------------------------------------------------------
# Rating
# --------------------------------------------------------------------------------------------


@dataclass
class Ratings:
    values: list[float | None]  # one per request; None = no parsable judgement
    parse_failures: int  # unparsable replies (0 in "score" mode)
    requests: int  # judge requests made
    replies: list[list[str]] = field(default_factory=list)  # generated judgements (sample/reasoned)


def rate(llm: ChatLLM, batch: Sequence[Messages], cfg: JudgeConfig, key: str = CRED_KEY) -> Ratings:
    """1-5 rating of each conversation in ``batch``, per ``cfg.mode`` (see module doc); ``key``
    is the JSON key a reasoned judgement puts its score under."""
    values: list[float | None] = []
    failures = 0
    replies_out: list[list[str]] = []
    for start in range(0, len(batch), cfg.batch_size):
        chunk = list(batch[start : start + cfg.batch_size])
        if cfg.mode == "score":
            probs = llm.score_options(chunk, RATING_OPTIONS, prefix=RATING_PREFIX)  # [b, 5]
            values.extend(float(v) for v in expected_rating(probs))
            continue
        if cfg.mode == "reasoned":
            sampling = Sampling(temperature=cfg.reasoned_temperature, max_tokens=cfg.reasoned_max_tokens, n=1)
            parse = partial(parse_reasoned, key=key)
        else:
            sampling = Sampling(
                temperature=cfg.temperature, max_tokens=cfg.max_tokens, n=cfg.samples, seed=cfg.seed + start
            )
            parse = parse_rating
        replies = llm.chat(chunk, sampling)  # [b][n]
        replies_out.extend(replies)
        for rs in replies:
            parsed = [parse(r) for r in rs]
            ok = [p for p in parsed if p is not None]
            failures += len(parsed) - len(ok)
            values.append(float(np.mean(ok)) if ok else None)
    return Ratings(values=values, parse_failures=failures, requests=len(batch), replies=replies_out)


# --------------------------------------------------------------------------------------------
# Public API: judge cases
# --------------------------------------------------------------------------------------------


@dataclass
class Judged:
    """Scores of one judgement pass: one per case (None = unreadable, counted), the failures, the
    requests made, and the generated judgements (reasoned / sample modes) for inspection."""

    scores: list[float | None]
    parse_failures: int
    requests: int
    mode: str
    replies: list[list[str]] = field(default_factory=list)

    @property
    def unparsed(self) -> int:
        """Cases without a score."""
        return sum(s is None for s in self.scores)


def _cfg(mode: str | None, cfg: JudgeConfig | None) -> JudgeConfig:
    cfg = cfg or JudgeConfig()
    return cfg if mode is None or mode == cfg.mode else replace(cfg, mode=mode)


def _judged(r: Ratings, mode: str) -> Judged:
    return Judged(r.values, r.parse_failures, r.requests, mode, r.replies)


def judge_cred(
    llm: ChatLLM, cases: Sequence[CredCase], mode: str | None = None, cfg: JudgeConfig | None = None
) -> Judged:
    """Credibility 1-5 of each reply against its item's facts (``mode`` overrides ``cfg.mode``)."""
    c = _cfg(mode, cfg)
    msgs = [credibility_messages(x.reply, x.item, c.max_facts_chars, c.mode) for x in cases]
    return _judged(rate(llm, msgs, c, key=CRED_KEY), c.mode)


def judge_wi(
    llm: ChatLLM,
    cases: Sequence[IntentionCase],
    kind: str = "post",
    mode: str | None = None,
    cfg: JudgeConfig | None = None,
) -> Judged:
    """Watching intention 1-5 of each persona for its item, from the title only (``"pre"``), what
    the recommender said (``"post"``: WI) or the full record (``"true"``)."""
    c = _cfg(mode, cfg)
    msgs = [
        intention_messages(kind, x.persona, x.target_genres, x.item, x.evidence, c.max_facts_chars, c.mode)
        for x in cases
    ]
    return _judged(rate(llm, msgs, c, key=WI_KEY), c.mode)


@dataclass
class PRSJudged:
    """The three intentions of PRS per case and the PRS case they give (:func:`metrics.persuasiveness`)."""

    pre: Judged
    post: Judged
    true: Judged
    cases: list[M.PRSCase]

    @property
    def parse_failures(self) -> int:
        return self.pre.parse_failures + self.post.parse_failures + self.true.parse_failures

    @property
    def requests(self) -> int:
        return self.pre.requests + self.post.requests + self.true.requests


def judge_prs(
    llm: ChatLLM,
    cases: Sequence[IntentionCase],
    mode: str | None = None,
    cfg: JudgeConfig | None = None,
    min_gap: float = 0.5,
    intentions: str = "whole",
) -> PRSJudged:
    """PRS of each case: ``i_pre`` (title), ``i_post`` (the case's evidence: what the recommender
    said), ``i_true`` (full record), then ``1 - (i_true - i_post) / (i_true - i_pre)`` with the
    authors' / PC-CRS's rules (``i_post > i_true`` counted apart; ``i_pre`` = ``i_true``, i.e.
    closer than ``min_gap``, excluded), on whole or expected ratings (``intentions``, see
    :func:`rso_lib.eval.metrics.persuasiveness`)."""
    pre, post, true = (judge_wi(llm, cases, k, mode, cfg) for k in INTENTION_KINDS)
    prs = [
        M.persuasiveness(a, b, t, min_gap=min_gap, intentions=intentions)
        for a, b, t in zip(pre.scores, post.scores, true.scores)
    ]
    return PRSJudged(pre, post, true, prs)


@dataclass
class ModeAgreement:
    """The same cases judged by the shortcut (``score``) and the reference (``reasoned``)."""

    score: Judged
    reasoned: Judged
    spearman: float  # over the cases both procedures scored; NaN if fewer than 3 or constant
    n: int  # cases both scored
    mean_abs_diff: float


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN if fewer than 3 pairs or a side is
    constant."""
    import pandas as pd

    x, y = pd.Series(list(a), dtype=float), pd.Series(list(b), dtype=float)
    if len(x) < 3 or x.nunique() < 2 or y.nunique() < 2:
        return float("nan")
    return float(x.rank().corr(y.rank()))


def judge_both(
    judge_fn: Callable[..., Judged], llm: ChatLLM, cases: Sequence, cfg: JudgeConfig | None = None, **kw
) -> ModeAgreement:
    """Run ``judge_fn`` (:func:`judge_cred` or :func:`judge_wi`, with ``kw`` such as ``kind``) in
    ``"score"`` and ``"reasoned"`` mode on the same cases, and their agreement."""
    s = judge_fn(llm, cases, mode="score", cfg=cfg, **kw)
    r = judge_fn(llm, cases, mode="reasoned", cfg=cfg, **kw)
    pairs = [(a, b) for a, b in zip(s.scores, r.scores) if a is not None and b is not None]
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    mad = float(np.mean(np.abs(np.subtract(xs, ys)))) if pairs else float("nan")
    return ModeAgreement(score=s, reasoned=r, spearman=spearman(xs, ys), n=len(pairs), mean_abs_diff=mad)
