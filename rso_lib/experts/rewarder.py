"""Rewarder (paper Eq. 9): r_t = (1/M) sum_m LLM_judge(s_t, u_t), rescaled to [0, 1]; the dialogue
stops when r_t passes ``STOP_THRESHOLD``.

Two ways to get the 1-5 judgement:

* ``mode="sampled"`` (the paper): ``REWARD_SAMPLES`` sampled judgements, each parsed for a rating
  1-5 and averaged. A judgement that holds no rating 1-5 is a parse failure: counted, left out of
  the mean; if no judgement parses, the reward is ``None`` (missing, never made up).
* ``mode="expected"``: the exact expectation under the judge's distribution over "1".."5" after
  ``"Rating: "`` from one ``score_options`` pass (no sampling noise, no parse failures; the
  better choice for small models).

A third, grounded signal for small-scale runs lives with the simulators
(:class:`rso_lib.dialogue.simulators.SimulatorReward`, ``REWARD: simulator``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from rso_lib.data.records import Turn
from rso_lib.experts.prompts import RATING_PREFIX, rewarder_prompt
from rso_lib.llm.protocol import RATING_VALUES, ChatLLM, Sampling, expected_rating, parse_rating

RATINGS = RATING_VALUES


def rescale_rating(r: float) -> float:
    """Eq. 9's normalisation: a 1-5 rating -> (r - 1) / 4 in [0, 1]."""
    return (float(r) - 1.0) / 4.0


def should_stop(reward: float | None, threshold: float) -> bool:
    """Eq. 9's stop rule: the dialogue ends when the turn reward passes the threshold."""
    return reward is not None and reward > threshold


@dataclass
class RewardResult:
    reward: float | None  # in [0, 1]; None when no judgement could be parsed
    rating: float | None  # the 1-5 (expected or mean) rating
    stop: bool
    parse_failures: int = 0  # unparseable sampled judgements
    samples: list[int | None] = field(default_factory=list)  # parsed ratings ("sampled" mode)
    fallback: bool = False  # "sampled" mode, no sample parsed: rated by one scoring pass instead


@dataclass
class Rewarder:
    """Eq. 9 judge.

    Args:
        llm: the ``rewarder`` role's backend.
        mode: ``"expected"`` (default) or ``"sampled"``.
        samples: judgements per turn in ``"sampled"`` mode (paper: 10).
        stop_threshold: tau, stop when the rescaled reward is above this (default 0.7, the
            authors' value: a mean rating above 3.8).
        sampling: decoding for ``"sampled"`` mode (the authors' critic: temperature 1.1, top-p 0.95,
            16 new tokens).
    """

    llm: ChatLLM
    mode: str = "expected"
    samples: int = 10
    stop_threshold: float = 0.7
    sampling: Sampling = Sampling(temperature=1.1, top_p=0.95, max_tokens=16)

    def __post_init__(self):
        if self.mode not in ("expected", "sampled"):
            raise ValueError(f"Rewarder: unknown mode {self.mode!r} (expected | sampled)")

    def score(
        self,
        histories: Sequence[Sequence[Turn]],
        replies: Sequence[str],
        user_replies: Sequence[str],
        target_hints: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> list[RewardResult]:
        """One batched judge call for all dialogues. ``histories`` are the turns before ``replies``."""
        if not histories:
            return []
        hints = target_hints or [""] * len(histories)
        batch = [rewarder_prompt(h, r, u, t) for h, r, u, t in zip(histories, replies, user_replies, hints)]
        if self.mode == "expected":
            probs = self.llm.score_options(batch, RATINGS, prefix=RATING_PREFIX)  # [B, 5]
            out = []
            for r in expected_rating(probs):
                rew = rescale_rating(r)
                out.append(RewardResult(rew, float(r), should_stop(rew, self.stop_threshold)))
            return out
        s = replace(self.sampling, n=self.samples, seed=seed if seed is not None else self.sampling.seed)
        texts = self.llm.chat(batch, s)  # [B][samples]
        out = []
        for row in texts:
            parsed = [parse_rating(t) for t in row]
            ok = [p for p in parsed if p is not None]
            fails = len(parsed) - len(ok)
            if ok:
                r = float(np.mean(ok))
                rew = rescale_rating(r)
                out.append(RewardResult(rew, r, should_stop(rew, self.stop_threshold), fails, parsed))
            else:
                out.append(RewardResult(None, None, False, fails, parsed))
        # A turn none of whose samples parsed still needs a reward (RL cannot skip a turn): it is
        # rated by one scoring pass, the expectation the samples estimate, and flagged
        # (``fallback``; the engine counts it). The authors map any unparseable sample to 0.6.
        lost = [i for i, o in enumerate(out) if o.reward is None]
        if lost:
            probs = self.llm.score_options([batch[i] for i in lost], RATINGS, prefix=RATING_PREFIX)
            for i, r in zip(lost, expected_rating(probs)):
                rew = rescale_rating(r)
                o = out[i]
                out[i] = RewardResult(
                    rew, float(r), should_stop(rew, self.stop_threshold), o.parse_failures, o.samples, fallback=True
                )
        return out
