"""Two checks of the evaluation judges on a real model (issue 20, items 4 and 5).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/judge_protocol_checks.py \
        [--judge embedded:qwen2.5-1.5b] [--pairs 10] [--prs-cases 6] [--reasoned 0] [--json out.json]

1. **Cred: a vague reply must not beat true facts.** For each claim pair of
   ``bench/judge_discrimination.py`` (one movie, a true sentence naming two of its attributes, a
   false one changing one attribute) a third reply names the movie and says nothing checkable
   ("You should watch X! It is a wonderful film ..."). Each reply is judged against the movie's
   facts with the credibility rubric this kit used before issue 20 (``OLD_CRED_RUBRIC``: "every
   claim is backed by the facts" = 5, which a reply without claims satisfies) and with the current
   one (:data:`rso_lib.eval.judges._CRED_RUBRIC`). Printed: mean score of true / false / vague
   replies and the pairwise accuracies true > vague and true > false (ties 1/2; chance 0.5).
2. **PRS: a persuasive, truthful explanation beats a title-only turn.** Constructed cases: a
   persona who wants the movie's first genre, the movie, and two recommender turns: the title
   alone ("You could watch X.") and an explanation from its facts (genre, director, star, first
   plot sentence). :func:`rso_lib.eval.judges.judge_prs` gives each its PRS (pre: title, post: the
   recommender's words, true: the full record); printed: mean PRS of each and the PRS case counts.

Score mode (expected value of P("1".."5")) unless ``--reasoned N`` also runs the reference
procedure (reasoning, then a JSON score) on the first N claim pairs.
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
from judge_discrimination import parse_model  # noqa: E402

from rso_lib.data.kb import load_kb  # noqa: E402
from rso_lib.eval import judges as J  # noqa: E402
from rso_lib.eval.known_answers import claim_pairs, pairwise_accuracy  # noqa: E402
from rso_lib.eval.known_answers import first_sentence as _first_sentence  # noqa: E402

#: the credibility rubric of rso_lib/eval/judges.py before issue 20 (kept here to measure the change)
OLD_CRED_RUBRIC = (
    "How truthful is what the recommender says about the movie, judged only against the facts above?\n"
    "5 = every claim about the movie is backed by the facts\n"
    "4 = the claims are backed by or follow from the facts; minor details are unchecked\n"
    "3 = some claims are backed, others are not in the facts\n"
    "2 = most claims are not in the facts\n"
    "1 = a claim contradicts the facts"
)
VAGUE = "You should watch {}! It is a wonderful film and I think you will enjoy it."


def cred_check(llm, pairs, mode: str, rubric: str | None) -> dict:
    """Judge true / false / vague replies of every pair with ``rubric`` (None: the current one)."""
    saved = J._CRED_RUBRIC
    if rubric is not None:
        J._CRED_RUBRIC = rubric
    try:
        cases = [
            J.CredCase(r, p["item"])
            for p in pairs
            for r in (p["true"].text, p["false"].text, VAGUE.format(p["item"].title))
        ]
        t0 = time.perf_counter()
        out = J.judge_cred(llm, cases, mode=mode, cfg=J.JudgeConfig(batch_size=6, reasoned_max_tokens=160))
        dt = time.perf_counter() - t0
    finally:
        J._CRED_RUBRIC = saved
    v = np.asarray([np.nan if s is None else s for s in out.scores], float)
    t, f, g = v[0::3], v[1::3], v[2::3]
    ok = ~np.isnan(t) & ~np.isnan(g)
    okf = ~np.isnan(t) & ~np.isnan(f)
    return {
        "mode": mode,
        "n_pairs": len(pairs),
        "true_mean": float(np.nanmean(t)),
        "false_mean": float(np.nanmean(f)),
        "vague_mean": float(np.nanmean(g)),
        "acc_true_over_vague": pairwise_accuracy(t[ok], g[ok]),
        "acc_true_over_false": pairwise_accuracy(t[okf], f[okf]),
        "parse_failures": out.parse_failures,
        "s_per_judgement": dt / max(1, len(cases)),
    }


def prs_cases(pairs) -> tuple[list, list]:
    """(title-only, explanation) IntentionCases for the movies of ``pairs``."""
    title_only, explained = [], []
    for p in pairs:
        it = p["item"]
        persona = f"I enjoy {it.genres[0]} movies and I am looking for a good one tonight."
        genres = (it.genres[0],)
        expl = (
            f"You should watch {it.title}: it is a {' and '.join(it.genres[:2])} film directed by "
            f"{it.director[0]}, starring {it.stars[0]}. {_first_sentence(it.plot)}"
        )
        title_only.append(J.IntentionCase(persona, genres, it, f"Recommender: You could watch {it.title}."))
        explained.append(J.IntentionCase(persona, genres, it, f"Recommender: {expl}"))
    return title_only, explained


def prs_check(llm, pairs) -> dict:
    res = {}
    for name, cases in zip(("title_only", "explanation"), prs_cases(pairs)):
        out = J.judge_prs(llm, cases, mode="score", cfg=J.JudgeConfig(batch_size=6))
        vals = [c.value for c in out.cases if c.status == "ok"]
        res[name] = {
            "prs_mean": float(np.mean(vals)) if vals else float("nan"),
            "prs_n": len(vals),
            "statuses": {s: sum(c.status == s for c in out.cases) for s in ("ok", "over", "excluded", "missing")},
            "pre_mean": float(np.mean(out.pre.scores)),
            "post_mean": float(np.mean(out.post.scores)),
            "true_mean": float(np.mean(out.true.scores)),
        }
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judge", default="embedded:qwen2.5-1.5b")
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--prs-cases", type=int, default=6)
    ap.add_argument("--reasoned", type=int, default=0, help="also judge the first N pairs in reasoned mode")
    ap.add_argument("--no-score", dest="score", action="store_false", help="skip the score-mode Cred check")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=os.environ.get("RSO_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--json", default=None)
    add_out_argument(ap)
    args = ap.parse_args(argv)
    with recorded(args.out):
        run_bench(args)


def run_bench(args: argparse.Namespace) -> None:
    """The bench itself; what it prints is the measurement (``main`` records it with ``--out``)."""

    from rso_lib.llm import build_llm

    items = list(load_kb(args.data_dir))
    pairs = claim_pairs(items, args.pairs, args.seed)
    llm = build_llm(parse_model(args.judge))
    res = {"judge": llm.model_id, "cred": []}
    for mode, rubric, name in (("score", OLD_CRED_RUBRIC, "old rubric"), ("score", None, "new rubric")):
        if not args.score:
            break
        r = cred_check(llm, pairs, mode, rubric)
        r["rubric"] = name
        res["cred"].append(r)
        print(json.dumps(r), flush=True)
    if args.prs_cases:
        res["prs"] = prs_check(llm, claim_pairs(items, args.prs_cases, args.seed + 7))
        print(json.dumps(res["prs"]), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
    if args.reasoned:
        for rubric, name in ((None, "new rubric"), (OLD_CRED_RUBRIC, "old rubric")):
            r = cred_check(llm, pairs[: args.reasoned], "reasoned", rubric)
            r["rubric"] = name
            res["cred"].append(r)
            print(json.dumps(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
