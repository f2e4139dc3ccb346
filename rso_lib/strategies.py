"""Table I of the paper: the 14 INSPIRED recommendation strategies.

The INSPIRED TSVs spell labels in snake_case (``personal_opinion``); the RSO strategy splits spell
them in Title Case (``Personal Opinion``), and the seeker's turns carry ``"NaN"``. Everything in
the kit uses the snake_case name as the canonical id and the index in :data:`STRATEGIES` as the
class id of the Planner's head.
"""

from __future__ import annotations

# (id, description). Descriptions paraphrase the INSPIRED paper's definitions (Hayati et al., 2020);
# the Actor receives the description, not just the name, so keep them short and instructive.
STRATEGY_TABLE: tuple[tuple[str, str], ...] = (
    (
        "credibility",
        "Give factual information about the movie (plot, cast, director, awards) to show expertise and build trust.",
    ),
    ("personal_opinion", "Share your own opinion of the movie, such as what you liked about it."),
    ("encouragement", "Praise the user's taste and encourage them to watch the recommended movie."),
    ("acknowledgment", "Acknowledge what the user just said and show that you are listening."),
    ("similarity", "Say that you share the user's preference or feeling to build rapport."),
    ("offer_help", "Offer to help the user find a movie and say you are happy to do so."),
    ("personal_experience", "Tell a short personal experience related to the movie or the genre."),
    ("self_modeling", "Show the behaviour you hope the user adopts, e.g. say you would watch it yourself."),
    ("transparency", "Be open about your intentions or your reasoning for the recommendation."),
    ("opinion_inquiry", "Ask the user for their opinion of a movie, genre, actor or aspect."),
    ("experience_inquiry", "Ask about the user's past experiences with movies, e.g. whether they have seen one."),
    ("rephrase_preference", "Restate the user's preference in your own words to check your understanding."),
    ("preference_confirmation", "Ask the user to confirm or refine a preference you have inferred."),
    ("no_strategy", "Reply naturally without any particular persuasive strategy."),
)

STRATEGIES: tuple[str, ...] = tuple(s for s, _ in STRATEGY_TABLE)
DESCRIPTIONS: dict[str, str] = dict(STRATEGY_TABLE)
STRATEGY_TO_ID: dict[str, int] = {s: i for i, s in enumerate(STRATEGIES)}
NUM_STRATEGIES = len(STRATEGIES)
assert NUM_STRATEGIES == 14


#: Table I's three categories. INSPIRED's ``preference_confirmation`` (not in the paper's table)
#: asks the user to confirm a preference, so it sits with the inquiries.
INQUIRY_STRATEGIES: frozenset[str] = frozenset(
    {"opinion_inquiry", "experience_inquiry", "rephrase_preference", "preference_confirmation"}
)
CATEGORIES: dict[str, str] = {
    s: "preference elicitation inquiry"
    if s in INQUIRY_STRATEGIES
    else "non-strategy"
    if s == "no_strategy"
    else "sociable"
    for s in STRATEGIES
}


class UnknownStrategyError(ValueError):
    """A label that is none of the 14 strategies."""


def normalise_strategy(label: str) -> str:
    """Map any spelling of a strategy label to its canonical snake_case id.

    >>> normalise_strategy("Personal Opinion")
    'personal_opinion'
    >>> normalise_strategy("acknowledgement")
    'acknowledgment'

    Raises :class:`UnknownStrategyError` for anything else (including the seeker's ``"NaN"``:
    callers decide whether a missing label is allowed).
    """
    key = str(label).strip().lower().replace("-", " ").replace("_", " ")
    key = "_".join(key.split())
    key = {"acknowledgement": "acknowledgment"}.get(key, key)
    if key not in STRATEGY_TO_ID:
        raise UnknownStrategyError(f"unknown strategy label {label!r}; expected one of {', '.join(STRATEGIES)}")
    return key


def display_name(strategy: str) -> str:
    """``personal_opinion`` -> ``Personal Opinion`` (for tables and figures)."""
    return strategy.replace("_", " ").title()
