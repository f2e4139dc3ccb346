"""What evaluation needs from a finished dialogue, read from engine Episodes or JSONL transcripts.

The dialogue engine writes one JSON line per system turn (schema ``rso.transcript/1``, see
``rso_lib.dialogue.transcript``); :func:`read_transcript` rebuilds the finished Episodes with that
module's validating reader and maps each to a small :class:`EvalDialogue`. Keeping the mapping in
one place means a change of the transcript schema touches one function, not every metric.

Fields read (others are ignored; objects or dicts both work):

* dialogue: ``dialog_id``, ``system``, ``target`` (``dataset``, ``persona.description``,
  ``target_genres``), ``accepted``, ``accepted_item``, ``turns``, ``parse_failures``,
  ``user_open``;
* turn: ``strategy``, ``reply``, ``user_reply``, ``ranking`` (else ``retrieved``: item ids, best
  first), ``retrieved`` (the top-K candidates offered to the system), ``chosen_item`` (the item
  whose facts the Actor got), ``mentioned_item`` (the item the user saw named), ``reward`` /
  ``stop`` (the evaluator's Eq. 9 acceptance reward and stop rule; the final turn's ``stop`` is the
  paper's Conv-SR), ``parse_failures`` (dict of counts by role, or an int).

The item a turn *presents* is ``mentioned_item`` if the simulator found one named in the reply,
else ``chosen_item``; the dialogue's recommended item is the accepted item, else the last
presented one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rso_lib.data.records import DataError


@dataclass
class EvalTurn:
    reply: str  # the system's reply
    user_reply: str = ""
    strategy: str | None = None  # canonical strategy id, None for systems without a planner
    retrieved: list[str] = field(default_factory=list)  # item ids, best first (full ranking kept)
    candidates: list[str] = field(default_factory=list)  # the top-K items the system was offered
    chosen_item: str | None = None  # the item whose facts the Actor got, if any
    mentioned_item: str | None = None  # the item the user saw named in the reply, if any
    parse_failures: int = 0
    reward: float | None = None  # the evaluator's turn reward in [0, 1] (Eq. 9), None if not judged
    stop: bool = False  # the evaluator's reward passed the threshold tau (Eq. 9 stop rule)

    @property
    def presented_item(self) -> str | None:
        return self.mentioned_item or self.chosen_item


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
    accepted_item: str | None = None
    user_open: str = ""  # the simulated user's opening message

    @property
    def recommended_item(self) -> str | None:
        """The accepted item, else the last item the system presented."""
        if self.accepted_item:
            return self.accepted_item
        for t in reversed(self.turns):
            if t.presented_item:
                return t.presented_item
        return None

    @property
    def reward_success(self) -> bool:
        """The paper's Conv-SR for this dialogue ("the user ultimately accepts", judged by the
        evaluator): the acceptance reward of the *final* state passed tau (Eq. 9's stop rule,
        which never fires before a movie is named; rso_lib.experts.rewarder.should_stop). A
        dialogue whose user accepted and then turned the movie down again is not a success."""
        return bool(self.turns) and self.turns[-1].stop

    @property
    def own_ranking(self) -> list[str]:
        """The system's own last non-empty retrieval ranking ([] for a system without one)."""
        for t in reversed(self.turns):
            if t.retrieved:
                return list(t.retrieved)
        return []

    @property
    def named_items(self) -> list[str]:
        """The distinct movies the system presented, most recent first."""
        return list(dict.fromkeys(t.presented_item for t in reversed(self.turns) if t.presented_item))

    @property
    def final_ranking(self) -> list[str]:
        """The own ranking, else the named movies (the ``RECALL_RANKING: named`` rule; the
        catalogue rule is :func:`rso_lib.eval.evaluate.recall_ranking`)."""
        return self.own_ranking or self.named_items

    @property
    def candidates(self) -> list[str]:
        """Every item the system was offered (top-K per turn) or presented, in order of first
        appearance: what the authors' scripts pick the most similar candidate from."""
        seen = [i for t in self.turns for i in (*t.candidates, t.presented_item) if i]
        return list(dict.fromkeys(seen))

    def utterances(self) -> list[tuple[str, str]]:
        """``(role, text)`` in order: the user's opening, then each system reply and user reply
        (roles ``"user"`` / ``"assistant"``; empty texts left out)."""
        out = [("user", self.user_open)]
        for t in self.turns:
            out += [("assistant", t.reply), ("user", t.user_reply)]
        return [(r, x) for r, x in out if x and x.strip()]


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
        ranking = _get(t, "ranking") or _get(t, "retrieved") or []
        retrieved = [i for i in (_item_id(r) for r in ranking) if i is not None]
        offered = [i for i in (_item_id(r) for r in (_get(t, "retrieved") or [])) if i is not None]
        turns.append(
            EvalTurn(
                reply=str(_get(t, "reply", "") or ""),
                user_reply=str(_get(t, "user_reply", "") or ""),
                strategy=_get(t, "strategy"),
                retrieved=retrieved,
                candidates=offered,
                chosen_item=_item_id(_get(t, "chosen_item")),
                mentioned_item=_item_id(_get(t, "mentioned_item")),
                parse_failures=_count(_get(t, "parse_failures")),
                reward=_get(t, "reward"),
                stop=bool(_get(t, "stop", False)),
            )
        )
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
        accepted_item=_item_id(_get(ep, "accepted_item")),
        user_open=str(_get(ep, "user_open", "") or ""),
    )


def read_transcript(
    path: str | Path, system: str | None = None, dataset: str | None = None, finished_only: bool = True
) -> list[EvalDialogue]:
    """Read an engine transcript (``rso.transcript/1`` JSONL, one line per turn) into
    EvalDialogues, in file order. Every line is validated by the engine's reader, which raises
    ``TranscriptError`` naming file and line; unfinished dialogues are skipped unless
    ``finished_only`` is False."""
    from rso_lib.dialogue.transcript import read_episodes  # eval sits right of dialogue

    path = Path(path)
    if not path.exists():
        raise DataError(path, "transcript not found (run the dialogues first)")
    return [
        to_eval_dialogue(e, system=system, dataset=dataset) for e in read_episodes(path, finished_only=finished_only)
    ]
