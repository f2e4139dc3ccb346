"""The paper's evaluation metrics (section IV-C, following PC-CRS's protocol) as pure functions.

Nothing here calls a model: the judged quantities (watching intentions, truthfulness ratings) come
from :mod:`rso_lib.eval.judges`, and this module turns them -- plus what the transcripts record
(acceptance, replies, recommended items, retrieval rankings) -- into numbers.

Per-dialogue metrics
--------------------
* **WI** -- watching intention 1-5 after the dialogue (the judge role-plays the persona).
* **PRS** -- persuasiveness, :func:`persuasiveness`:
  ``PRS = 1 - (i_true - i_post) / (i_true - i_pre)``; ``i_pre`` from the title only, ``i_post``
  after the dialogue, ``i_true`` from the full item record. Dialogues with ``i_post > i_true``
  (the system oversold the item) and dialogues with ``i_pre == i_true`` (PRS undefined; with
  expected ratings: closer than ``min_gap``) are not
  averaged; both counts are reported.
* **Cred** -- credibility 1-5: mean consistency rating of the system turns that present an item,
  judged against that item's knowledge-base facts, :func:`credibility`; a dialogue without a judged
  turn counts 0 (the authors' scripts) or is left out, :func:`dialogue_credibility`.
* **Conv-SR** -- the paper's: 1 if the evaluator's acceptance reward of the final state passed
  tau (Eq. 9's stop rule; "based on the reward score assigned by the LLM-based evaluator"),
  :func:`conversion_success`. **Accept-SR** -- the same function on the simulator's acceptance
  (ours, reported apart).
* **Rec-SR** -- 1 if the recommended item's genres cover the target genres, :func:`rec_success`.
* **Recall@k** -- 1 if a valid target is in the top ``k`` of the final retrieval ranking,
  :func:`recall_at_k`.

Dist-2 (two definitions, parameter ``DIST2``)
---------------------------------------------
* ``corpus`` -- distinct bigrams / all bigrams over all system replies of one system,
  :func:`distinct_n`;
* ``per_response`` -- the mean over replies of each reply's own distinct / all bigrams,
  :func:`distinct_n_per_response`. The paper's values (0.99+ for RSO and BARCOR) are only
  reachable this way: over a whole corpus of movie recommendations, bigrams such as "you might"
  recur, and a corpus ratio of 0.99 would need almost no bigram said twice in 100+ dialogues.

Aggregation
-----------
:func:`summarise` gives mean, n and a seeded 95% percentile-bootstrap CI of per-dialogue values;
missing values (``None`` / NaN: a judge reply that could not be parsed, a dialogue without a
recommendation) are never filled in: they are counted in ``n_missing``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------------------------
# Dist-n
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens (``"Don't stop!"`` -> ``["don't", "stop", "!"]``)."""
    return _TOKEN.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """Contiguous n-grams of one token list (none if it is shorter than ``n``)."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


@dataclass(frozen=True)
class DistinctN:
    value: float  # distinct / total; NaN if there is no n-gram at all
    distinct: int
    total: int


def distinct_n(texts: Iterable[str], n: int = 2) -> DistinctN:
    """Dist-n over a corpus of replies: distinct n-grams / all n-grams.

    N-grams never cross reply boundaries (each reply is tokenised on its own). An empty corpus
    gives NaN rather than 0, so that "no replies" is not mistaken for "no diversity".

    Args:
        texts: the system replies of one system (all dialogues, all turns).
        n: n-gram order (default 2 = Dist-2).
    """
    counts: set[tuple[str, ...]] = set()
    total = 0
    for t in texts:
        grams = ngrams(tokenize(t), n)
        total += len(grams)
        counts.update(grams)
    value = len(counts) / total if total else float("nan")
    return DistinctN(value=value, distinct=len(counts), total=total)


@dataclass(frozen=True)
class DistinctPerResponse:
    value: float  # mean of the per-reply ratios; NaN if no reply has an n-gram
    responses: int  # replies averaged (those with at least one n-gram)
    skipped: int  # replies too short to have an n-gram (not averaged, counted)


def distinct_n_per_response(texts: Iterable[str], n: int = 2) -> DistinctPerResponse:
    """Dist-n as the mean over replies of (distinct n-grams / n-grams) within each reply.

    A reply with no n-gram (fewer than ``n`` tokens) has no ratio: it is skipped and counted."""
    ratios, skipped = [], 0
    for t in texts:
        grams = ngrams(tokenize(t), n)
        if grams:
            ratios.append(len(set(grams)) / len(grams))
        else:
            skipped += 1
    value = float(np.mean(ratios)) if ratios else float("nan")
    return DistinctPerResponse(value=value, responses=len(ratios), skipped=skipped)


DIST2_DEFINITIONS = ("per_response", "corpus")


def dist2(texts: Sequence[str], definition: str = "per_response") -> float:
    """Dist-2 of one system's replies by the named definition (``"per_response"`` | ``"corpus"``)."""
    if definition == "corpus":
        return distinct_n(texts, 2).value
    if definition == "per_response":
        return distinct_n_per_response(texts, 2).value
    raise ValueError(f"Dist-2 definition must be one of {DIST2_DEFINITIONS}, got {definition!r}")


# --------------------------------------------------------------------------------------------
# PRS (persuasiveness)
# --------------------------------------------------------------------------------------------

PRS_OK = "ok"
PRS_OVER = "over"  # i_post > i_true: counted apart
PRS_EXCLUDED = "excluded"  # i_pre == i_true: PRS undefined
PRS_MISSING = "missing"  # one of the three intentions could not be judged


@dataclass(frozen=True)
class PRSCase:
    status: str  # PRS_OK | PRS_OVER | PRS_EXCLUDED | PRS_MISSING
    value: float | None  # the PRS of this dialogue when status == PRS_OK


PRS_INTENTIONS = ("whole", "expected")


def whole_rating(x: float) -> int:
    """The whole 1-5 rating nearest to ``x`` (halves round up, not to even: 3.5 -> 4)."""
    return int(math.floor(x + 0.5))


def persuasiveness(
    i_pre: float | None,
    i_post: float | None,
    i_true: float | None,
    min_gap: float = 0.5,
    intentions: str = "whole",
    tol: float = 1e-9,
) -> PRSCase:
    """Paper section IV-C: ``PRS = 1 - (i_true - i_post) / (i_true - i_pre)``.

    PRS = 1 when the dialogue moved the user's intention all the way to the one the full item
    record warrants, 0 when it did not move it at all (negative when it moved it away).

    Args:
        i_pre: watching intention (1-5) from the title only.
        i_post: watching intention after the dialogue.
        i_true: watching intention from the full item record.
        min_gap: ``i_pre`` and ``i_true`` closer than this count as equal (default 0.5). With
            whole ratings this is exactly ``i_pre == i_true`` (the authors' rule); with expected
            ratings it keeps a near-zero denominator from blowing PRS up to arbitrary values.
        intentions: ``"whole"`` (default): each intention is first rounded to the nearest whole
            rating, the values the authors' greedy-decoded "Watching Intention: N" judgements
            produce, so ``i_post > i_true`` and ``i_pre == i_true`` are decided on the rating
            scale as theirs are. A no-op for reasoned judgements. ``"expected"``: the judged
            values as they are (score mode gives expected ratings; a post-dialogue intention
            0.1 above the true one is then "over" and the dialogue drops out).
        tol: float tolerance of ``i_post > i_true``.

    Returns:
        PRSCase: ``over`` if ``i_post > i_true`` (checked first, as in PC-CRS), ``excluded`` if
        ``|i_true - i_pre| < min_gap``, ``missing`` if any input is None/NaN, else ``ok``.
    """
    if intentions not in PRS_INTENTIONS:
        raise ValueError(f"PRS intentions must be one of {PRS_INTENTIONS}, got {intentions!r}")
    vals = (i_pre, i_post, i_true)
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals):
        return PRSCase(PRS_MISSING, None)
    if intentions == "whole":
        i_pre, i_post, i_true = (whole_rating(v) for v in vals)
    if i_post > i_true + tol:
        return PRSCase(PRS_OVER, None)
    if abs(i_true - i_pre) < max(min_gap, tol):
        return PRSCase(PRS_EXCLUDED, None)
    return PRSCase(PRS_OK, 1.0 - (i_true - i_post) / (i_true - i_pre))


@dataclass(frozen=True)
class PRSSummary:
    mean: float  # over the "ok" dialogues; NaN if there are none
    n: int  # dialogues averaged
    n_over: int  # i_post > i_true (counted apart)
    n_excluded: int  # i_pre == i_true
    n_missing: int  # an intention could not be judged
    ci_low: float
    ci_high: float


def summarise_prs(cases: Sequence[PRSCase], seed: int = 0, n_boot: int = 1000) -> PRSSummary:
    """Mean PRS over the ``ok`` dialogues with a bootstrap CI, and the three other counts."""
    ok = [c.value for c in cases if c.status == PRS_OK]
    s = summarise(ok, seed=seed, n_boot=n_boot)
    return PRSSummary(
        mean=s.mean,
        n=s.n,
        ci_low=s.ci_low,
        ci_high=s.ci_high,
        n_over=sum(c.status == PRS_OVER for c in cases),
        n_excluded=sum(c.status == PRS_EXCLUDED for c in cases),
        n_missing=sum(c.status == PRS_MISSING for c in cases),
    )


# --------------------------------------------------------------------------------------------
# Cred, Conv-SR, Rec-SR, Recall@k (per dialogue)
# --------------------------------------------------------------------------------------------


def credibility(turn_scores: Sequence[float | None]) -> float | None:
    """Credibility of one dialogue: the mean truthfulness (1-5) of its judged system turns.

    ``None`` entries (a judgement that could not be parsed) are left out of the mean -- the
    caller counts them; a dialogue with no judged turn gives ``None`` (not a score of 0)."""
    vals = [float(s) for s in turn_scores if s is not None and not math.isnan(float(s))]
    return sum(vals) / len(vals) if vals else None


CRED_NO_ITEM_RULES = ("zero", "exclude")


def dialogue_credibility(turn_scores: Sequence[float | None], no_item: str = "zero") -> tuple[float | None, str]:
    """Credibility of one dialogue and the rule that gave it, as the authors' evaluation scripts
    count it: the mean of its judged turns (unparsed turns left out); a dialogue with no judged
    turn -- no presented item, or every judgement unreadable -- counts 0 in the average
    (``no_item="zero"``, the authors) or is left out (``"exclude"``: then the mean is over a
    subset of the dialogues, which tables must say).

    Returns:
        (value, rule): rule ``"judged"`` | ``"no_item"`` | ``"unparsed"`` (the latter two with
        value 0.0 under ``"zero"``, None under ``"exclude"``).
    """
    if no_item not in CRED_NO_ITEM_RULES:
        raise ValueError(f"no_item must be one of {CRED_NO_ITEM_RULES}, got {no_item!r}")
    v = credibility(turn_scores)
    if v is not None:
        return v, "judged"
    rule = "unparsed" if len(turn_scores) else "no_item"
    return (0.0 if no_item == "zero" else None), rule


def conversion_success(success: bool) -> float:
    """A success rate's per-dialogue value: 1.0 if the dialogue succeeded, else 0.0 (Conv-SR: the
    evaluator's reward passed tau; Accept-SR: the simulated user accepted)."""
    return 1.0 if success else 0.0


def rec_success(item_genres: Sequence[str] | None, target_genres: Sequence[str]) -> float:
    """Rec-SR of one dialogue: 1.0 iff the recommended item's genres cover every target genre
    (case-insensitive). No recommended item (``None``) or an empty target -> 0.0."""
    if item_genres is None or not target_genres:
        return 0.0
    have = {g.strip().lower() for g in item_genres}
    return 1.0 if all(g.strip().lower() in have for g in target_genres) else 0.0


def recall_at_k(ranking: Sequence[str] | None, is_valid: Callable[[str], bool] | set[str], k: int) -> float:
    """Recall@k of one dialogue: 1.0 iff one of the first ``k`` items of the final retrieval
    ranking is a valid target (its genres cover the target genres).

    Args:
        ranking: item ids, best first (the retriever's full ranking of the last retrieval).
        is_valid: a predicate on item ids, or the set of valid target ids.
        k: cut-off (1 or 5 in the paper).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not ranking:
        return 0.0
    pred = is_valid.__contains__ if isinstance(is_valid, (set, frozenset)) else is_valid
    return 1.0 if any(pred(i) for i in list(ranking)[:k]) else 0.0


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    mean: float  # NaN if no value
    n: int  # values used
    n_missing: int  # None / NaN inputs left out
    ci_low: float  # 95% percentile bootstrap (NaN if n < 2)
    ci_high: float


def bootstrap_ci(
    values: Sequence[float], seed: int = 0, n_boot: int = 1000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean. Seeded: the same values and seed give the same CI.

    Resamples ``n_boot`` times with replacement: ``idx [n_boot, n]`` -> means ``[n_boot]``.
    Fewer than 2 values -> (NaN, NaN): no interval can be claimed."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    means = x[idx].mean(axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return (float(lo), float(hi))


def summarise(values: Iterable[float | None], seed: int = 0, n_boot: int = 1000) -> Summary:
    """Mean, n, missing count and 95% bootstrap CI of per-dialogue values (None/NaN = missing)."""
    vals, missing = [], 0
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            missing += 1
        else:
            vals.append(float(v))
    mean = float(np.mean(vals)) if vals else float("nan")
    lo, hi = bootstrap_ci(vals, seed=seed, n_boot=n_boot)
    return Summary(mean=mean, n=len(vals), n_missing=missing, ci_low=lo, ci_high=hi)
