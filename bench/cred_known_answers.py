"""Does the Cred judge rank a true factual reply above a vague one, above the same reply with an
invented fact, and above a false one? One rubric at a time, on the validity card's cases.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 RSO_THREADS=1 .venv/bin/python bench/cred_known_answers.py \
        [--judge embedded:qwen2.5-1.5b] [--pairs 10] [--seeds 0,1] [--rubrics current,strict]

Per movie four replies from :mod:`rso_lib.eval.known_answers` (the same builders the validity
card's ``cred_checks`` uses): the true claim reply, the false one (one attribute changed), the
vague one ("It is a great movie that many people love.") and the true one plus an invented fact
(award, sequel, box office). Each is judged by :func:`rso_lib.eval.judges.judge_cred` in score mode
(``--mode``: another procedure, e.g. ``reasoned``, ~100x slower on a CPU)
with the prompt named by ``--rubrics``: ``current`` is the one in ``rso_lib/eval/judges.py``;
the others (:data:`VARIANTS`) are what was measured against it and kept so the measurement can
be rerun: other rubric wordings within PC-CRS's levels (:data:`CANDIDATES`: ``strict``, ``count``,
``match``, ``grounded``), the reply before the facts (``current_reply_first``, PC-CRS's order), and
worked examples on a made-up movie before the request (``fewshot``), and the levels asked the other
way round ("how much is NOT backed", score 6 - rating: ``inverted``). ``--seeds`` draws different movies: ``--tuned-seed`` (0) is the set the
rubrics were tuned on, with the card's own vague and invented sentences; any other seed is held
out: other movies and other vague / invented sentences (:data:`HELDOUT_VAGUE`,
:data:`HELDOUT_INVENTED`).

Printed per rubric and seed: mean score of each reply kind and the pairwise accuracies true >
vague, true > invented, true > false (ties 1/2; chance 0.5). Last line
``cred_min_known_answer_accuracy=X``: the lowest of the three accuracies of the first rubric over
all seeds (the validity card asks >= 0.9 of each).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from _record import add_out_argument, recorded  # noqa: E402  (--out: a provenance file)
from judge_discrimination import configured_judge, label, parse_model  # noqa: E402

from rso_lib.data.kb import load_kb  # noqa: E402
from rso_lib.data.records import Item  # noqa: E402
from rso_lib.eval import judges as J  # noqa: E402
from rso_lib.eval import known_answers as K  # noqa: E402

KINDS = ("true", "false", "vague", "invented")

#: Candidate rubrics measured against ``current`` (our wording of PC-CRS's / the authors' levels).
CANDIDATES: dict[str, str] = {
    # PC-CRS's "every claim must be supported", read literally: praise and popularity are claims
    # too, and the facts do not show them
    "strict": (
        "How well do the facts above support what the recommender says about the movie? Every "
        "statement about the movie counts, praise and popularity too (the facts hold no ratings, "
        "awards, sales or sequels).\n"
        "5 = it gives specific details of the movie (story, people, genres, year) and the facts show "
        "every one of them\n"
        "4 = the facts show its details or they follow from them; one small point is not there\n"
        "3 = the facts show some of what it says; other statements are not in them\n"
        "2 = the facts show little or nothing of what it says: it only praises the movie, or states "
        "things the facts do not hold\n"
        "1 = something it says contradicts the facts"
    ),
    # the levels as a count of checked details: no checkable detail cannot reach the top
    "count": (
        "Check each specific detail the recommender gives about the movie (genre, director, actors, "
        "year, story, awards, sales, sequels ...) against the facts above. Praise and opinions are "
        "not details.\n"
        "5 = two or more details, and the facts confirm every one\n"
        "4 = one detail the facts confirm, and nothing the facts do not hold\n"
        "3 = no specific detail at all: only the title, praise or opinions\n"
        "2 = a detail the facts do not hold (not mentioned in them)\n"
        "1 = a detail the facts contradict"
    ),
    # PC-CRS's top level is an exact match with the source: a sentence that could be said of any
    # movie matches none of it
    "match": (
        "How closely does what the recommender says about the movie match the facts above?\n"
        "1 = something it says conflicts with the facts\n"
        "2 = most of what it states about the movie is not in the facts\n"
        "3 = it says nothing that the facts could confirm: the title, praise or opinions that could "
        "be said of any movie; or only part of it is in the facts\n"
        "4 = it states details of this movie that the facts confirm or imply; a small one is not there\n"
        "5 = it states details of this movie (story, people, genres, year) and the facts confirm "
        "every one"
    ),
    # the paper's Credibility strategy: credible = factual information about the item's attributes
    "grounded": (
        "How credible is the recommender: does it give factual information about the movie's "
        "attributes (story, people, genres, year), and do the facts above confirm it?\n"
        "1 = it gives information the facts contradict\n"
        "2 = it gives information about the movie that is not in the facts\n"
        "3 = it gives no factual information about the movie: only the title, praise or opinions\n"
        "4 = it gives factual information that the facts confirm or imply, with a small unchecked point\n"
        "5 = it gives factual information about the movie's attributes and the facts confirm all of it"
    ),
}
#: The same levels asked the other way round (how much is NOT backed); the score is 6 - rating.
INVERTED_RUBRIC = (
    "How much of what the recommender says about the movie is NOT backed by the facts above?\n"
    "1 = nothing: it states specific details of the movie (story, people, genres, year) and the facts "
    "show every one of them\n"
    "2 = little: its details are in the facts or follow from them; one small point is not there\n"
    "3 = part: it says nothing the facts could show (only the title, praise or opinions), or only some "
    "of its details are in the facts\n"
    "4 = most: most of what it states about the movie is not in the facts\n"
    "5 = worst: something it says contradicts the facts"
)

_JUDGES_MESSAGES = J.credibility_messages


def reply_first_messages(reply: str, item, max_facts_chars: int = 1200, mode: str = "score"):
    """The request of judges.py with the reply first, then the facts, then the rubric (PC-CRS's
    and the authors' order)."""
    msgs = _JUDGES_MESSAGES(reply, item, max_facts_chars, mode)
    if "\n\nThe recommender said:\n" not in msgs[1]["content"]:
        raise ValueError("rso_lib.eval.judges.credibility_messages no longer has 'The recommender said:'")
    facts_part, rest = msgs[1]["content"].split("\n\nThe recommender said:\n", 1)
    said, tail = rest.split("\n\n", 1)
    msgs[1] = {"role": "user", "content": f"The recommender said:\n{said}\n\n{facts_part}\n\n{tail}"}
    return msgs


#: A made-up movie for worked examples (in no knowledge base, so no test movie is shown).
EXAMPLE_ITEM = Item(
    "example",
    "The Lighthouse Keeper",
    1994,
    ["drama", "mystery"],
    plot="A retired sailor takes a job on a remote island and finds the letters of the keeper before him.",
    director=["Anna Berg"],
    stars=["Tom Hale", "Mira Solis"],
)
#: (reply about EXAMPLE_ITEM, its rating under judges.py's rubric): supported details; nothing
#: checkable; supported details plus one the facts do not hold; a contradiction
EXAMPLES = (
    ("The Lighthouse Keeper is a mystery directed by Anna Berg, with Tom Hale as a retired sailor.", 5),
    ("The Lighthouse Keeper is simply wonderful, one of my favourites.", 3),
    ("The Lighthouse Keeper, a 1994 drama starring Mira Solis, was shot in Iceland.", 3),
    ("The Lighthouse Keeper is a comedy directed by Tom Hale.", 1),
)


def few_shot_messages(reply: str, item, max_facts_chars: int = 1200, mode: str = "score"):
    """The request of judges.py after :data:`EXAMPLES`, each a request and the answer ``Rating: N``."""
    msgs = _JUDGES_MESSAGES(reply, item, max_facts_chars, mode)
    shots = []
    for text, n in EXAMPLES:
        shots += [_JUDGES_MESSAGES(text, EXAMPLE_ITEM, max_facts_chars, mode)[1]]
        shots += [{"role": "assistant", "content": f"{J.RATING_PREFIX}{n}"}]
    return [msgs[0], *shots, msgs[1]]


#: Variants besides ``current``: name -> (rubric, None = judges.py's; message builder)
VARIANTS = {
    "current_reply_first": (None, reply_first_messages),
    "fewshot": (None, few_shot_messages),
    "inverted": (INVERTED_RUBRIC, _JUDGES_MESSAGES),
    **{name: (rubric, _JUDGES_MESSAGES) for name, rubric in CANDIDATES.items()},
}


#: Held-out wording of the vague and invented replies (seeds after the first): a rubric that only
#: learnt the card's sentences should fail here.
HELDOUT_VAGUE = (
    "Honestly, it is one of the best films out there and everyone I know enjoyed it.",
    "It is a really fun watch, a true classic.",
    "Critics and audiences both adore it.",
)
HELDOUT_INVENTED = (
    "It was filmed entirely in New Zealand.",
    "It is based on a best-selling novel of the same name.",
    "It won the Palme d'Or at Cannes.",
)


def cases(items, n: int, seed: int, heldout: bool = False) -> list[J.CredCase]:
    """Four Cred cases per movie, in the order of :data:`KINDS` (``heldout``: the vague and
    invented sentences of :data:`HELDOUT_VAGUE` / :data:`HELDOUT_INVENTED`)."""
    out = []
    for k, p in enumerate(K.claim_pairs(items, n, seed)):
        it, true = p["item"], p["true"]
        vague = K.vague_reply(it, HELDOUT_VAGUE[k % len(HELDOUT_VAGUE)]) if heldout else K.vague_reply(it)
        invented = K.invented_reply(true, it, k, HELDOUT_INVENTED) if heldout else K.invented_reply(true, it, k)
        out += [J.CredCase(r.text, it) for r in (true, p["false"], vague, invented)]
    return out


def judge(llm, cs: list[J.CredCase], name: str, mode: str = "score") -> np.ndarray:
    """Scores of ``cs`` with the variant ``name`` (``current``: judges.py as it is), shape
    [movies, 4]."""
    saved = J._CRED_RUBRIC, J.credibility_messages
    if name != "current":
        rubric, J.credibility_messages = VARIANTS[name]
        J._CRED_RUBRIC = rubric or saved[0]
    try:
        out = J.judge_cred(llm, cs, mode=mode, cfg=J.JudgeConfig(batch_size=4))
    finally:
        J._CRED_RUBRIC, J.credibility_messages = saved
    v = np.asarray([np.nan if x is None else x for x in out.scores], float).reshape(-1, len(KINDS))
    return 6 - v if name == "inverted" else v


def summary(v: np.ndarray) -> dict:
    t = v[:, 0]
    res = {f"{k}_mean": float(np.nanmean(v[:, i])) for i, k in enumerate(KINDS)}
    res["unreadable"] = int(np.isnan(v).sum())
    res.update({f"acc_true_over_{k}": K.pairwise_accuracy(t, v[:, i]) for i, k in enumerate(KINDS) if i})
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judge", default=None, help="backend:model (default: the cpu profile's judge role)")
    ap.add_argument("--pairs", type=int, default=10, help="movies per seed (4 judgements each; default 10)")
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    ap.add_argument("--mode", default="score", choices=J.JUDGE_MODES, help="judging procedure (default score)")
    ap.add_argument("--tuned-seed", type=int, default=0, help="the seed rubrics were tuned on (default 0)")
    ap.add_argument("--rubrics", default="current", help=f"comma-separated: current,{','.join(VARIANTS)}")
    ap.add_argument("--data-dir", default=os.environ.get("RSO_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    add_out_argument(ap)
    args = ap.parse_args(argv)
    with recorded(args.out):
        run_bench(args)


def run_bench(args: argparse.Namespace) -> None:
    """The bench itself; what it prints is the measurement (``main`` records it with ``--out``)."""
    names = [r for r in args.rubrics.split(",") if r]
    bad = [r for r in names if r != "current" and r not in VARIANTS]
    if bad:
        raise SystemExit(f"--rubrics: unknown {bad}; known: current, {', '.join(VARIANTS)}")

    from rso_lib.llm import build_llm

    items = list(load_kb(args.data_dir))
    spec = parse_model(args.judge) if args.judge else configured_judge("cpu")
    llm = build_llm(spec)
    seeds = [int(s) for s in args.seeds.split(",")]
    sets = {s: cases(items, args.pairs, s, heldout=s != args.tuned_seed) for s in seeds}
    print(f"judge {label(spec)} ({llm.model_id}), {args.mode} mode; {args.pairs} movies per seed, seeds {seeds}")
    results: dict = {}
    for name in names:
        for s in seeds:
            t0 = time.perf_counter()
            r = summary(judge(llm, sets[s], name, args.mode))
            r["s_per_judgement"] = (time.perf_counter() - t0) / len(sets[s])
            results[f"{name}@seed{s}"] = r
            print(f"{name:12s} seed {s}: " + json.dumps({k: round(v, 3) for k, v in r.items()}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    first = [results[f"{names[0]}@seed{s}"] for s in seeds]
    worst = min(r[f"acc_true_over_{k}"] for r in first for k in KINDS[1:])
    print(f"headline: rubric {names[0]}, seeds {seeds}, worst of true > vague and true > invented")
    print(f"cred_min_known_answer_accuracy={worst:.3f}")


if __name__ == "__main__":
    main()
