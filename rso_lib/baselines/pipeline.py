"""Train one PLM baseline on one dataset, as the chain does it (notebook ``02_plm_baselines``).

:func:`train_baseline` loads the training dialogues, builds the knowledge graph of the dataset
(ReDial: the KG files; INSPIRED: built from the knowledge base facts), cuts the examples, trains
the model (:func:`rso_lib.baselines.train.train_plm`), and measures offline Recall@1/10/50 of its
ranking on held-out recommender turns. The model lands in :func:`plm_dir` (what
``build_system("UNICRS" | "BARCOR", plm=...)`` loads) and the metrics beside it.

Training dialogues: INSPIRED's strategy-split train (801 dialogues); ReDial's ``train`` split when
the data directory has it (``rso_lib.data.fetch`` brings the official archive), else the ReDial
dialogues at hand (``valid_data.jsonl``, 1,000 dialogues; say so). Held-out turns: INSPIRED's
strategy-split valid; ReDial's ``valid`` split when training on ``train``, else the last 10% of
the dialogues at hand (split by dialogue, never used in training).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from rso_lib.baselines.examples import build_examples, subsample
from rso_lib.baselines.kg import EntityLinker, build_kg
from rso_lib.baselines.plm_system import plm_dir
from rso_lib.baselines.registry import make_model
from rso_lib.baselines.train import PLMTrainConfig, train_plm


def training_dialogues(data_dir: str | Path, dataset: str) -> tuple[list, list, str]:
    """(train dialogues, held-out dialogues, a sentence saying which)."""
    if dataset == "inspired":
        from rso_lib.data.inspired import load_strategy_split

        tr, _ = load_strategy_split(data_dir, "train")
        va, _ = load_strategy_split(data_dir, "valid")
        return tr, va, f"INSPIRED strategy split: {len(tr)} train / {len(va)} valid dialogues"
    if dataset == "redial":
        from rso_lib.data.redial import available_redial_splits, load_redial_split

        splits = available_redial_splits(data_dir)
        if "train" in splits:
            tr, _ = load_redial_split(data_dir, "train")
            va, _ = load_redial_split(data_dir, "valid") if "valid" in splits else ([], [])
            return tr, va, f"ReDial official splits: {len(tr)} train / {len(va)} valid dialogues"
        if "valid" not in splits:
            raise FileNotFoundError(
                f"{data_dir}/redial: no ReDial dialogues (train_data.jsonl / valid_data.jsonl); "
                "fetch them with `python -m rso_lib.data.fetch`"
            )
        d, _ = load_redial_split(data_dir, "valid")
        cut = int(len(d) * 0.9)
        return (
            d[:cut],
            d[cut:],
            (
                f"ReDial: no train split in the data directory; the {len(d)} dialogues at hand "
                f"(valid_data.jsonl) split by dialogue {cut} train / {len(d) - cut} held out"
            ),
        )
    raise ValueError(f"unknown dataset {dataset!r} (inspired | redial)")


def recall_at(model, examples, ks=(1, 10, 50), batch_size: int = 16) -> dict:
    """Recall@k of the model's ranking over held-out recommender turns (one row per named movie)."""
    rows = [(e.context, t) for e in examples for t in e.targets]
    if not rows:
        return {f"recall@{k}": None for k in ks} | {"n": 0}
    pos = {iid: j for j, iid in enumerate(model.item_ids)}
    hits = {k: 0 for k in ks}
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        s = model.item_scores([c for c, _ in chunk])
        top = torch.topk(s, max(ks), dim=1).indices.numpy()
        for row, (_, t) in zip(top, chunk):
            for k in ks:
                hits[k] += int(pos[t] in row[:k])
    return {f"recall@{k}": hits[k] / len(rows) for k in ks} | {"n": len(rows)}


def _enough(dialogues: list, n: int | None, seed: int, kb, linker) -> list:
    """A seeded random subset of the dialogues holding about ``2 n`` recommender turns (all of
    them when ``n`` is None): linking every utterance of a corpus costs seconds that a smoke run
    subsampling to ``n`` turns does not need to spend."""
    if n is None:
        return dialogues
    order = np.random.default_rng(seed).permutation(len(dialogues))
    out, turns = [], 0
    for i in order:
        out.append(dialogues[i])
        turns += sum(t.speaker == "RECOMMENDER" for t in dialogues[i].turns)
        if turns >= 2 * n:
            break
    return out


def train_baseline(
    kind: str,
    dataset: str,
    *,
    kb,
    data_dir: str | Path,
    profile: str,
    model_cfg: dict | None = None,
    train_cfg: dict | None = None,
    max_examples: int | None = None,
    eval_examples: int | None = 64,
    seed: int = 0,
    resume: bool = True,
    log=print,
) -> dict:
    """Train ``kind`` (``unicrs`` | ``barcor``) on ``dataset`` (``inspired`` | ``redial``).

    Args:
        kb: the catalogue the engine recommends from (the model ranks exactly these items).
        data_dir / profile: data directory and run profile (model under :func:`plm_dir`).
        model_cfg: :class:`UniCRSConfig` / :class:`BARCORConfig` fields (``kg_source`` is set
            from the dataset).
        train_cfg: :class:`PLMTrainConfig` fields (``seed`` is set from ``seed``).
        max_examples / eval_examples: subsample sizes (None: all).
        resume: continue a run interrupted at a checkpoint.
    Returns:
        the metrics dict (also written to ``<run>/metrics.json``), with ``recall`` and ``data``.
    """
    t0 = time.perf_counter()
    tr, va, data_note = training_dialogues(data_dir, dataset)
    kg = build_kg(dataset, kb, data_dir)
    linker = EntityLinker(kg, kb)
    train_ex = subsample(build_examples(_enough(tr, max_examples, seed, kb, linker), kb, linker), max_examples, seed)
    held = subsample([e for e in build_examples(va, kb, linker) if e.targets], eval_examples, seed)
    torch.manual_seed(seed)  # the model's initial weights
    model = make_model(kind, kg, kb, {**(model_cfg or {}), "kg_source": dataset})
    cfg = PLMTrainConfig(**{**(train_cfg or {}), "seed": seed})
    out = plm_dir(profile, kind, dataset).parent
    log(
        f"[plm] {kind} on {dataset}: {data_note}; {len(train_ex)} training turns "
        f"({sum(bool(e.targets) for e in train_ex)} name a catalogue movie); graph {kg.summary()}"
    )
    metrics = train_plm(model, train_ex, cfg, out, resume=resume)
    metrics["recall"] = recall_at(model, held)
    metrics["data"] = data_note
    metrics["dataset"] = dataset
    metrics["seconds_total"] = round(time.perf_counter() - t0, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    st = metrics["stages"]
    log(
        f"[plm] {kind}/{dataset}: "
        + ", ".join(f"{t} loss {v['first_loss']:.2f} -> {v['last_loss']:.2f}" for t, v in st.items())
        + f"; held-out {metrics['recall']}; {metrics['seconds_total']} s"
    )
    return metrics


def summary_rows(all_metrics: list[dict]) -> list[dict]:
    """One table row per trained model (notebook display / results file)."""
    rows = []
    for m in all_metrics:
        r = {
            "system": m["kind"],
            "dataset": m["dataset"],
            "train_turns": m["n_examples"],
            "steps": m["steps_done"],
            "seconds": m["seconds_total"],
        }
        for t, v in m["stages"].items():
            r[f"{t}_loss_first"], r[f"{t}_loss_last"] = round(v["first_loss"], 3), round(v["last_loss"], 3)
        r.update({k: (round(v, 3) if isinstance(v, float) else v) for k, v in m["recall"].items()})
        rows.append(r)
    return rows


__all__ = ["train_baseline", "training_dialogues", "recall_at", "summary_rows", "plm_dir"]
