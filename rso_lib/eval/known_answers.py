"""Known-answer cases for the LLM instruments, built from the knowledge base: pairs of inputs whose
correct ordering is known before any model sees them. What the validity card
(:mod:`rso_lib.eval.validity`) and ``bench/judge_discrimination.py`` feed the judges.

Credibility (Cred), one movie per case, every reply a list of sentences (:class:`Reply`):

* **true vs false claim** (:func:`claim_pairs`): a sentence naming two of the movie's attributes;
  the false one changes exactly ONE of them (the hard case: the rest is still true) --
  ``director`` (another movie's), ``genre`` (one it does not have), ``year`` (moved by 3-15
  years), ``cast`` (one of two stars swapped for an actor not in it), ``plot`` (the plot of another
  movie of the same genre);
* **true vs vague** (:func:`vague_reply`): the same recommendation with nothing checkable in it
  ("a great movie that many people love"): a credibility judge must not rate it above true facts;
* **true vs invented** (:func:`invented_reply`): the true reply plus one fact the knowledge base
  does not hold (an award, a sequel, a box-office record);
* **order** (:meth:`Reply.reordered`): the same sentences, the claim first (no fact changes);
* **length** (:meth:`Reply.padded`): the same reply padded to twice its length with sentences that
  claim nothing about the movie.

Watching intention (WI and the three intentions of PRS):

* **love vs hate** (:func:`intention_pairs`): one movie, one factual recommendation, judged by a
  persona who loves (and wants) its main genre and by one who hates it and wants another;
* **explanation vs title only** (:func:`explanation_reply`, :func:`title_only_reply`): a truthful
  explanation of a movie of the persona's genre must raise the post-dialogue intention above a
  reply that only names the title.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rso_lib.data.records import Item

CLAIM_TYPES = ("director", "genre", "year", "cast", "plot")
#: Facts no knowledge-base record holds (ReDial's id2info has genres, plot, people, year only).
INVENTED_FACTS = (
    "It won the Academy Award for Best Picture.",
    "It was followed by a sequel, {title} 2, two years later.",
    "It was the highest-grossing film of its year.",
)
#: What the vague reply says in place of a claim: nothing the facts could confirm or deny.
VAGUE = "It is a great movie that many people love."
#: Sentences that claim nothing about any movie (length padding).
FILLER = (
    "Let me know what you think.",
    "I can suggest something else if you prefer.",
    "I am happy to help you find a movie for tonight.",
    "Feel free to ask me anything.",
)
OPENER = "You should watch {title}!"
CLOSER = "I think you will enjoy it."


@dataclass(frozen=True)
class Reply:
    """A recommender reply as sentences; ``claim`` indexes the sentence that carries the facts."""

    sentences: tuple[str, ...]
    claim: int = 1

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    def reordered(self) -> Reply:
        """The same sentences with the claim first (what changes is only where it stands)."""
        rest = tuple(s for i, s in enumerate(self.sentences) if i != self.claim)
        return Reply((self.sentences[self.claim],) + rest, 0)

    def padded(self, factor: float = 2.0) -> Reply:
        """The reply followed by :data:`FILLER` sentences until it is ``factor`` times as long."""
        out, k = list(self.sentences), 0
        while len(" ".join(out)) < factor * len(self.text):
            out.append(FILLER[k % len(FILLER)])
            k += 1
        return Reply(tuple(out), self.claim)


def usable(it: Item) -> bool:
    """The movie has every attribute a known-answer case needs."""
    return bool(it.year and it.genres and it.director and len(it.stars) >= 2 and len(it.plot) >= 40)


def usable_pool(items: Sequence[Item], minimum: int = 10) -> list[Item]:
    pool = [it for it in items if usable(it)]
    if len(pool) < minimum:
        raise ValueError(f"only {len(pool)} knowledge-base movies have year, genres, director, stars and plot")
    return pool


def genre_phrase(genres: Sequence[str]) -> str:
    g = " and ".join(genres[:2])
    return ("an " if g[:1] in "aeiou" else "a ") + g


def first_sentence(plot: str, min_chars: int = 60) -> str:
    """The plot up to the first ". " after ``min_chars`` characters (so "C.D. Bales ..." is not cut
    at the initials), or the whole plot."""
    plot = plot.strip()
    cut = plot.find(". ", min_chars)
    return (plot[:cut] if cut >= 0 else plot).rstrip(".") + "."


def _wrap(title: str, claim: str) -> Reply:
    return Reply((OPENER.format(title=title), claim, CLOSER), 1)


def _claim_templates(kind: str, it: Item, pool: list[Item], rng: random.Random, ctx: dict) -> tuple[str, str, str]:
    """(template with one ``{}``, true filler, false filler) of one claim type."""
    d, title = it.director[0], it.title
    if kind == "director":
        other = rng.choice([o for o in pool if not set(o.director) & set(it.director)]).director[0]
        return f"{title} is {genre_phrase(it.genres)} movie directed by {{}}.", d, other
    if kind == "genre":
        wrong = rng.choice([g for g in ctx["all_genres"] if g not in it.genres])
        return f"{title}, directed by {d}, is {{}} movie.", genre_phrase([it.genres[0]]), genre_phrase([wrong])
    if kind == "year":
        shift = rng.choice([-1, 1]) * rng.randint(3, 15)
        wrong = it.year + shift if 1915 <= it.year + shift <= 2019 else it.year - shift
        return f"{title} came out in {{}} and was directed by {d}.", str(it.year), str(wrong)
    if kind == "cast":
        wrong = rng.choice([s for o in pool for s in o.stars[:2] if s not in it.stars][:5000])
        return f"{title} stars {it.stars[0]} and {{}}.", it.stars[1], wrong
    # plot: another movie of the same genre, so the genre words still fit
    same = [o for o in ctx["by_genre"][it.genres[0]] if o.item_id != it.item_id and o.plot[:40] != it.plot[:40]]
    other = rng.choice(same)
    return f"{title} ({it.year}) is about this: {{}}", first_sentence(it.plot), first_sentence(other.plot)


def claim_pairs(items: Sequence[Item], n: int, seed: int = 0) -> list[dict]:
    """``n`` claim pairs ``{"type", "item", "true": Reply, "false": Reply}``, claim types in turn
    (see the module doc).

    Args:
        items: the knowledge base's movies (only :func:`usable` ones are drawn).
        n: number of pairs (at most the number of usable movies).
        seed: sampling seed.
    """
    rng = random.Random(seed)
    pool = usable_pool(items)
    by_genre: dict[str, list[Item]] = {}
    for it in pool:
        for g in it.genres:
            by_genre.setdefault(g, []).append(it)
    ctx = {"all_genres": sorted(by_genre), "by_genre": by_genre}
    pairs = []
    for i, it in enumerate(rng.sample(pool, min(n, len(pool)))):
        kind = CLAIM_TYPES[i % len(CLAIM_TYPES)]
        tpl, t, f = _claim_templates(kind, it, pool, rng, ctx)
        pairs.append(
            {"type": kind, "item": it, "true": _wrap(it.title, tpl.format(t)), "false": _wrap(it.title, tpl.format(f))}
        )
    return pairs


def vague_reply(item: Item, sentence: str = VAGUE) -> Reply:
    """The recommendation with nothing checkable in it (``sentence`` in place of the claim)."""
    return _wrap(item.title, sentence)


def invented_reply(true: Reply, item: Item, k: int, facts: Sequence[str] = INVENTED_FACTS) -> Reply:
    """``true`` plus the ``k``-th (cycled) invented, unsupported fact of ``facts`` (``{title}``
    filled in), before the closing line."""
    fact = facts[k % len(facts)].format(title=item.title)
    s = list(true.sentences)
    return Reply(tuple(s[:-1] + [fact, s[-1]]), true.claim)


def explanation_reply(item: Item) -> Reply:
    """A truthful explanation: genres, director, two stars and the plot's first sentence."""
    claim = (
        f"{item.title} is {genre_phrase(item.genres)} movie directed by {item.director[0]}, "
        f"starring {item.stars[0]} and {item.stars[1]}. {first_sentence(item.plot)}"
    )
    return Reply((f"You should watch {item.name}!", claim, CLOSER), 1)


def title_only_reply(item: Item) -> Reply:
    """A recommendation that names the title and says nothing about the movie."""
    return Reply((f"You should watch {item.name}.",), 0)


def intention_pairs(items: Sequence[Item], n: int, seed: int = 0) -> list[dict]:
    """``n`` WI pairs ``{"item", "love": (persona, genres), "hate": (persona, genres)}``: the same
    movie for a persona who loves its main genre vs one who hates it and wants another genre."""
    rng = random.Random(seed + 1)
    pool = usable_pool(items)
    all_genres = sorted({g for it in pool for g in it.genres})
    out = []
    for it in rng.sample(pool, min(n, len(pool))):
        g = it.genres[0]
        h = rng.choice([x for x in all_genres if x not in it.genres])
        love = (f"I love {g} movies more than anything; I watch every {g} movie I can find.", [g])
        hate = (f"I hate {g} movies and never watch them. I only enjoy {h} movies.", [h])
        out.append({"item": it, "love": love, "hate": hate})
    return out


def pairwise_accuracy(a, b) -> float:
    """Share of pairs with ``a > b`` (ties count 1/2; chance = 0.5); NaN without pairs. Pairs where
    either side is missing (None / NaN) are left out: the caller counts them."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    return float(np.mean((a > b) + 0.5 * (a == b))) if len(a) else float("nan")


def flip_rate(a, b, a2, b2) -> tuple[float, int]:
    """How often the verdict ``sign(a - b)`` changes to ``sign(a2 - b2)`` (a tie is a verdict of its
    own) and over how many pairs (those with all four values)."""
    x = np.asarray([a, b, a2, b2], float)
    ok = ~np.isnan(x).any(axis=0)
    v1, v2 = np.sign(x[0, ok] - x[1, ok]), np.sign(x[2, ok] - x[3, ok])
    n = int(ok.sum())
    return (float(np.mean(v1 != v2)) if n else float("nan")), n
