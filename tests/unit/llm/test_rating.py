"""One rule reads a 1-5 rating from free text, for the Rewarder (Eq. 9) and the evaluation judges."""

import pytest

from rso_lib.eval import judges
from rso_lib.experts import rewarder
from rso_lib.llm.protocol import parse_rating


@pytest.mark.parametrize(
    "text,want",
    [
        ("Rating: 4", 4),
        ("rating=2 because it is dull", 2),
        ("rating:5 because", 5),
        ("**Rating:** 1", 1),
        ("I'd say 3 out of 5", 3),
        ("3/5", 3),
        (" 5 ", 5),
        ("4\n\nLikely answer: it", 4),
        ("Rating: 7", None),
        ("Rating: 4.5", None),
        ("4.5", None),
        ("Rating: 45", None),
        ("10/10", None),
        ("50 (thirty-five)", None),
        ("I like it", None),
        ("great!", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_rating_one_rule(text, want):
    assert parse_rating(text) == want


def test_judges_use_the_shared_rating_parser_and_the_rewarder_its_acceptance_parser():
    """The judges read 1-5 ratings with the shared function, not a copy of their own; the Rewarder
    answers the authors' acceptance question (five named levels), so it has no rating parser."""
    assert judges.parse_rating is parse_rating
    assert not hasattr(rewarder, "parse_rating")
    assert rewarder.parse_acceptance("Answer: 5") == "accepted"
