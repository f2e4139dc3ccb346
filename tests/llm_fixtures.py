"""Shared helpers for the LLM backend tests in tests/unit/llm/ and tests/integration/ (not a conftest:
imported explicitly).

Models come from :func:`rso_lib.llm.build_llm`, which is memoised per process, so every test
module that asks for the embedded model shares one loaded copy."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

RATING_PROMPT = [
    {
        "role": "system",
        "content": "You rate how much a user liked a movie recommendation, from 1 (hated it) to 5 (loved it).",
    },
    {
        "role": "user",
        "content": "Recommender: You should watch Toy Story, a funny animated film.\n"
        "User: Oh I love animated comedies, thank you so much, I will watch it tonight!\n"
        "How much did the user like the recommendation? Answer with one number from 1 to 5.",
    },
]
RATINGS = ["1", "2", "3", "4", "5"]


def embedded():
    from rso_lib.llm import build_llm

    return build_llm({"backend": "embedded"})


def convs(n: int) -> list[list[dict]]:
    topics = [
        "a rainy day",
        "a family night",
        "fans of space",
        "a road trip",
        "a scary evening",
        "learning history",
        "a first date",
        "kids who like animals",
    ]
    return [
        [{"role": "user", "content": f"Name one movie for {topics[i % len(topics)]}. Answer in one sentence."}]
        for i in range(n)
    ]


TITLE_OPTIONS = ["Toy Story", "The Matrix", "Up", "Finding Nemo and friends"]


def scores_by_both_paths(llm):
    """Multi-token option log-probs of three conversations, by the shared-context path and by the
    one-pass-per-option reference path: ``(shared, full)``, each ``[3, 4]``."""
    batch = [RATING_PROMPT, convs(1)[0], convs(3)[2]]
    shared = llm.score_options_raw(batch, TITLE_OPTIONS, prefix="Title: ")
    llm.shared_context_scoring = False
    try:
        full = llm.score_options_raw(batch, TITLE_OPTIONS, prefix="Title: ")
    finally:
        llm.shared_context_scoring = True
    return shared, full
