"""Paper Table II (dataset statistics) and the strategy-label distribution, computed from the files.

Definitions (the same for every file):

* dialogues: distinct dialogue ids.
* utterances: turns as the file stores them (INSPIRED: one TSV row / split-file entry each;
  ReDial raw records: one message each; ``redial-test.txt``: merged same-speaker messages, so
  fewer than the raw messages of the same dialogues).
* unique items: distinct movie titles marked in the utterances (INSPIRED TSV ``movies`` column,
  ReDial ``@id`` mentions resolved through ``movieMentions``), whitespace-normalised; ``NaN`` where
  a file does not mark movies (the strategy splits, ``redial-test.txt``).
* item mentions: the number of marked movie mentions (not distinct).

Paper numbers (Table II of arXiv 2509.26093) are as quoted in issue 2 and in the shared data
README (not re-read from the PDF here: no internet): INSPIRED 1,001 dialogues, 35,811
utterances, 1,783 items; ReDial 10,006 dialogues, 182,150 utterances, 51,699 items. They match
the dataset papers (INSPIRED: Hayati et al. 2020; ReDial: Li et al. 2018 — 10,006 is the size of
ReDial's official *train* file).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rso_lib.data.inspired import SPLITS, load_dialog_split, load_strategy_split, tsv_path
from rso_lib.data.records import RECOMMENDER, Dialogue, Issue
from rso_lib.data.redial import available_redial_splits, clean_title, load_redial_split, load_redial_test_txt
from rso_lib.strategies import STRATEGIES, display_name

PAPER_TABLE2 = {
    "INSPIRED": {"dialogues": 1001, "utterances": 35811, "items": 1783},
    "ReDial": {"dialogues": 10006, "utterances": 182150, "items": 51699},
}
PAPER_SOURCE = "paper Table II as quoted in issue 2 / shared data README (not re-read from the PDF)"


@dataclass
class LoadedData:
    """Everything notebook 01 needs, loaded once."""

    inspired_strategy: dict[str, list[Dialogue]] = field(default_factory=dict)  # split -> dialogues
    inspired_tsv: dict[str, list[Dialogue]] = field(default_factory=dict)  # split -> dialogues (files present)
    redial_raw: dict[str, list[Dialogue]] = field(default_factory=dict)  # split -> dialogues (files present)
    redial_test_txt: list[Dialogue] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)


def load_all(data_dir: str | Path) -> LoadedData:
    """Load both datasets from ``data_dir`` (files that are absent are left out, see
    :func:`rso_lib.data.fetch.check`)."""
    data_dir = Path(data_dir)
    out = LoadedData()
    for s in SPLITS:
        out.inspired_strategy[s], iss = load_strategy_split(data_dir, s)
        out.issues += iss
        if tsv_path(data_dir, s).is_file():
            out.inspired_tsv[s], iss = load_dialog_split(data_dir, s)
            out.issues += iss
    for s in available_redial_splits(data_dir):
        out.redial_raw[s], iss = load_redial_split(data_dir, s)
        out.issues += iss
    out.redial_test_txt, iss = load_redial_test_txt(data_dir)
    out.issues += iss
    return out


def _count(dialogues: list[Dialogue], marks_items: bool) -> dict:
    titles = [clean_title(m) for d in dialogues for t in d.turns for m in t.movies]
    return {
        "dialogues": len({d.dialog_id for d in dialogues}),
        "utterances": sum(len(d.turns) for d in dialogues),
        "unique_items": len(set(titles)) if marks_items else float("nan"),
        "item_mentions": len(titles) if marks_items else float("nan"),
    }


def split_stats(data: LoadedData) -> pd.DataFrame:
    """One row per (dataset, split, file) with dialogues / utterances / unique items."""
    rows = []
    for s, ds in data.inspired_strategy.items():
        tsv = data.inspired_tsv.get(s)
        r = {"dataset": "INSPIRED", "split": s, "file": f"inspired/strategy/inspired-{s}.txt", **_count(ds, False)}
        if tsv is not None:  # the TSV of the same split marks the movies (rows match 1:1)
            c = _count(tsv, True)
            r["unique_items"], r["item_mentions"] = c["unique_items"], c["item_mentions"]
            r["file"] += f" + {tsv_path('', s).as_posix()}"
        rows.append(r)
    for s, ds in data.redial_raw.items():
        rows.append({"dataset": "ReDial", "split": s, "file": f"redial/{s}_data.jsonl", **_count(ds, True)})
    rows.append(
        {
            "dataset": "ReDial",
            "split": "test (RSO)",
            "file": "redial/redial-test.txt",
            **_count(data.redial_test_txt, False),
        }
    )
    return pd.DataFrame(rows)


def table2(data: LoadedData) -> pd.DataFrame:
    """Paper Table II beside ours: one row per dataset.

    INSPIRED: all three strategy splits (= train.tsv + dev.tsv + test.tsv row for row); items
    from the TSVs present (``train.tsv`` is not in the shared data, so the count is partial
    unless it was fetched). ReDial: the union by dialogue id of the raw-format files present and
    ``redial-test.txt`` (raw records win when an id is in both: they are unmerged).
    """
    ins_d = [d for s in SPLITS for d in data.inspired_strategy.get(s, [])]
    ins = _count(ins_d, False)
    tsv_d = [d for ds in data.inspired_tsv.values() for d in ds]
    c = _count(tsv_d, True)
    ins["unique_items"], ins["item_mentions"] = c["unique_items"], c["item_mentions"]
    ins_files = "inspired-{train,valid,test}.txt" + (
        "; items from " + ", ".join(tsv_path("", s).name for s in data.inspired_tsv) if data.inspired_tsv else ""
    )
    by_id: dict[str, Dialogue] = {}
    for ds in data.redial_raw.values():
        for d in ds:
            by_id.setdefault(d.dialog_id, d)
    n_raw = len(by_id)
    for d in data.redial_test_txt:
        by_id.setdefault(d.dialog_id, d)
    red = _count(list(by_id.values()), False)
    raw_d = [d for ds in data.redial_raw.values() for d in ds]
    c = _count(raw_d, True)
    red["unique_items"], red["item_mentions"] = c["unique_items"], c["item_mentions"]
    red_files = ", ".join(f"{s}_data.jsonl" for s in data.redial_raw) + " + redial-test.txt"
    rows = []
    for name, ours, files in (("INSPIRED", ins, ins_files), ("ReDial", red, red_files)):
        p = PAPER_TABLE2[name]
        rows.append(
            {
                "dataset": name,
                "dialogues": ours["dialogues"],
                "paper_dialogues": p["dialogues"],
                "utterances": ours["utterances"],
                "paper_utterances": p["utterances"],
                "unique_items": ours["unique_items"],
                "paper_items": p["items"],
                "item_mentions": ours["item_mentions"],
                "files": files,
            }
        )
    df = pd.DataFrame(rows)
    df.attrs["redial_raw_dialogues"] = n_raw
    return df


def strategy_distribution(dialogues_by_split: dict[str, list[Dialogue]]) -> pd.DataFrame:
    """Share of each of the 14 strategies over labelled recommender turns, per split and overall.

    Columns: strategy, name, count_<split>..., share_<split>..., count_all, share_all. Rows in
    :data:`STRATEGIES` order (zero rows kept: a strategy that never occurs shows 0).
    """
    counts: dict[str, Counter] = {}
    for s, ds in dialogues_by_split.items():
        counts[s] = Counter(t.strategy for d in ds for t in d.turns if t.speaker == RECOMMENDER and t.strategy)
    counts["all"] = sum(counts.values(), Counter())
    rows = []
    for st in STRATEGIES:
        r = {"strategy": st, "name": display_name(st)}
        for s, c in counts.items():
            r[f"count_{s}"] = c.get(st, 0)
        for s, c in counts.items():
            tot = sum(c.values())
            r[f"share_{s}"] = c.get(st, 0) / tot if tot else float("nan")
        rows.append(r)
    return pd.DataFrame(rows)
