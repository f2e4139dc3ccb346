"""The Planner's supervised examples (paper Eq. 6): dialogue history -> strategy of the next
recommender utterance.

Every recommender turn with a strategy label yields one example whose history is every turn
before it (seeker and recommender, in order; consecutive recommender utterances stay separate
turns, as in the INSPIRED splits). Turns whose label was unknown (``strategy=None``) yield no
example but stay in later histories.

Files (JSONL, one example a line, written by notebook 01 and read by notebook 02):
``runs/<profile>/data/sft_{train,valid,test}.jsonl`` -- see :func:`sft_path`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rso_lib.data._io import iter_jsonl
from rso_lib.data.records import RECOMMENDER, SEEKER, DataError, Dialogue, Issue, Turn
from rso_lib.paths import temp_sibling
from rso_lib.strategies import STRATEGY_TO_ID


@dataclass
class SFTExample:
    dialog_id: str
    turn_index: int  # index of the labelled recommender turn in the dialogue
    history: list[Turn]  # turns[:turn_index]
    strategy: str  # canonical snake_case id

    @property
    def label(self) -> int:
        """Class id (index in :data:`rso_lib.strategies.STRATEGIES`)."""
        return STRATEGY_TO_ID[self.strategy]


def build_sft_examples(dialogues: Iterable[Dialogue]) -> list[SFTExample]:
    """One :class:`SFTExample` per labelled recommender turn, in dialogue / turn order."""
    out: list[SFTExample] = []
    for d in dialogues:
        for i, t in enumerate(d.turns):
            if t.speaker == RECOMMENDER and t.strategy is not None:
                out.append(SFTExample(d.dialog_id, i, d.turns[:i], t.strategy))
    return out


def sft_path(profile: str, split: str) -> Path:
    """``runs/<profile>/data/sft_<split>.jsonl`` (the convention between notebooks 01 and 02)."""
    from rso_lib.paths import run_dir

    return run_dir(profile) / "data" / f"sft_{split}.jsonl"


def _turn_json(t: Turn) -> dict:
    d: dict = {"speaker": t.speaker, "text": t.text}
    if t.strategy is not None:
        d["strategy"] = t.strategy
    if t.movies:
        d["movies"] = t.movies
    return d


def write_sft_examples(path: str | Path, examples: Iterable[SFTExample]) -> int:
    """Write examples as JSONL (atomic: temp file + rename). Returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(
                json.dumps(
                    {
                        "dialog_id": ex.dialog_id,
                        "turn_index": ex.turn_index,
                        "strategy": ex.strategy,
                        "history": [_turn_json(t) for t in ex.history],
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
            n += 1
    os.replace(tmp, path)
    return n


def read_sft_examples(path: str | Path, issues: list[Issue] | None = None) -> list[SFTExample]:
    """Read a JSONL written by :func:`write_sft_examples`.

    A broken line or one with an unknown strategy / bad history is skipped and recorded in
    ``issues`` when given; without ``issues`` the first such line raises :class:`DataError`
    (training on a silently shortened set would be wrong).
    """
    path = Path(path)
    local: list[Issue] = []
    out: list[SFTExample] = []
    for lineno, obj in iter_jsonl(path, local, "SFT examples"):
        try:
            strat = obj["strategy"]
            if strat not in STRATEGY_TO_ID:
                raise ValueError(f"unknown strategy {strat!r}")
            hist = []
            for t in obj["history"]:
                if t["speaker"] not in (SEEKER, RECOMMENDER):
                    raise ValueError(f"unknown speaker {t['speaker']!r}")
                hist.append(Turn(t["speaker"], t["text"], t.get("strategy"), list(t.get("movies", []))))
            out.append(SFTExample(str(obj["dialog_id"]), int(obj["turn_index"]), hist, strat))
        except (KeyError, TypeError, ValueError, OverflowError) as e:  # OverflowError: int(Infinity)
            local.append(Issue(str(path), lineno, None, f"bad SFT example: {e}", "skipped"))
    if issues is None and local:
        i = local[0]
        raise DataError(path, i.message, line=i.line, field=i.field)
    if issues is not None:
        issues.extend(local)
    return out
