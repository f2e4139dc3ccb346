"""Can the judge tell a true claim from a false one? Side by side per model and backend.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/judge_discrimination.py \
        [--pairs 200] [--wi-pairs 40] [--models embedded:qwen2.5-1.5b,embedded:qwen2.5-0.5b,embedded:smollm2]

Credibility (Cred): true/false claim pairs built from the knowledge base (``redial/id2info.json``)
by :func:`rso_lib.eval.known_answers.claim_pairs` (the validity card uses the same pairs). Each pair is one movie and one recommender sentence naming two of its attributes; the false one
changes exactly ONE attribute (the hard case: the rest of the sentence is still true):

* ``director``: another movie's director;        * ``genre``: a genre the movie does not have;
* ``year``: the release year moved by 3-15 years; * ``cast``: one of two stars swapped for an actor
  who is not in the movie;                        * ``plot``: the plot of another movie of the same genre.

Both claims go through the kit's credibility judge unchanged (:func:`rso_lib.eval.judges.credibility_messages`
+ :func:`rso_lib.eval.judges.rate`, score mode: expected value of P("1".."5") after ``"Rating: "``).
Printed per model: mean score of true vs false claims, pairwise accuracy (true scored above false;
a tie counts 1/2; chance = 0.5), the same per claim type, and seconds per judgement.

Watching intention (WI/PRS judges, :func:`rso_lib.eval.judges.intention_messages`, kind ``"true"``):
the same movie judged by a persona who loves its genre (and wants that genre) and by one who hates
it (and wants a genre the movie does not have); the lover must give the higher intention.

Last line: ``judge_pairwise_accuracy=X`` for the configured judge (the ``judge`` role of
``params/<--profile>.yaml``, default ``cpu``: Qwen2.5-Coder-1.5B-Instruct), with the other models
(SmolLM2-135M, the smoke profile's judge) printed beside it.
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

import numpy as np  # noqa: E402
from _record import add_out_argument, recorded  # noqa: E402  (--out: a provenance file)

from rso_lib.data.kb import load_kb  # noqa: E402
from rso_lib.eval.judges import JudgeConfig, credibility_messages, intention_messages, rate  # noqa: E402
from rso_lib.eval.known_answers import CLAIM_TYPES, claim_pairs, intention_pairs, pairwise_accuracy  # noqa: E402

# ----------------------------------------------------------------------------------------------
# Judging (the pairs come from rso_lib.eval.known_answers, shared with the validity card)
# ----------------------------------------------------------------------------------------------


def judge_model(llm, pairs: list[dict], wi: list[dict], cfg: JudgeConfig) -> dict:
    """Scores of every claim and persona with one model: the numbers the bench prints."""
    msgs = [credibility_messages(p[k].text, p["item"], cfg.max_facts_chars) for p in pairs for k in ("true", "false")]
    t0 = time.perf_counter()
    vals = np.asarray(rate(llm, msgs, cfg).values, dtype=float)
    cred_s = time.perf_counter() - t0
    tv, fv = vals[0::2], vals[1::2]
    types = np.asarray([p["type"] for p in pairs])
    res = {
        "n_pairs": len(pairs),
        "true_mean": float(tv.mean()),
        "false_mean": float(fv.mean()),
        "pairwise_accuracy": pairwise_accuracy(tv, fv),
        "s_per_judgement": cred_s / max(1, len(msgs)),
        "by_type": {t: pairwise_accuracy(tv[types == t], fv[types == t]) for t in CLAIM_TYPES if (types == t).any()},
    }
    if wi:
        wmsgs = [
            intention_messages("true", *p[k], p["item"], max_facts_chars=cfg.max_facts_chars)
            for p in wi
            for k in ("love", "hate")
        ]
        t0 = time.perf_counter()
        w = np.asarray(rate(llm, wmsgs, cfg).values, dtype=float)
        res.update(
            wi_pairs=len(wi),
            wi_love=float(w[0::2].mean()),
            wi_hate=float(w[1::2].mean()),
            wi_accuracy=pairwise_accuracy(w[0::2], w[1::2]),
            wi_s_per_judgement=(time.perf_counter() - t0) / len(wmsgs),
        )
    return res


def parse_model(s: str) -> dict:
    """``backend:model`` (``embedded:qwen2.5-1.5b``, ``vllm:/path/to/dir``) or a JSON spec."""
    s = s.strip()
    if s.startswith("{"):
        return json.loads(s)
    backend, _, model = s.partition(":")
    return {"backend": backend, **({"model": model} if model else {})}


def configured_judge(profile: str) -> dict:
    """The ``judge`` role's LLM spec in ``params/<profile>.yaml`` (``{**default, **judge}``)."""
    import yaml

    p = ROOT / "params" / f"{profile}.yaml"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such profile (pass --profile or --judge)")
    llm = (yaml.safe_load(p.read_text()).get("common") or {}).get("LLM") or {}
    default, over = dict(llm.get("default") or {"backend": "embedded"}), dict(llm.get("judge") or {})
    return over if over.get("backend", default.get("backend")) != default.get("backend") else {**default, **over}


def label(spec: dict) -> str:
    return f"{spec.get('backend', 'embedded')}:{spec.get('model', 'smollm2')}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=200, help="true/false claim pairs (default 200)")
    ap.add_argument("--wi-pairs", type=int, default=40, help="love/hate persona pairs (default 40; 0: skip)")
    ap.add_argument("--profile", default="cpu", help="profile whose judge role is 'the configured judge' (default cpu)")
    ap.add_argument("--judge", default=None, help="the configured judge as backend:model (overrides --profile)")
    ap.add_argument(
        "--models",
        default="embedded:smollm2",
        help="comma-separated models judged beside the configured judge (default embedded:smollm2)",
    )
    ap.add_argument("--batch", type=int, default=8, help="judge requests per backend call (default 8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=os.environ.get("RSO_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    add_out_argument(ap)
    args = ap.parse_args(argv)
    with recorded(args.out):
        run_bench(args)


def run_bench(args: argparse.Namespace) -> None:
    """The bench itself; what it prints is the measurement (``main`` records it with ``--out``)."""

    from rso_lib.llm import build_llm

    kb = load_kb(args.data_dir)
    items = list(kb)
    pairs = claim_pairs(items, args.pairs, args.seed)
    wi = intention_pairs(items, args.wi_pairs, args.seed) if args.wi_pairs else []
    judge = parse_model(args.judge) if args.judge else configured_judge(args.profile)
    specs = [judge] + [s for s in map(parse_model, filter(None, args.models.split(","))) if s != judge]
    cfg = JudgeConfig(mode="score", batch_size=args.batch)
    print(
        f"{len(pairs)} claim pairs ({', '.join(CLAIM_TYPES)} in turn; the false claim changes one attribute), "
        f"{len(wi)} WI persona pairs, {len(kb)} movies in the KB; judge prompt: rso_lib.eval.judges, score mode"
    )
    print("example:", pairs[0]["type"], "| TRUE:", pairs[0]["true"].text, "| FALSE:", pairs[0]["false"].text)
    results = {}
    for spec in specs:
        t0 = time.perf_counter()
        llm = build_llm(spec)
        load_s = time.perf_counter() - t0
        r = judge_model(llm, pairs, wi, cfg)
        r.update(model_id=llm.model_id, load_s=load_s)
        results[label(spec)] = r
        print(
            f"  done {label(spec)} ({llm.model_id}): load {load_s:.0f} s, {r['s_per_judgement']:.2f} s/judgement",
            flush=True,
        )

    print()
    hdr = (
        f"{'model':28s} {'true':>5s} {'false':>5s} {'acc':>5s} "
        + " ".join(f"{t[:5]:>5s}" for t in CLAIM_TYPES)
        + f" {'s/j':>5s} | {'WIlove':>6s} {'WIhate':>6s} {'WIacc':>5s}"
    )
    print(hdr)
    for name, r in results.items():
        row = (
            f"{name:28s} {r['true_mean']:5.2f} {r['false_mean']:5.2f} {r['pairwise_accuracy']:5.2f} "
            + " ".join(f"{r['by_type'].get(t, float('nan')):5.2f}" for t in CLAIM_TYPES)
            + f" {r['s_per_judgement']:5.2f} |"
        )
        if "wi_accuracy" in r:
            row += f" {r['wi_love']:6.2f} {r['wi_hate']:6.2f} {r['wi_accuracy']:5.2f}"
        print(row)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    first = results[label(judge)]
    others = " ".join(f"{k}={v['pairwise_accuracy']:.3f}" for k, v in list(results.items())[1:])
    print(f"judge_pairwise_accuracy={first['pairwise_accuracy']:.3f} ({label(judge)}; beside it: {others})")


if __name__ == "__main__":
    main()
