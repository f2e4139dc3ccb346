"""Training examples for the PLM baselines, cut from recommender turns of real dialogues.

One example per recommender turn (after the first utterance): the context is the turns before it,
the response is the turn's text with the catalogue movies it names replaced by a ``<movie>`` slot
(the template the generators learn; the recommender's top item fills the slot at reply time), the
targets are those movies' catalogue ids (recommendation labels), and the entities are the
knowledge-graph entities linked in the context and the response.

Movies come from the dataset's own annotations where it has them (ReDial's ``@id`` mentions,
resolved to titles by :mod:`rso_lib.data.redial`) and from title matching against the catalogue
otherwise (INSPIRED's strategy split carries no movie annotations).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rso_lib.baselines.kg import EntityLinker, mask_items
from rso_lib.data.records import RECOMMENDER, SEEKER, Dialogue, Turn

SLOT = "<movie>"


@dataclass
class Example:
    dialog_id: str
    context: list[Turn]
    response: str  # with SLOT for each recommended movie
    targets: list[str] = field(default_factory=list)  # catalogue ids named in the response
    context_entities: list[int] = field(default_factory=list)
    response_entities: list[int] = field(default_factory=list)


def format_context(history: Sequence[Turn], max_turns: int = 6) -> str:
    """``User: ...`` / ``System: ...`` lines of the last ``max_turns`` utterances."""
    lines = []
    for t in list(history)[-max_turns:]:
        lines.append(("User: " if t.speaker == SEEKER else "System: ") + t.text.strip())
    return "\n".join(lines)


def context_entities(
    history: Sequence[Turn], linker: EntityLinker, max_turns: int = 6, max_entities: int = 16
) -> list[int]:
    """Entities linked in the last ``max_turns`` utterances, most recent ``max_entities`` kept."""
    ents: list[int] = []
    for t in list(history)[-max_turns:]:
        for e in linker.link(t.text):
            if e in ents:
                ents.remove(e)
            ents.append(e)
    return ents[-max_entities:]


def build_examples(dialogues: Iterable[Dialogue], kb, linker: EntityLinker, max_turns: int = 6) -> list[Example]:
    """Examples (see module docstring) from every recommender turn that has a context."""
    out = []
    for d in dialogues:
        for k, turn in enumerate(d.turns):
            if turn.speaker != RECOMMENDER or k == 0 or not turn.text.strip():
                continue
            ids: list[str] = []
            titles: list[str] = []
            for m in turn.movies:  # dataset annotations first
                it = kb.lookup(m)
                if it is not None and it.item_id not in ids:
                    ids.append(it.item_id)
                titles.append(m)
            if not turn.movies:
                for iid in linker.items_in(turn.text):
                    if iid not in ids:
                        ids.append(iid)
            titles += [kb.items[i].title for i in ids]
            ctx = d.turns[:k]
            out.append(
                Example(
                    d.dialog_id,
                    ctx,
                    mask_items(turn.text, titles, SLOT),
                    ids,
                    context_entities(ctx, linker, max_turns),
                    linker.link(turn.text),
                )
            )
    return out


def subsample(examples: list[Example], n: int | None, seed: int = 0, prefer_targets: bool = True) -> list[Example]:
    """At most ``n`` examples (None: all), drawn with a seeded RNG; examples with recommendation
    targets are kept first when ``prefer_targets`` (they carry both training signals)."""
    if n is None or n >= len(examples):
        return list(examples)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(examples))
    if prefer_targets:
        order = sorted(order, key=lambda i: not examples[i].targets)
    return [examples[i] for i in sorted(order[:n])]
