"""Rewarder (paper Eq. 9) on the authors' acceptance scale; also the evaluator of Conv-SR.

Paper Eq. 9: the turn reward "reflect[s] user satisfaction and task success", is rescaled to
[0, 1] (Sec. IV-D), averaged over 10 samples, and ends the dialogue when it passes tau; Sec. IV-C:
Conv-SR is "the proportion of dialogues in which the user ultimately accepts the recommended
item", "based on the reward score assigned by the LLM-based evaluator". The authors' critic
(ym689/RSO ``prompt.py`` / ``env.py``) asks one question, *has the seeker accepted the
recommendation?*, with five ordered answers mapped to values:

=====  ===================  =====
 opt   level                value
=====  ===================  =====
 1     no_recommendation    0.6
 2     not_interested       0.4
 3     rejected             0.2
 4     interested           0.8
 5     accepted             1.0
=====  ===================  =====

(:data:`ACCEPTANCE_LEVELS`; the values are a parameter, ``ACCEPTANCE_VALUES``). Public API, used
by the engine, the evaluation and the validity cards:

* :func:`score_acceptance` scores a batch of conversation states with a given LLM and returns
  per-state rewards, level counts and parse-failure counts;
* :func:`should_stop` is Eq. 9's stop rule ``d_t = 1[r_t > tau]`` with one rule of ours on top:
  **a state in which no movie has been recommended never passes tau**, whatever the judge said
  and whatever the values (under the authors' values 0.6 < 0.7 gives it too, but by accident of
  the numbers);
* :class:`Rewarder` wraps both for the dialogue engine.

Two ways to get the judgement:

* ``mode="sampled"`` (the paper; authors: temperature 1.1, top-p 0.95, 16 new tokens): ``samples``
  answers, each parsed for its option 1-5 and mapped to its value, then averaged. An answer that
  names no option is a parse failure: counted and left out of the mean (the authors map it to 0.6
  silently). If no answer of a state parses, the state is scored by one option-scoring pass and
  flagged ``fallback``.
* ``mode="expected"``: the exact expectation of the value under the judge's distribution over the
  options "1".."5" after ``"Answer: "`` (one scoring pass; no sampling noise, no parse failures).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from rso_lib.data.records import Turn
from rso_lib.experts.prompts import ACCEPTANCE_ANSWERS, ACCEPTANCE_PREFIX, acceptance_prompt
from rso_lib.llm.protocol import ChatLLM, Sampling

#: The authors' critic: level name -> value, in the option order 1-5 of the prompt.
ACCEPTANCE_LEVELS: dict[str, float] = {
    "no_recommendation": 0.6,
    "not_interested": 0.4,
    "rejected": 0.2,
    "interested": 0.8,
    "accepted": 1.0,
}
NO_RECOMMENDATION = "no_recommendation"
ACCEPTED = "accepted"
#: The option labels the judge answers with ("1".."5", in :data:`ACCEPTANCE_LEVELS` order).
ACCEPTANCE_OPTIONS = tuple(str(k) for k in range(1, len(ACCEPTANCE_LEVELS) + 1))
#: The authors' critic decoding: temperature 1.1, top-p 0.95, 16 new tokens.
CRITIC_SAMPLING = Sampling(temperature=1.1, top_p=0.95, max_tokens=16)

assert list(ACCEPTANCE_ANSWERS) == list(ACCEPTANCE_LEVELS), "prompt answers and levels must share one order"


def acceptance_values(values: Mapping[str, float] | None = None) -> dict[str, float]:
    """The level -> value map, checked: exactly the five level names, each a number in [0, 1].
    ``None`` -> the authors' :data:`ACCEPTANCE_LEVELS`. Raises ``ValueError`` naming the key."""
    if values is None:
        return dict(ACCEPTANCE_LEVELS)
    missing, unknown = set(ACCEPTANCE_LEVELS) - set(values), set(values) - set(ACCEPTANCE_LEVELS)
    if missing or unknown:
        raise ValueError(
            f"ACCEPTANCE_VALUES: needs exactly the levels {list(ACCEPTANCE_LEVELS)}; "
            f"missing {sorted(missing)}, unknown {sorted(unknown)}"
        )
    out = {}
    for k in ACCEPTANCE_LEVELS:  # keep the option order whatever order the caller used
        v = values[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"ACCEPTANCE_VALUES[{k!r}]: a number in [0, 1], got {v!r}")
        out[k] = float(v)
    return out


# An answer names its option by number ("Answer: 4", "4. The seeker is interested", "4") or, with
# no digit 1-5 standing alone, by the level's key phrase. Phrases are checked most specific first
# ("not interested" before "interested"). Anything else: a parse failure, never a guess.
_ANSWER_LABEL = re.compile(r"answer\s*\**\s*[:=]?\s*\**\s*(\d+)", re.IGNORECASE)
_OPTION_NUMBER = re.compile(r"(?<![\d./])(?<!of )([1-5])(?!\d|\.\d|\s*/|\s*out of)")
_PHRASES = (
    ("no_recommendation", ("not recommended", "not yet recommended", "no recommendation", "not suggested")),
    ("not_interested", ("not interested", "unenthusiastic", "not seem interested")),
    ("rejected", ("rejected", "turned the recommended movie down", "turned it down", "refus")),
    ("accepted", ("has accepted", "accepted the")),
    ("interested", ("is interested", "interested in")),
)


def parse_acceptance(text: str | None) -> str | None:
    """The level an acceptance judgement names, or None (a parse failure).

    >>> [parse_acceptance(t) for t in ("Answer: 4", "5. The seeker has accepted", "I think 3", "no idea")]
    ['interested', 'accepted', 'rejected', None]
    """
    t = (text or "").strip()
    m = _ANSWER_LABEL.search(t)
    if m:  # "Answer: N" decides; an N outside 1-5 is a failure, not a reason to look further
        return list(ACCEPTANCE_LEVELS)[int(m.group(1)) - 1] if m.group(1) in ACCEPTANCE_OPTIONS else None
    m = _OPTION_NUMBER.search(t)
    if m:
        return list(ACCEPTANCE_LEVELS)[int(m.group(1)) - 1]
    low = t.lower()
    for level, phrases in _PHRASES:
        if any(p in low for p in phrases):
            return level
    return None


#: Rewards are means of a few values: 0.8 averaged three times is 0.8000000000000002 in floating
#: point, which must not pass tau = 0.8. "Above tau" means above by more than this.
STOP_EPS = 1e-9


def should_stop(reward: float | None, threshold: float, recommended: bool = True) -> bool:
    """Eq. 9's stop rule ``1[r_t > tau]``; never true for a state with no recommended movie."""
    return bool(recommended) and reward is not None and reward > threshold + STOP_EPS


@dataclass
class AcceptanceScores:
    """:func:`score_acceptance`'s answer, one entry per state."""

    rewards: list[float | None]  # mean value in [0, 1]; None only if nothing could score the state
    levels: list[dict[str, int]]  # parsed samples per level ("sampled"); {} otherwise
    parse_failures: list[int]  # unparseable samples per state
    fallback: list[bool]  # "sampled": no sample parsed, scored by one scoring pass instead
    forced: list[bool]  # no movie recommended: set to the no-recommendation level, judge not asked


def _expected(llm: ChatLLM, prompts: list, values: dict[str, float]) -> list[float]:
    probs = np.asarray(llm.score_options(prompts, list(ACCEPTANCE_OPTIONS), prefix=ACCEPTANCE_PREFIX))
    return [float(x) for x in probs @ np.asarray(list(values.values()))]


def score_acceptance(
    llm: ChatLLM,
    states: Sequence[Sequence[Turn]],
    *,
    mode: str = "sampled",
    samples: int = 10,
    sampling: Sampling = CRITIC_SAMPLING,
    values: Mapping[str, float] | None = None,
    recommended: Sequence[bool] | None = None,
    seed: int | None = None,
) -> AcceptanceScores:
    """Score conversation states on the acceptance scale in one batched call.

    Args:
        llm: the judge (the ``rewarder`` role in the engine, the evaluator elsewhere).
        states: each a dialogue up to and including the seeker's latest answer.
        mode: ``"sampled"`` (paper: mean of ``samples`` answers) or ``"expected"``.
        samples: answers per state in ``"sampled"`` mode (paper: 10).
        sampling: decoding of the sampled answers (authors: T = 1.1, top-p 0.95, 16 tokens).
        values: level -> value (default the authors' :data:`ACCEPTANCE_LEVELS`).
        recommended: per state, whether a movie has been recommended in it; a False state is set
            to the no-recommendation value without asking the judge. None: ask for every state.
        seed: sampling seed.
    """
    if mode not in ("expected", "sampled"):
        raise ValueError(f"score_acceptance: unknown mode {mode!r} (expected | sampled)")
    vals = acceptance_values(values)
    n = len(states)
    rec = [True] * n if recommended is None else [bool(r) for r in recommended]
    if len(rec) != n:
        raise ValueError(f"score_acceptance: {n} states but {len(rec)} recommended flags")
    out = AcceptanceScores([None] * n, [{} for _ in range(n)], [0] * n, [False] * n, [not r for r in rec])
    for i in range(n):
        if not rec[i]:
            out.rewards[i] = vals[NO_RECOMMENDATION]
    ask = [i for i in range(n) if rec[i]]
    if not ask:
        return out
    prompts = [acceptance_prompt(states[i]) for i in ask]
    if mode == "expected":
        for i, r in zip(ask, _expected(llm, prompts, vals)):
            out.rewards[i] = r
        return out
    s = replace(sampling, n=samples, seed=seed if seed is not None else sampling.seed)
    lost = []
    for i, row in zip(ask, llm.chat(prompts, s)):
        parsed = [parse_acceptance(t) for t in row]
        ok = [p for p in parsed if p is not None]
        out.parse_failures[i] = len(parsed) - len(ok)
        out.levels[i] = {lv: ok.count(lv) for lv in vals if lv in ok}
        if ok:
            out.rewards[i] = float(np.mean([vals[p] for p in ok]))
        else:
            lost.append(i)
    # A state none of whose samples parsed still needs a reward (RL cannot skip a turn): it is
    # scored by one option-scoring pass, the expectation the samples estimate, and flagged.
    if lost:
        for i, r in zip(lost, _expected(llm, [acceptance_prompt(states[i]) for i in lost], vals)):
            out.rewards[i], out.fallback[i] = r, True
    return out


@dataclass
class RewardResult:
    reward: float | None  # in [0, 1]; None when there is no reward (no rewarder)
    rating: float | None  # unused by the acceptance scale (kept for the transcript schema): None
    stop: bool
    parse_failures: int = 0  # unparseable sampled judgements
    levels: dict[str, int] = field(default_factory=dict)  # parsed samples per level ("sampled")
    fallback: bool = False  # "sampled" mode, no sample parsed: scored by one scoring pass instead


@dataclass
class Rewarder:
    """Eq. 9 judge on the acceptance scale (see the module docstring).

    Args:
        llm: the ``rewarder`` role's backend.
        mode: ``"expected"`` (default) or ``"sampled"`` (paper).
        samples: judgements per turn in ``"sampled"`` mode (paper: 10).
        stop_threshold: tau; the dialogue stops when the reward is above it (authors: 0.7).
        sampling: decoding for ``"sampled"`` mode (authors: T = 1.1, top-p 0.95, 16 tokens).
        values: level -> value (``ACCEPTANCE_VALUES``; default the authors').
    """

    llm: ChatLLM
    mode: str = "expected"
    samples: int = 10
    stop_threshold: float = 0.7
    sampling: Sampling = CRITIC_SAMPLING
    values: Mapping[str, float] | None = None

    def __post_init__(self):
        if self.mode not in ("expected", "sampled"):
            raise ValueError(f"Rewarder: unknown mode {self.mode!r} (expected | sampled)")
        self.values = acceptance_values(self.values)

    def score(
        self, states: Sequence[Sequence[Turn]], recommended: Sequence[bool] | None = None, seed: int | None = None
    ) -> list[RewardResult]:
        """One batched judge call for all states (each ends with the seeker's answer);
        ``recommended[i]`` False: no movie named yet in state i (its reward is the
        no-recommendation value and it never stops)."""
        if not states:
            return []
        sc = score_acceptance(
            self.llm,
            states,
            mode=self.mode,
            samples=self.samples,
            sampling=self.sampling,
            values=self.values,
            recommended=recommended,
            seed=seed,
        )
        rec = [True] * len(states) if recommended is None else list(recommended)
        return [
            RewardResult(r, None, should_stop(r, self.stop_threshold, ok), pf, lv, fb)
            for r, ok, pf, lv, fb in zip(sc.rewards, rec, sc.parse_failures, sc.levels, sc.fallback)
        ]


def level_reward(level: str, values: Mapping[str, float] | None = None) -> float:
    """The value of one named level (for rewards that come from a known user action)."""
    vals = acceptance_values(values)
    if level not in vals:
        raise ValueError(f"unknown acceptance level {level!r}; known: {list(vals)}")
    return vals[level]
