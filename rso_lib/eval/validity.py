"""The validity card: every LLM role of a run checked on cases whose answer is known, before any
table is believed (``results/<profile>/validity.{csv,md}``, ``figures/<profile>/validity.*``).

One row per check, columns :data:`COLUMNS`:

* ``check`` -- what was measured (``cred_true_vs_vague``, ``rewarder_no_recommendation_passes_tau``...);
* ``role`` -- the instrument: ``judge`` | ``rewarder`` | ``user`` | ``independence``;
* ``metric`` -- the Table IV/V metric the check guards (``WI``, ``PRS``, ``Cred``, ``Conv-SR``,
  ``Accept-SR``, ``Rec-SR``, ``Recall@1``, ``Recall@5``) or empty; a check that guards several
  metrics has one row per metric (same ``check``, same value);
* ``model`` -- the model that played the role; ``value`` / ``threshold`` / ``passed`` -- the
  measured value, the declared pass threshold (the detail says ``>=`` or ``<=``) and the verdict
  (a value that could not be measured, NaN, does not pass);
* ``n`` -- cases the value is over; ``parse_failures`` -- model outputs in those cases that could
  not be parsed (counted, never replaced); ``detail`` -- the numbers behind the value.

The instrument checks (this module: judges, Rewarder, simulated user, independence) run in
``notebooks/03_validity.ipynb``; the checks that need the run's transcripts (leak audit, dialogue
dynamics, judge swap: :mod:`rso_lib.eval.transcript_checks`) run in
``notebooks/04_validity_transcripts.ipynb`` right after the evaluation and are merged into the
same card, which ``09_claims`` reads. ``docs/validity.md`` explains every check and threshold.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rso_lib.data.records import RECOMMENDER, SEEKER, Item, SimTarget, Turn
from rso_lib.dialogue.config import EngineConfig
from rso_lib.dialogue.simulators import SimResponse, covers
from rso_lib.eval import judges as J
from rso_lib.eval import known_answers as K
from rso_lib.eval.titles import TitleIndex
from rso_lib.eval.transcripts import EvalTurn

COLUMNS = ["check", "role", "metric", "model", "value", "threshold", "passed", "n", "parse_failures", "detail"]
#: The metrics a card row may guard (Tables IV and V, and the simulator's acceptance rate).
GUARDED_METRICS = ("WI", "PRS", "Cred", "Conv-SR", "Accept-SR", "Rec-SR", "Recall@1", "Recall@5")


@dataclass(frozen=True)
class Thresholds:
    """Pass thresholds of the card (each a notebook parameter of the same name in upper case;
    ``docs/validity.md`` says why each value).

    Attributes:
        min_pair_accuracy: known-answer pairs a judge must order right (ties count 1/2).
        max_flip_rate: share of pairs whose verdict may flip when only the order of the reply's
            sentences, or its length, changes.
        max_parse_failure_rate: unparsable judge / Rewarder outputs over all outputs.
        min_reference_agreement: Kendall tau-b between the profile's judging mode and the
            reference procedure on the same judgements.
        min_reward_order: share of state pairs the Rewarder orders as acceptance > interest >
            no recommendation > rejection.
        max_no_recommendation_pass_rate / max_rejection_pass_rate: share of those states whose
            reward passes tau.
        min_acceptance_pass_rate: share of explicit acceptances whose reward passes tau.
        min_accept_gap: on-target minus off-target acceptance rate of the simulated user.
        max_genre_reveal_rate / max_opening_leak_rate: simulated users whose first message names
            every target genre / a movie that satisfies them.
        max_leak_rate: dialogues whose user turns name a satisfying movie before the system does.
        min_swap_tau: Kendall tau-b of a metric's system ranking under the main and a swapped judge.
    """

    min_pair_accuracy: float = 0.9
    max_flip_rate: float = 0.2
    max_parse_failure_rate: float = 0.1
    min_reference_agreement: float = 0.5
    min_reward_order: float = 0.9
    max_no_recommendation_pass_rate: float = 0.0
    max_rejection_pass_rate: float = 0.0
    min_acceptance_pass_rate: float = 0.8
    min_accept_gap: float = 0.2
    max_genre_reveal_rate: float = 0.5
    max_opening_leak_rate: float = 0.0
    max_leak_rate: float = 0.05
    min_swap_tau: float = 0.6


def thresholds_from_params(params: dict) -> Thresholds:
    """:class:`Thresholds` from a notebook's parameters (``globals()``): each field whose upper-case
    name is declared there (``MIN_PAIR_ACCURACY``...); the others keep their defaults."""
    kw = {f.name: float(params[f.name.upper()]) for f in fields(Thresholds) if f.name.upper() in params}
    return Thresholds(**kw)


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _mean(x) -> float:
    """Mean of the values that are not NaN; NaN (no warning) when there is none."""
    x = np.asarray(x, float)
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def rows(
    check: str,
    role: str,
    metrics: Sequence[str],
    model: str,
    value: float,
    threshold: float,
    at_least: bool,
    n: int,
    parse_failures: int = 0,
    detail: str = "",
) -> list[dict]:
    """Card rows of one check, one per guarded metric (one row with an empty metric if none).
    ``at_least``: the value passes when ``>= threshold`` (else when ``<= threshold``); NaN fails."""
    bad = [m for m in metrics if m not in GUARDED_METRICS]
    if bad:
        raise ValueError(f"check {check}: unknown metric(s) {bad}; allowed: {', '.join(GUARDED_METRICS)}")
    v = float("nan") if _nan(value) else float(value)
    passed = (not math.isnan(v)) and (v >= threshold if at_least else v <= threshold)
    rule = f"needs {'>=' if at_least else '<='} {threshold:g}"
    full = f"{rule}; {detail}" if detail else rule
    return [
        {
            "check": check,
            "role": role,
            "metric": m,
            "model": model,
            "value": v,
            "threshold": float(threshold),
            "passed": bool(passed),
            "n": int(n),
            "parse_failures": int(parse_failures),
            "detail": full,
        }
        for m in (list(metrics) or [""])
    ]


def card_frame(card_rows: Sequence[dict]) -> pd.DataFrame:
    return pd.DataFrame(list(card_rows), columns=COLUMNS)


def model_name(llm: Any) -> str:
    return str(getattr(llm, "model_id", None) or type(llm).__name__)


# --------------------------------------------------------------------------------------------
# 1. Judges: WI, PRS, Cred on known-answer pairs
# --------------------------------------------------------------------------------------------


@dataclass
class Rated:
    """Scores of one group of judge requests (from :class:`rso_lib.eval.judges.Judged`)."""

    values: np.ndarray  # float, NaN = no readable judgement
    parse_failures: int
    outputs: int  # judge outputs behind them (requests x samples in sample mode)

    @classmethod
    def of(cls, j: J.Judged, cfg: J.JudgeConfig) -> Rated:
        per = cfg.samples if j.mode == "sample" else 1
        vals = np.asarray([np.nan if v is None else v for v in j.scores], dtype=float)
        return cls(vals, int(j.parse_failures), int(j.requests) * per)


def _cred(
    judge, cfg: J.JudgeConfig, replies: Sequence[K.Reply], items: Sequence[Item], mode: str | None = None
) -> Rated:
    cases = [J.CredCase(r.text, it) for r, it in zip(replies, items)]
    j = J.judge_cred(judge, cases, mode=mode, cfg=cfg)
    return Rated.of(j, cfg)


def _missing(*rated: Rated) -> int:
    return int(sum(np.isnan(r.values).sum() for r in rated))


def _pair_rows(check, metrics, model, a: Rated, b: Rated, th: Thresholds, what: str) -> list[dict]:
    acc = K.pairwise_accuracy(a.values, b.values)
    ok = ~(np.isnan(a.values) | np.isnan(b.values))
    detail = (
        f"{what}: mean {_mean(a.values[ok]):.2f} vs {_mean(b.values[ok]):.2f}; {_missing(a, b)} judgement(s) unreadable"
        if ok.any()
        else f"{what}: no pair judged ({_missing(a, b)} judgement(s) unreadable)"
    )
    pf = a.parse_failures + b.parse_failures
    return rows(check, "judge", metrics, model, acc, th.min_pair_accuracy, True, int(ok.sum()), pf, detail)


def cred_cases(items: Sequence[Item], n: int, seed: int) -> dict[str, Any]:
    """Every Cred reply of the card, by kind (one list entry per movie)."""
    pairs = K.claim_pairs(items, n, seed)
    its = [p["item"] for p in pairs]
    true, false = [p["true"] for p in pairs], [p["false"] for p in pairs]
    return {
        "types": [p["type"] for p in pairs],
        "items": its,
        "true": true,
        "false": false,
        "vague": [K.vague_reply(it) for it in its],
        "invented": [K.invented_reply(t, it, k) for k, (t, it) in enumerate(zip(true, its))],
        "true_reordered": [r.reordered() for r in true],
        "false_reordered": [r.reordered() for r in false],
        "true_padded": [r.padded() for r in true],
        "false_padded": [r.padded() for r in false],
    }


def _flip_rows(check, model, base: tuple[Rated, Rated], var: tuple[Rated, Rated], th, what) -> list[dict]:
    rate, n = K.flip_rate(base[0].values, base[1].values, var[0].values, var[1].values)
    shift = _mean(np.r_[var[0].values - base[0].values, var[1].values - base[1].values])
    detail = f"{what}; the true-vs-false verdict flips in {rate:.2f} of pairs; mean rating shift {shift:+.2f}"
    pf = var[0].parse_failures + var[1].parse_failures
    return rows(check, "judge", ["Cred"], model, rate, th.max_flip_rate, False, n, pf, detail)


def _parse_rows(metric: str, model: str, rated: Sequence[Rated], th: Thresholds, role: str = "judge") -> list[dict]:
    pf, outs = sum(x.parse_failures for x in rated), sum(x.outputs for x in rated)
    rate = pf / outs if outs else float("nan")
    return rows(
        f"{role}_parse_failures:{metric}" if metric else f"{role}_parse_failures",
        role,
        [metric] if metric else [],
        model,
        rate,
        th.max_parse_failure_rate,
        False,
        outs,
        pf,
        f"{pf} of {outs} outputs unreadable",
    )


def cred_checks(
    judge, cfg: J.JudgeConfig, items: Sequence[Item], n: int, seed: int, th: Thresholds
) -> tuple[list[dict], dict]:
    """Cred judge rows: true vs false (all claim types, then each type), true vs vague, true vs
    invented fact, order and length flip rates, parse failures. Also returns the cases and their
    ratings (the reference-agreement check re-judges them)."""
    c = cred_cases(items, n, seed)
    r = {k: _cred(judge, cfg, c[k], c["items"]) for k in c if k not in ("types", "items")}
    model = model_name(judge)
    out = _pair_rows("cred_true_vs_false", ["Cred"], model, r["true"], r["false"], th, "true vs one changed attribute")
    types = np.asarray(c["types"])
    for t in K.CLAIM_TYPES:
        m = types == t
        if m.any():
            sub = [Rated(x.values[m], 0, int(m.sum())) for x in (r["true"], r["false"])]
            out += _pair_rows(f"cred_true_vs_false:{t}", [], model, *sub, th, f"claim type {t} (breakdown)")
    out += _pair_rows(
        "cred_true_vs_vague",
        ["Cred"],
        model,
        r["true"],
        r["vague"],
        th,
        "true facts vs 'a great movie many people love'",
    )
    out += _pair_rows(
        "cred_true_vs_invented",
        ["Cred"],
        model,
        r["true"],
        r["invented"],
        th,
        "true vs the same plus one invented fact (award, sequel, box office)",
    )
    out += _flip_rows(
        "cred_order_flip_rate",
        model,
        (r["true"], r["false"]),
        (r["true_reordered"], r["false_reordered"]),
        th,
        "claim sentence moved first",
    )
    out += _flip_rows(
        "cred_length_flip_rate",
        model,
        (r["true"], r["false"]),
        (r["true_padded"], r["false_padded"]),
        th,
        "both replies padded to twice their length with sentences that claim nothing",
    )
    out += _parse_rows("Cred", model, list(r.values()), th)
    return out, {"cases": c, "ratings": r}


def post_case(persona: str, genres: Sequence[str], item: Item, reply: K.Reply, cfg: J.JudgeConfig) -> J.IntentionCase:
    """The persona told about ``item`` by one recommender turn (the evidence the evaluation's
    post-dialogue judge reads: the recommender's lines)."""
    return J.IntentionCase(
        persona, tuple(genres), item, J.dialogue_text([EvalTurn(reply=reply.text)], cfg.max_dialogue_chars)
    )


def wi_checks(judge, cfg: J.JudgeConfig, items: Sequence[Item], n: int, seed: int, th: Thresholds) -> list[dict]:
    """WI judge rows: the post-dialogue intention after one truthful recommendation, for a persona
    who loves the movie's main genre vs one who hates it."""
    pairs = K.intention_pairs(items, n, seed)
    love, hate = (
        Rated.of(
            J.judge_wi(
                judge,
                [post_case(*p[k], p["item"], K.explanation_reply(p["item"]), cfg) for p in pairs],
                "post",
                cfg=cfg,
            ),
            cfg,
        )
        for k in ("love", "hate")
    )
    model = model_name(judge)
    out = _pair_rows(
        "wi_lover_vs_hater", ["WI"], model, love, hate, th, "intention of a persona who loves vs hates the genre"
    )
    return out + _parse_rows("WI", model, [love, hate], th)


def _prs_note(name: str, cases) -> str:
    from rso_lib.eval.metrics import PRS_OK

    ok = [c.value for c in cases if c.status == PRS_OK]
    return f"PRS {name} {np.mean(ok):.2f} (n={len(ok)})" if ok else f"PRS {name} not measurable (n=0)"


def prs_checks(
    judge,
    cfg: J.JudgeConfig,
    items: Sequence[Item],
    n: int,
    seed: int,
    th: Thresholds,
    min_gap: float = 0.5,
    intentions: str = "whole",
) -> list[dict]:
    """PRS judge rows: for a persona who wants the movie's genre, the post-dialogue intention after
    a truthful explanation vs after a title-only reply (the same pre and true intentions), and the
    PRS each gives (:func:`rso_lib.eval.judges.judge_prs`)."""
    pool = K.usable_pool(items)
    pool = random.Random(seed + 2).sample(pool, min(n, len(pool)))
    who = [(f"I enjoy {it.genres[0]} movies.", [it.genres[0]]) for it in pool]
    expl = J.judge_prs(
        judge,
        [post_case(*w, it, K.explanation_reply(it), cfg) for w, it in zip(who, pool)],
        cfg=cfg,
        min_gap=min_gap,
        intentions=intentions,
    )
    title = J.judge_prs(
        judge,
        [post_case(*w, it, K.title_only_reply(it), cfg) for w, it in zip(who, pool)],
        cfg=cfg,
        min_gap=min_gap,
        intentions=intentions,
    )
    model = model_name(judge)
    note = f"post intention; {_prs_note('explanation', expl.cases)}, {_prs_note('title-only', title.cases)}"
    a, b = Rated.of(expl.post, cfg), Rated.of(title.post, cfg)
    out = _pair_rows("prs_explanation_vs_title_only", ["PRS"], model, a, b, th, note)
    rated = [Rated.of(j, cfg) for j in (expl.pre, expl.true, title.pre, title.true)] + [a, b]
    return out + _parse_rows("PRS", model, rated, th)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties corrected) of two equally long sequences; pairs with a NaN are left
    out; NaN if fewer than two values remain or either side is constant."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if a.shape != b.shape:
        raise ValueError(f"kendall_tau_b: lengths differ ({a.size} vs {b.size})")
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    i, j = np.triu_indices(a.size, k=1)
    dx, dy = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    s = float(np.sum(dx * dy))
    denom = math.sqrt(float(np.sum(dx != 0)) * float(np.sum(dy != 0)))
    return s / denom if denom else float("nan")


REFERENCE_MODE = "reasoned"  # rso_lib.eval.judges: the authors' / PC-CRS's procedure


def reference_agreement_rows(judge, cfg: J.JudgeConfig, judged: dict, n: int, th: Thresholds) -> list[dict]:
    """Agreement of the profile's judging mode with the reference procedure (reasoning, then a
    score: ``mode="reasoned"``) on the same Cred judgements: the first ``n`` true, false, vague and
    invented replies of :func:`cred_checks` (``judged`` is its second return value). Value:
    Kendall tau-b over the replies both procedures scored."""
    kinds = ("true", "false", "vague", "invented")
    cases, base = judged["cases"], judged["ratings"]
    k = min(n, len(cases["items"]))
    items = [it for _ in kinds for it in cases["items"][:k]]
    replies = [r for kind in kinds for r in cases[kind][:k]]
    ref = _cred(judge, cfg, replies, items, mode=REFERENCE_MODE)
    mine = np.concatenate([base[kind].values[:k] for kind in kinds])
    tau = kendall_tau_b(mine, ref.values)
    both = ~(np.isnan(mine) | np.isnan(ref.values))
    rho = J.spearman(mine[both], ref.values[both])
    detail = (
        f"'{cfg.mode}' vs '{REFERENCE_MODE}' ratings of {len(replies)} Cred replies (true, false, vague, invented): "
        f"Kendall tau-b {tau:.2f}, Spearman {rho:.2f}; reference means true {_mean(ref.values[:k]):.2f}, "
        f"false {_mean(ref.values[k : 2 * k]):.2f}, vague {_mean(ref.values[2 * k : 3 * k]):.2f}, "
        f"invented {_mean(ref.values[3 * k :]):.2f}; {int(np.isnan(ref.values).sum())} unreadable"
    )
    return rows(
        "judge_agrees_with_reference:Cred",
        "judge",
        ["Cred"],
        model_name(judge),
        tau,
        th.min_reference_agreement,
        True,
        int(both.sum()),
        ref.parse_failures,
        detail,
    )


# --------------------------------------------------------------------------------------------
# 2. Rewarder: constructed states
# --------------------------------------------------------------------------------------------

STATES = ("acceptance", "interest", "no_recommendation", "rejection")  # the authors' order, best first


def on_off_items(targets: Sequence[SimTarget], items: Sequence[Item], seed: int) -> list[tuple[SimTarget, Item, Item]]:
    """(target, an item covering its target genres, an item with none of them) per target that has
    target genres (a user without any has no off-target movie: left out)."""
    rng = random.Random(seed + 3)
    pool = K.usable_pool(items)
    out = []
    for t in targets:
        g = {x.lower() for x in t.target_genres}
        on = [it for it in pool if g and covers(it, t.target_genres)]
        off = [it for it in pool if g and not g & set(it.genres)]
        if on and off:
            out.append((t, rng.choice(on), rng.choice(off)))
    return out


def _opening(t: SimTarget) -> str:
    return f"Hi! I'm looking for a {' and '.join(t.target_genres)} movie to watch tonight."


def reward_states(cases: Sequence[tuple[SimTarget, Item, Item]]) -> list[dict]:
    """The four states of each case: the conversation through the user's answer (``state``), and
    the simulator outcome that stands for it (``sim``, for the grounded simulator reward)."""
    out = []
    for t, on, off in cases:
        g = " and ".join(t.target_genres)
        pitch, bad = K.explanation_reply(on).text, K.explanation_reply(off).text
        spec = {
            "acceptance": (pitch, f"Great, I will watch {on.title} tonight. Thank you!", "accept", on, True),
            "interest": (pitch, f"That sounds interesting. Tell me more about {on.title}.", "inquire", on, False),
            "no_recommendation": (
                f"What kind of {g} movies do you usually enjoy?",
                f"I like {g} movies with a good story.",
                "disclose",
                None,
                False,
            ),
            "rejection": (
                bad,
                f"No, I don't want to watch {off.title}. It is not what I am looking for.",
                "reject",
                off,
                False,
            ),
        }
        for kind in STATES:
            reply, user, action, item, acc = spec[kind]
            iid = item.item_id if item is not None else None
            sim = SimResponse(
                user, action, iid, accepted=acc, end=acc, covers_target=None if item is None else item is on
            )
            state = [Turn(SEEKER, _opening(t)), Turn(RECOMMENDER, reply), Turn(SEEKER, user)]
            out.append({"kind": kind, "target": t, "state": state, "sim": sim, "recommended": item is not None})
    return out


def score_states(rewarder, states: Sequence[dict], recommended: Sequence[bool] | None, seed: int = 0) -> list:
    """The rewarder's RewardResult per state, called as the dialogue engine calls it
    (``recommended``: a movie has been named in the state; None asks the LLM judge on every state).
    The grounded simulator reward reads the simulator outcome instead of the text."""
    if getattr(rewarder, "uses_simulator", False):
        flags = [s["recommended"] for s in states] if recommended is None else list(recommended)
        return rewarder.score_from_sim([s["sim"] for s in states], flags)
    return rewarder.score([s["state"] for s in states], recommended=recommended, seed=seed)


def _rewards(res) -> np.ndarray:
    return np.asarray([np.nan if r.reward is None else r.reward for r in res], float)


def _state_order(by: dict[str, np.ndarray]) -> tuple[float, int]:
    """Share of state pairs in the expected order (ties 1/2) and cases in the full order."""
    order = [K.pairwise_accuracy(by[a], by[b]) for i, a in enumerate(STATES) for b in STATES[i + 1 :]]
    value = _mean(order)
    full = sum(all(by[a][c] > by[b][c] for a, b in zip(STATES, STATES[1:])) for c in range(len(by[STATES[0]])))
    return value, int(full)


def rewarder_checks(
    rewarder,
    states: Sequence[dict],
    metrics: Sequence[str],
    th: Thresholds,
    seed: int = 0,
    label: str = "",
    prefix: str = "rewarder",
) -> list[dict]:
    """Rewarder rows: the judge's ordering of the four states, the share of no-recommendation,
    rejection, interest and acceptance states whose reward passes tau as the engine calls the
    rewarder, and parse failures. ``metrics``: what this rewarder decides in this profile
    (``["Conv-SR"]`` for the evaluator of Conv-SR, ``[]`` for the RL reward only); ``prefix``
    names its checks (``rewarder_*``; ``simulator_reward_*`` for the grounded reward)."""
    kinds = np.asarray([s["kind"] for s in states])
    used = score_states(rewarder, states, [s["recommended"] for s in states], seed)
    reward, stop = _rewards(used), np.asarray([bool(r.stop) for r in used])
    judge = not getattr(rewarder, "uses_simulator", False)
    raw = reward.copy()
    if judge:  # the engine never asks the judge about a state without a movie: ask it here
        norec = [s for s in states if s["kind"] == "no_recommendation"]
        raw[kinds == "no_recommendation"] = _rewards(score_states(rewarder, norec, None, seed))
    by = {k: raw[kinds == k] for k in STATES}
    value, full = _state_order(by)
    model = label or model_name(getattr(rewarder, "llm", rewarder))
    n_case = int((kinds == "acceptance").sum())
    pf = sum(int(getattr(r, "parse_failures", 0) or 0) for r in used)
    tau = float(getattr(rewarder, "stop_threshold", float("nan")))
    means = ", ".join(f"{k} {_mean(v):.2f}" for k, v in by.items())
    out = rows(
        f"{prefix}_state_order",
        "rewarder",
        metrics,
        model,
        value,
        th.min_reward_order,
        True,
        n_case,
        pf,
        f"mean reward {means} (the judge's own answers); full order in {full} of {n_case} cases",
    )
    interested = (getattr(rewarder, "values", None) or {}).get("interested", float("nan"))
    for kind, thr, at_least in (
        ("no_recommendation", th.max_no_recommendation_pass_rate, False),
        ("rejection", th.max_rejection_pass_rate, False),
        # interest may pass only where its scale value is above tau (the authors' 0.8 > 0.7)
        ("interest", 1.0 if interested > tau else th.max_rejection_pass_rate, False),
        ("acceptance", th.min_acceptance_pass_rate, True),
    ):
        m = kinds == kind
        out += rows(
            f"{prefix}_{kind}_passes_tau",
            "rewarder",
            metrics,
            model,
            float(stop[m].mean()) if m.any() else float("nan"),
            thr,
            at_least,
            int(m.sum()),
            0,
            f"share of {kind} states whose reward passes tau={tau:g}, as the engine calls the rewarder "
            f"(mean reward {_mean(reward[m]):.2f})",
        )
    if judge:
        samples = getattr(rewarder, "samples", 1) if getattr(rewarder, "mode", "") == "sampled" else 1
        outs = len(states) * samples
        out += rows(
            f"{prefix}_parse_failures",
            "rewarder",
            metrics,
            model,
            pf / outs if outs else float("nan"),
            th.max_parse_failure_rate,
            False,
            outs,
            pf,
            f"{pf} of {outs} judgements unreadable",
        )
    return out


# --------------------------------------------------------------------------------------------
# 3. Simulated user: on- vs off-target offers, first message
# --------------------------------------------------------------------------------------------


def _offer_text(item: Item, follow_up: bool) -> str:
    if follow_up:
        return K.explanation_reply(item).sentences[1] + " Would you like to watch it?"
    return f"How about {item.name}? It is {K.genre_phrase(item.genres)} movie."


def offer_outcomes(
    simulator, cases: Sequence[tuple[SimTarget, Item]], opens: Sequence[str], exchanges: int, seed: int = 0
) -> tuple[list[bool], int]:
    """Offer each case's movie to a fresh user; when the user neither accepts nor rejects (asks for
    details, chats), the system answers with the movie's facts, up to ``exchanges`` offers in all.
    Returns (accepted per case, parse failures)."""
    states = [simulator.new_state(t) for t, _ in cases]
    hist = [[Turn(SEEKER, o)] for o in opens]
    accepted, open_ = [False] * len(cases), list(range(len(cases)))
    pf = 0
    for step in range(exchanges):
        if not open_:
            break
        for i in open_:
            hist[i].append(Turn(RECOMMENDER, _offer_text(cases[i][1], step > 0)))
        resp = simulator.respond(
            [states[i] for i in open_],
            [hist[i] for i in open_],
            [[cases[i][1].item_id] for i in open_],
            seed=seed + step,
        )
        still = []
        for i, r in zip(open_, resp):
            pf += int(r.parse_failures)
            hist[i].append(Turn(SEEKER, r.text))
            accepted[i] = bool(r.accepted)
            if not (r.accepted or r.end or r.action == "reject"):
                still.append(i)
        open_ = still
    return accepted, pf


def user_checks(
    simulator,
    cases: Sequence[tuple[SimTarget, Item, Item]],
    items: Sequence[Item],
    th: Thresholds,
    exchanges: int = 3,
    seed: int = 0,
    model: str = "",
) -> list[dict]:
    """Simulated-user rows: acceptance of on- vs off-target offers (guards Accept-SR and Conv-SR),
    and what its first message gives away (every target genre; a satisfying title)."""
    targets = [c[0] for c in cases]
    opened = simulator.open([simulator.new_state(t) for t in targets], seed=seed)
    opens = [o.text for o in opened]
    pf_open = sum(int(o.parse_failures) for o in opened)
    on, pf_on = offer_outcomes(simulator, [(t, a) for t, a, _ in cases], opens, exchanges, seed)
    off, pf_off = offer_outcomes(simulator, [(t, b) for t, _, b in cases], opens, exchanges, seed)
    model = model or model_name(getattr(simulator, "llm", None) or simulator)
    n = len(cases)
    r_on, r_off = (float(np.mean(x)) if n else float("nan") for x in (on, off))
    out = rows(
        "user_accepts_target_over_offtarget",
        "user",
        ["Accept-SR", "Conv-SR"],
        model,
        r_on - r_off,
        th.min_accept_gap,
        True,
        n,
        pf_on + pf_off,
        f"accepts {r_on:.2f} of on-target vs {r_off:.2f} of off-target offers (up to {exchanges} offers each)",
    )
    reveal = [
        bool(t.target_genres) and all(g.lower() in o.lower() for g in t.target_genres) for t, o in zip(targets, opens)
    ]
    index = TitleIndex(items)
    leak = [any(covers(index.items[i], t.target_genres) for i in index.find(o)) for t, o in zip(targets, opens)]
    out += rows(
        "user_opening_reveals_all_genres",
        "user",
        [],
        model,
        float(np.mean(reveal)) if n else float("nan"),
        th.max_genre_reveal_rate,
        False,
        n,
        pf_open,
        "first messages naming every target genre (the authors' user opens with a greeting)",
    )
    out += rows(
        "user_opening_names_satisfying_title",
        "user",
        [],
        model,
        float(np.mean(leak)) if n else float("nan"),
        th.max_opening_leak_rate,
        False,
        n,
        pf_open,
        "first messages naming a catalogue movie that covers the user's targets",
    )
    return out


# --------------------------------------------------------------------------------------------
# The instruments as the run builds them
# --------------------------------------------------------------------------------------------


def instruments(kb, llms: dict, engine: EngineConfig) -> dict:
    """The simulated user, the LLM Rewarder (the RL reward; the Conv-SR evaluator when
    ``REWARD: judge``) and the evaluation's turn reward, built by the very function the runs use
    (:func:`rso_lib.dialogue.systems.build_system`, on the PROMPT_ONLY system: no retriever, no
    Planner) from the same engine settings, so that the card checks what the tables used."""
    from rso_lib.dialogue.systems import build_system

    judged = build_system("PROMPT_ONLY", replace(engine, reward="judge"), kb=kb, llms=llms)
    ev = judged if engine.reward == "judge" else build_system("PROMPT_ONLY", engine, kb=kb, llms=llms)
    return {"simulator": judged.simulator, "llm_rewarder": judged.rewarder, "eval_rewarder": ev.rewarder}


# --------------------------------------------------------------------------------------------
# 4. Independence
# --------------------------------------------------------------------------------------------


def independence_rows(judge: str, rewarder: str, system: str) -> list[dict]:
    """A warning row (guards no metric) when the judge, the Rewarder and the evaluated system are
    one model (the paper's setting: self-preference cannot be ruled out)."""
    shared = float(judge == rewarder == system)
    return rows(
        "independence_one_model_plays_all",
        "independence",
        [],
        judge,
        shared,
        0.0,
        False,
        3,
        0,
        f"judge {judge}, rewarder {rewarder}, system (actor) {system}; 1 = one model judges, rewards and "
        "recommends (a warning: see the judge-swap rows for how much the rankings depend on it)",
    )


# --------------------------------------------------------------------------------------------
# The card on disk
# --------------------------------------------------------------------------------------------


def merge_card(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` without the (check, metric) rows that ``new`` holds, then ``new``: re-running a
    section of the card replaces its rows and keeps the others."""
    if old is None or not len(old):
        return card_frame(new.to_dict("records"))
    keys = set(zip(new["check"], new["metric"].fillna("")))
    keep = old[[(c, m) not in keys for c, m in zip(old["check"], old["metric"].fillna(""))]]
    return card_frame(pd.concat([keep, new], ignore_index=True).to_dict("records"))


def read_card(path: Path) -> pd.DataFrame:
    """A card CSV with its columns checked (a file naming other columns is an error naming it)."""
    df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a validity card (missing column(s) {missing})")
    df["metric"] = df["metric"].fillna("")
    df["passed"] = df["passed"].astype(str).str.lower().map({"true": True, "false": False})
    if df["passed"].isna().any():
        raise ValueError(f"{path}: column 'passed' must be True or False")
    return df[COLUMNS]


def card_markdown(
    card: pd.DataFrame, sections: dict[str, pd.DataFrame] | None = None, notes: Sequence[str] = ()
) -> str:
    """The card as Markdown: a verdict per metric, the rows by role, then extra tables."""
    lines = ["# Validity card", ""]
    bad = sorted({m for m, p in zip(card["metric"], card["passed"]) if m and not p})
    guarded = sorted({m for m in card["metric"] if m})
    ok = [m for m in guarded if m not in bad]
    lines += [
        f"Metrics whose checks all pass: {', '.join(ok) or 'none'}.",
        f"Metrics with a failed check (not valid at this scale): {', '.join(bad) or 'none'}.",
        "",
    ]
    show = card.copy()
    show["value"] = show["value"].map(lambda v: "nan" if _nan(v) else f"{v:.3f}")
    show["passed"] = show["passed"].map({True: "pass", False: "**FAIL**"})
    for role, g in show.groupby("role", sort=False):
        lines += [f"## {role}", "", g.drop(columns=["role"]).to_markdown(index=False), ""]
    for title, df in (sections or {}).items():
        lines += [f"## {title}", "", df.to_markdown(index=False, floatfmt=".3f") if len(df) else "(none)", ""]
    if notes:
        lines += ["## Notes", ""] + [f"* {n}" for n in notes] + [""]
    return "\n".join(lines)


def write_card(
    card: pd.DataFrame,
    profile: str,
    meta: dict,
    sections: dict[str, pd.DataFrame] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Path]:
    """Write ``results/<profile>/validity.{csv,md,meta.json}`` (the meta keeps ``notes`` so that a
    later section can rewrite the Markdown without losing them)."""
    from rso_lib.paths import results_dir
    from rso_lib.results import write_json

    out = results_dir(profile)
    paths = {"csv": out / "validity.csv", "md": out / "validity.md", "meta": out / "validity.meta.json"}
    card_frame(card.to_dict("records")).to_csv(paths["csv"], index=False)
    paths["md"].write_text(card_markdown(card, sections, notes))
    write_json({"table": "validity", **meta, "notes": list(notes)}, paths["meta"])
    return paths
