"""Dialogue records and the JSONL transcript: one line per system turn, schema ``rso.transcript/1``.

Each line is a JSON object with these fields (type, meaning):

======================  ====================  ====================================================
field                   type                  meaning
======================  ====================  ====================================================
schema                  str                   ``"rso.transcript/1"``
system                  str                   system config name (``RSO``, ``PROMPT_ONLY``, ...)
dialog_id               str                   the simulation target's dialog id
turn                    int                   0-based system turn index
dataset                 str                   ``inspired`` | ``redial``
user_id                 str                   persona id
target_genres           list[str]             the simulated user's target genres
persona                 str                   persona text (turn 0 only, else ``null``)
user_open               str | null            the user's opening message (turn 0 only)
strategy                str | null            strategy id (14 INSPIRED ones; PC-CRS: explanation
                                              strategy names); null when the system has none
strategy_index          int | null            index in ``rso_lib.strategies.STRATEGIES``
strategy_prob           float | null          the Planner's probability of that strategy
strategy_entropy        float | null          entropy of the Planner's distribution
preference              str                   Preference Reasoner output (``""`` if none)
retrieved               list[str]             top-K item ids, best first (``[]`` if no retriever)
retrieval_scores        list[float]           their cosine similarities
ranking                 list[str]             top-N ranking of the retriever (Recall@k)
chosen_item             str | null            item the chooser picked for the Actor
chooser_probs           list[float]           chooser distribution over ``retrieved``
reply                   str                   the system's reply
refinements             int                   PC-CRS self-check rewrites this turn
mentioned_item          str | null            item the simulator found named in ``reply``
user_reply              str                   the simulated user's answer
user_action             str                   agenda / LLM user act (inquire, accept, ...)
covers_target           bool | null           KB genres of ``mentioned_item`` cover the targets
p_accept                float | null          LLM simulator's acceptance probability
accepted                bool                  the user accepted ``mentioned_item``
reward                  float | null          turn reward in [0, 1] (null: no judgement parsed)
rating                  float | null          the 1-5 rating behind it
stop                    bool                  Eq. 9 stop rule fired
done                    bool                  last turn of the dialogue
stop_reason             str | null            accepted | reward | max_turns | user_quit (if done)
parse_failures          dict[str, int]        unparseable model outputs this turn, by role
======================  ====================  ====================================================

History is not repeated on each line: turn t's ``history_before`` is ``user_open`` followed by
(reply, user_reply) of turns 0..t-1, which :func:`read_episodes` rebuilds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rso_lib.data._io import BadJSON, parse_json
from rso_lib.data.records import RECOMMENDER, SEEKER, Persona, SimTarget, Turn
from rso_lib.paths import temp_sibling

SCHEMA = "rso.transcript/1"
STOP_REASONS = ("accepted", "reward", "max_turns", "user_quit")


@dataclass
class TurnRecord:
    """One system turn (what RL and the metrics consume)."""

    turn: int
    history_before: list[Turn]
    strategy: str | None
    strategy_index: int | None
    strategy_prob: float | None
    strategy_entropy: float | None
    preference: str
    retrieved: list[str]
    retrieval_scores: list[float]
    ranking: list[str]
    chosen_item: str | None
    chooser_probs: list[float]
    reply: str
    refinements: int
    mentioned_item: str | None
    user_reply: str
    user_action: str
    covers_target: bool | None
    p_accept: float | None
    accepted: bool
    reward: float | None
    rating: float | None
    stop: bool
    done: bool = False
    stop_reason: str | None = None
    parse_failures: dict[str, int] = field(default_factory=dict)
    facts: list[str] = field(default_factory=list)  # in memory only (facts of ``retrieved``)


@dataclass
class Episode:
    """One simulated dialogue."""

    dialog_id: str
    target: SimTarget
    system: str
    user_open: str
    turns: list[TurnRecord]
    accepted: bool
    accepted_item: str | None
    stop_reason: str | None
    parse_failures: dict[str, int]  # summed over turns

    @property
    def history(self) -> list[Turn]:
        """The whole dialogue as Turns (user opening, then reply / user reply pairs)."""
        h = [Turn(SEEKER, self.user_open)]
        for t in self.turns:
            h += [Turn(RECOMMENDER, t.reply, t.strategy), Turn(SEEKER, t.user_reply)]
        return h

    @property
    def rewards(self) -> list[float | None]:
        return [t.reward for t in self.turns]


_TYPES: dict[str, tuple] = {
    "schema": (str,),
    "system": (str,),
    "dialog_id": (str,),
    "turn": (int,),
    "dataset": (str,),
    "user_id": (str,),
    "target_genres": (list,),
    "persona": (str, type(None)),
    "user_open": (str, type(None)),
    "strategy": (str, type(None)),
    "strategy_index": (int, type(None)),
    "strategy_prob": (float, int, type(None)),
    "strategy_entropy": (float, int, type(None)),
    "preference": (str,),
    "retrieved": (list,),
    "retrieval_scores": (list,),
    "ranking": (list,),
    "chosen_item": (str, type(None)),
    "chooser_probs": (list,),
    "reply": (str,),
    "refinements": (int,),
    "mentioned_item": (str, type(None)),
    "user_reply": (str,),
    "user_action": (str,),
    "covers_target": (bool, type(None)),
    "p_accept": (float, int, type(None)),
    "accepted": (bool,),
    "reward": (float, int, type(None)),
    "rating": (float, int, type(None)),
    "stop": (bool,),
    "done": (bool,),
    "stop_reason": (str, type(None)),
    "parse_failures": (dict,),
}
FIELDS = tuple(_TYPES)


class TranscriptError(ValueError):
    def __init__(self, path, line, msg):
        self.path, self.line = str(path), line
        super().__init__(f"{path}:{line}: {msg}")


def validate_row(row: Any) -> list[str]:
    """Problems with one transcript line (empty list = valid): its shape first (fields and their
    types), then, only on a well-shaped row, the rules between its values."""
    if not isinstance(row, dict):
        return ["not a JSON object"]
    return _shape_errors(row) or _value_errors(row)


def _shape_errors(row: dict) -> list[str]:
    errs = [f"missing field {k!r}" for k in FIELDS if k not in row]
    errs += [f"unknown field {k!r}" for k in row if k not in _TYPES]
    for k, types in _TYPES.items():
        if k in row and not isinstance(row[k], types) or (k in row and types[0] is int and isinstance(row[k], bool)):
            errs.append(f"field {k!r}: {type(row[k]).__name__} is not {'/'.join(t.__name__ for t in types)}")
    return errs


def _outside(value: float | None, lo: float, hi: float) -> bool:
    return value is not None and not lo <= value <= hi


#: (rule broken?, message) over a row whose fields and types are valid, in reporting order
_VALUE_RULES: tuple[tuple[Callable[[dict], bool], Callable[[dict], str]], ...] = (
    (lambda r: r["schema"] != SCHEMA, lambda r: f"schema {r['schema']!r} != {SCHEMA!r}"),
    (lambda r: r["turn"] < 0, lambda r: "turn < 0"),
    (lambda r: (r["turn"] == 0) != (r["user_open"] is not None), lambda r: "user_open must be set on turn 0 only"),
    (lambda r: _outside(r["reward"], 0.0, 1.0), lambda r: f"reward {r['reward']} outside [0, 1]"),
    (lambda r: _outside(r["rating"], 1.0, 5.0), lambda r: f"rating {r['rating']} outside [1, 5]"),
    (lambda r: _outside(r["strategy_prob"], 0.0, 1.0), lambda r: "strategy_prob outside [0, 1]"),
    (lambda r: r["done"] != (r["stop_reason"] is not None), lambda r: "stop_reason must be set exactly when done"),
    (
        lambda r: r["stop_reason"] is not None and r["stop_reason"] not in STOP_REASONS,
        lambda r: f"stop_reason {r['stop_reason']!r} not in {STOP_REASONS}",
    ),
    (lambda r: r["accepted"] and r["mentioned_item"] is None, lambda r: "accepted without a mentioned_item"),
    (
        lambda r: r["chosen_item"] is not None and bool(r["retrieved"]) and r["chosen_item"] not in r["retrieved"],
        lambda r: "chosen_item not among retrieved",
    ),
    (
        lambda r: len(r["retrieval_scores"]) != len(r["retrieved"]),
        lambda r: "retrieval_scores and retrieved differ in length",
    ),
    (
        lambda r: bool(r["retrieved"]) and r["ranking"][: len(r["retrieved"])] != r["retrieved"],
        lambda r: "retrieved is not the head of ranking",
    ),
    (
        lambda r: not all(isinstance(v, int) and v >= 0 for v in r["parse_failures"].values()),
        lambda r: "parse_failures values must be counts >= 0",
    ),
)


def _value_errors(row: dict) -> list[str]:
    return [message(row) for broken, message in _VALUE_RULES if broken(row)]


def read_rows(path: str | os.PathLike) -> list[dict]:
    """All rows of a transcript; raises :class:`TranscriptError` (file:line: problem) on the first
    invalid line."""
    rows = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TranscriptError(path, n, f"not UTF-8 text (byte {e.start + 1})") from None
            if not line.strip():
                continue
            try:
                row = parse_json(line)  # never RecursionError: a line nested too deep is invalid
            except BadJSON as e:
                raise TranscriptError(path, n, f"invalid JSON ({e.msg})") from None
            errs = validate_row(row)
            if errs:
                raise TranscriptError(path, n, "; ".join(errs))
            rows.append(row)
    return rows


def check_dialogues(path: str | os.PathLike, rows: list[dict]) -> dict[str, list[dict]]:
    """``rows`` grouped by dialogue (file order); raises :class:`TranscriptError` unless each
    dialogue's rows are turns 0..n-1 in order with no turn before the last marked ``done`` (every
    line can be valid alone while two writers interleaved, e.g. turns 0,0,1,2,1,2). A partly
    written last turn range (not yet ``done``) is allowed."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["dialog_id"], []).append(r)
    for d, rs in by.items():
        turns = [r["turn"] for r in rs]
        if turns != list(range(len(rs))):
            shown = ",".join(map(str, turns[:20])) + (",..." if len(turns) > 20 else "")
            raise TranscriptError(path, 0, f"dialog {d}: turns {shown} are not 0..{len(rs) - 1} in order")
        if any(r["done"] for r in rs[:-1]):
            raise TranscriptError(path, 0, f"dialog {d}: a turn before the last is marked done")
    return by


def read_rows_for_resume(path: str | os.PathLike) -> list[dict]:
    """The rows of an existing transcript for a rerun to continue from, checked line by line and
    per dialogue. An invalid transcript is never used: it is moved aside to
    ``<name>.invalid-<k>`` with one line on stderr naming both files and the reason, and ``[]``
    is returned (its dialogues are simulated again)."""
    import sys

    try:
        rows = read_rows(path)
        check_dialogues(path, rows)
        return rows
    except TranscriptError as e:
        path = Path(path)
        k = 1
        while path.with_name(f"{path.name}.invalid-{k}").exists():
            k += 1
        aside = path.with_name(f"{path.name}.invalid-{k}")
        os.replace(path, aside)
        print(f"[rso] transcript {path} is invalid ({e}); moved aside to {aside.name}, not used", file=sys.stderr)
        return []


def validate_transcript(path: str | os.PathLike) -> dict[str, Any]:
    """Validate every line and the per-dialogue structure (turns 0..n-1 in order, exactly the last
    one ``done``). Returns a summary {rows, dialogues, finished, turns_per_dialogue}; raises
    :class:`TranscriptError` on the first problem."""
    rows = read_rows(path)
    by = check_dialogues(path, rows)
    finished = sum(rs[-1]["done"] for rs in by.values())
    return {
        "rows": len(rows),
        "dialogues": len(by),
        "finished": finished,
        "turns_per_dialogue": {d: len(rs) for d, rs in by.items()},
    }


def record_to_row(system: str, target: SimTarget, rec: TurnRecord, user_open: str) -> dict:
    row = {
        "schema": SCHEMA,
        "system": system,
        "dialog_id": target.dialog_id,
        "turn": rec.turn,
        "dataset": target.dataset,
        "user_id": target.user_id,
        "target_genres": list(target.target_genres),
        "persona": target.persona.description if rec.turn == 0 else None,
        "user_open": user_open if rec.turn == 0 else None,
    }
    for k in FIELDS[len(row) :]:
        row[k] = getattr(rec, k)
    return row


def append_rows(path: Path, rows: Iterable[dict]) -> None:
    """Append lines and flush to disk (a killed run loses at most the step being written)."""
    with open(path, "a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def rewrite_rows(path: Path, rows: Iterable[dict]) -> None:
    """Atomically replace the transcript with ``rows``."""
    tmp = temp_sibling(path)
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def episode_from_rows(rows: list[dict], target: SimTarget | None = None) -> Episode:
    """Rebuild an :class:`Episode` from one dialogue's rows (turn order). Without ``target`` the
    target is rebuilt from the rows (persona text from turn 0)."""
    r0 = rows[0]
    if target is None:
        target = SimTarget(
            r0["dialog_id"],
            r0["dataset"],
            r0["user_id"],
            Persona(r0["user_id"], r0["persona"] or ""),
            list(r0["target_genres"]),
        )
    hist = [Turn(SEEKER, r0["user_open"])]
    turns = []
    pf: dict[str, int] = {}
    for r in rows:
        kw = {k: r[k] for k in FIELDS if k in TurnRecord.__dataclass_fields__}
        turns.append(TurnRecord(history_before=list(hist), **kw))
        hist += [Turn(RECOMMENDER, r["reply"], r["strategy"]), Turn(SEEKER, r["user_reply"])]
        for k, v in r["parse_failures"].items():
            pf[k] = pf.get(k, 0) + v
    last = rows[-1]
    acc = [r for r in rows if r["accepted"]]
    return Episode(
        r0["dialog_id"],
        target,
        r0["system"],
        r0["user_open"],
        turns,
        bool(acc),
        acc[0]["mentioned_item"] if acc else None,
        last["stop_reason"],
        pf,
    )


def finished_episodes(path: str | os.PathLike, system_name: str, targets: Iterable[SimTarget]) -> dict[str, Episode]:
    """What a rerun on an existing transcript can keep: the Episodes of ``targets`` whose
    dialogues are finished in ``path``, by dialog_id (``{}`` when there is no file yet).

    The file is brought to a state the run can append to: an invalid transcript is moved aside
    (:func:`read_rows_for_resume`), and the rows of partly written dialogues (no turn marked
    ``done``, e.g. a run killed mid-dialogue) are removed so those dialogues are simulated again
    from their start. Finished dialogues of other targets stay in the file but are not returned.
    Raises ``ValueError`` naming the file if it holds turns of another system: appending to it
    would mix two systems in one transcript."""
    path = Path(path)
    if not path.exists():
        return {}
    rows = read_rows_for_resume(path)
    other = {r["system"] for r in rows} - {system_name}
    if other:
        raise ValueError(
            f"{path}: transcript holds system(s) {sorted(other)}, not {system_name}; use one transcript per system"
        )
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["dialog_id"], []).append(r)
    keep = {d: rs for d, rs in groups.items() if rs[-1]["done"]}
    if sum(map(len, keep.values())) != len(rows):  # a partly written dialogue is run again whole
        rewrite_rows(path, [r for rs in keep.values() for r in rs])
    by_id = {t.dialog_id: t for t in targets}
    return {d: episode_from_rows(rs, by_id[d]) for d, rs in keep.items() if d in by_id}


def read_episodes(path: str | os.PathLike, finished_only: bool = True) -> list[Episode]:
    """Episodes in a transcript (file order of first appearance), validated on the way."""
    by: dict[str, list[dict]] = {}
    for r in read_rows(path):
        by.setdefault(r["dialog_id"], []).append(r)
    return [episode_from_rows(rs) for rs in by.values() if rs[-1]["done"] or not finished_only]
