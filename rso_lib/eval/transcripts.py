"""What evaluation needs from a finished dialogue, read from engine Episodes or JSONL transcripts.

The dialogue engine (``rso_lib.dialogue.engine``) writes one JSON object per finished dialogue;
evaluation only needs a few of its fields, so this module maps an Episode (object) or a transcript
record (dict) to a small :class:`EvalDialogue`. Keeping the mapping in one place means a change of
the transcript schema touches one function, not every metric.

Fields read (others are ignored):

* dialogue: ``dialog_id``, ``target`` (``{dataset, user_id, persona: {description}, target_genres}``),
  ``accepted``, ``turns``, optional ``system``, ``dataset``, ``parse_failures``;
* turn: ``strategy``, ``reply``, ``user_reply``, ``retrieved`` (item ids, best first),
  ``chosen_item`` (item id or None), ``parse_failures`` (int or dict of counts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from rso_lib.data.records import DataError


@dataclass
class EvalTurn:
    reply: str  # the system's reply
    user_reply: str = ""
    strategy: str | None = None  # canonical strategy id, None for systems without a planner
    retrieved: list[str] = field(default_factory=list)  # item ids, best first (full ranking kept)
    chosen_item: str | None = None  # the item the reply presents, if any
    parse_failures: int = 0


@dataclass
class EvalDialogue:
    dialog_id: str
    system: str
    dataset: str
    persona: str  # natural-language persona the judge role-plays
    target_genres: list[str]
    accepted: bool
    turns: list[EvalTurn]
    parse_failures: int = 0  # engine-side parse failures (all roles, all turns)

    @property
    def recommended_item(self) -> str | None:
        """The last item the system presented (what the user ends the dialogue with)."""
        for t in reversed(self.turns):
            if t.chosen_item:
                return t.chosen_item
        return None

    @property
    def final_ranking(self) -> list[str]:
        """The last non-empty retrieval ranking (for Recall@k)."""
        for t in reversed(self.turns):
            if t.retrieved:
                return list(t.retrieved)
        return []


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _count(pf: Any) -> int:
    """Parse failures may be an int or a dict ``{role: count}``."""
    if pf is None:
        return 0
    if isinstance(pf, dict):
        return int(sum(int(v) for v in pf.values()))
    return int(pf)


def _item_id(x: Any) -> str | None:
    if x is None or x == "":
        return None
    if isinstance(x, dict):  # {"item_id": ..., ...}
        x = x.get("item_id")
    return None if x is None else str(x)


def to_eval_dialogue(ep: Any, system: str | None = None, dataset: str | None = None) -> EvalDialogue:
    """Map an engine Episode (or a transcript dict) to an :class:`EvalDialogue`.

    Raises ``KeyError``/``TypeError`` naming the missing field; :func:`read_transcript` turns
    those into :class:`DataError` with the file and line."""
    target = _get(ep, "target")
    if target is None:
        raise KeyError("target")
    persona = _get(target, "persona")
    persona_text = _get(persona, "description", "") if persona is not None else ""
    turns = []
    for t in _get(ep, "turns") or []:
        retrieved = [i for i in (_item_id(r) for r in (_get(t, "retrieved") or [])) if i is not None]
        turns.append(EvalTurn(
            reply=str(_get(t, "reply", "") or ""),
            user_reply=str(_get(t, "user_reply", "") or ""),
            strategy=_get(t, "strategy"),
            retrieved=retrieved,
            chosen_item=_item_id(_get(t, "chosen_item")),
            parse_failures=_count(_get(t, "parse_failures")),
        ))
    ep_pf = _count(_get(ep, "parse_failures"))
    return EvalDialogue(
        dialog_id=str(_get(ep, "dialog_id")),
        system=str(system or _get(ep, "system", "") or ""),
        dataset=str(dataset or _get(ep, "dataset") or _get(target, "dataset", "") or ""),
        persona=str(persona_text or ""),
        target_genres=[str(g).lower() for g in (_get(target, "target_genres") or [])],
        accepted=bool(_get(ep, "accepted", False)),
        turns=turns,
        parse_failures=ep_pf if ep_pf else sum(t.parse_failures for t in turns),
    )


def read_transcript(path: str | Path, system: str | None = None, dataset: str | None = None) -> list[EvalDialogue]:
    """Read a JSONL transcript (one finished dialogue per line). Blank lines are skipped; a line
    that is not JSON or lacks a needed field raises :class:`DataError` naming file, line, field.
    If the same ``dialog_id`` appears twice (a rerun appended it), the last record wins."""
    path = Path(path)
    out: dict[str, EvalDialogue] = {}
    with path.open(encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, f"not a JSON object: {e.msg}", line=ln) from None
            if not isinstance(rec, dict) or rec.get("record", "episode") != "episode":
                continue  # header / other record kinds
            try:
                d = to_eval_dialogue(rec, system=system, dataset=dataset)
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(path, f"missing or malformed field ({e})", line=ln, field=str(e).strip("'")) from None
            out[d.dialog_id] = d
    return list(out.values())


def episodes_to_eval(episodes: Iterable[Any], system: str, dataset: str) -> list[EvalDialogue]:
    return [to_eval_dialogue(e, system=system, dataset=dataset) for e in episodes]
