"""Knowledge graphs for the PLM baselines (UniCRS's R-GCN, BARCOR's light grounding).

* ReDial: the graph the CRS literature uses (``redial/{kg,entity2id,relation2id,entity2type}.json``,
  from PC-CRS / iEvaLM): movies, genres and people linked by ``genre``, ``star``, ``director``,
  ``writer``. Movie entities are named like the catalogue (``Pari (1995)``), which is how catalogue
  items are mapped to entities.
* INSPIRED: no graph ships with the dataset, so :func:`build_kb_kg` builds one of the same schema
  from the knowledge base's facts (genres, director, cast, writer) of every catalogue item.

Every relation gets an inverse (``<rel>_inv``), as usual for R-GCN message passing in both
directions. :func:`EntityLinker` finds the entities a text mentions (movie titles, genres,
people) by token n-gram lookup, the way the CRS datasets' entity annotations are approximated
when the dialogues carry none (INSPIRED's strategy split).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rso_lib.data.records import DataError, Item

RELATIONS = ("genre", "star", "director", "writer")


def _tokens(s: str) -> list[str]:
    return [t.lower() for t in re.findall(r"[A-Za-z0-9]+", s)]


@dataclass
class KG:
    """A typed multi-relational graph.

    Attributes:
        entities: entity names, index = entity id.
        entity_types: ``movie`` | ``genre`` | ``person`` per entity.
        relations: relation names (forward relations then their ``_inv`` copies).
        edges: ``int64 [E, 3]`` rows ``(head, relation, tail)``, inverse edges included.
        item_entity: catalogue item id -> entity id (every catalogue item has one).
        source: where it came from (``"redial-kg"`` | ``"kb-facts"``).
    """

    entities: list[str]
    entity_types: list[str]
    relations: list[str]
    edges: np.ndarray
    item_entity: dict[str, int]
    source: str
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._index = {n: i for i, n in enumerate(self.entities)}

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    def entity_id(self, name: str) -> int | None:
        return self._index.get(name)

    def summary(self) -> dict:
        return {
            "source": self.source,
            "entities": self.num_entities,
            "relations": self.num_relations,
            "edges": int(len(self.edges)),
            "items": len(self.item_entity),
        }


def _with_inverse(triples: list[tuple[int, int, int]], n_rel: int) -> np.ndarray:
    fwd = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    inv = fwd[:, [2, 1, 0]].copy()
    inv[:, 1] += n_rel
    return np.concatenate([fwd, inv])


def load_redial_kg(data_dir: str | Path, items: Iterable[Item]) -> KG:
    """The ReDial KG files under ``data_dir/redial``; ``items`` (the catalogue) are mapped to
    movie entities by name. A catalogue movie the graph lacks becomes an isolated entity."""
    d = Path(data_dir) / "redial"
    paths = {k: d / f"{k}.json" for k in ("kg", "entity2id", "relation2id", "entity2type")}
    data = {}
    for k, p in paths.items():
        if not p.is_file():
            raise DataError(p, "ReDial knowledge-graph file missing (PC-CRS data/redial/; see rso_lib.data.fetch)")
        try:
            data[k] = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise DataError(p, f"not valid JSON: {e}", line=e.lineno) from None
    e2id, r2id, e2t = data["entity2id"], data["relation2id"], data["entity2type"]
    n_ent = max(e2id.values()) + 1
    entities = [""] * n_ent
    for name, i in e2id.items():
        entities[int(i)] = name
    types = [e2t.get(n, "movie") for n in entities]
    rel_names = [r for r, _ in sorted(r2id.items(), key=lambda kv: kv[1])]
    triples = []
    for head, rows in data["kg"].items():
        for row in rows:
            if len(row) != 2:
                raise DataError(paths["kg"], f"entity {head}: expected [relation, tail], got {row!r}", field=head)
            r, t = int(row[0]), int(row[1])
            if not (0 <= r < len(rel_names) and 0 <= t < n_ent and 0 <= int(head) < n_ent):
                raise DataError(paths["kg"], f"entity {head}: relation {r} or tail {t} out of range", field=head)
            triples.append((int(head), r, t))
    item_entity = {}
    for it in items:
        i = e2id.get(it.name, e2id.get(it.title))
        if i is None:
            entities.append(it.name)
            types.append("movie")
            i = len(entities) - 1
        item_entity[it.item_id] = int(i)
    rels = rel_names + [r + "_inv" for r in rel_names]
    return KG(entities, types, rels, _with_inverse(triples, len(rel_names)), item_entity, "redial-kg")


def build_kb_kg(items: Iterable[Item]) -> KG:
    """A graph of the ReDial schema built from the catalogue's facts: item -genre-> genre,
    -star-> person, -director-> person, -writer-> person."""
    entities: list[str] = []
    types: list[str] = []
    index: dict[tuple[str, str], int] = {}

    def ent(name: str, typ: str) -> int:
        key = (typ, name)
        if key not in index:
            index[key] = len(entities)
            entities.append(name)
            types.append(typ)
        return index[key]

    items = list(items)
    item_entity = {it.item_id: ent(it.name, "movie") for it in items}
    triples = []
    for it in items:
        h = item_entity[it.item_id]
        for r, (vals, typ) in enumerate(
            ((it.genres, "genre"), (it.stars, "person"), (it.director, "person"), (it.writer, "person"))
        ):
            for v in vals:
                if v:
                    triples.append((h, r, ent(v, typ)))
    rels = list(RELATIONS) + [r + "_inv" for r in RELATIONS]
    return KG(entities, types, rels, _with_inverse(triples, len(RELATIONS)), item_entity, "kb-facts")


def build_kg(source: str, items: Iterable[Item], data_dir: str | Path | None = None) -> KG:
    """``source="redial"``: the ReDial KG files; ``"inspired"`` (or ``"kb"``): built from the
    knowledge base facts of ``items``."""
    if source == "redial":
        if data_dir is None:
            raise ValueError("build_kg('redial') needs data_dir")
        return load_redial_kg(data_dir, items)
    if source in ("inspired", "kb"):
        return build_kb_kg(items)
    raise ValueError(f"unknown KG source {source!r} (redial | inspired | kb)")


class EntityLinker:
    """Entities named in a text, found by token n-gram lookup over entity names.

    Movies match by title without the year (the year, when written, picks among remakes);
    one-word names shorter than 5 letters are ignored (``It``, ``Up``: ordinary words).

    Args:
        kg: the graph.
        items: the catalogue (titles for movie entities).
        max_len: longest name in tokens (default 8).
    """

    def __init__(self, kg: KG, items: Iterable[Item], max_len: int = 8):
        self.kg, self.max_len = kg, max_len
        self.by_tokens: dict[tuple[str, ...], list[int]] = {}
        self.entity_item: dict[int, str] = {e: i for i, e in kg.item_entity.items()}
        names: list[tuple[str, int]] = [(it.title, kg.item_entity[it.item_id]) for it in items]
        names += [(n, e) for e, (n, t) in enumerate(zip(kg.entities, kg.entity_types)) if t != "movie"]
        for name, e in names:
            toks = tuple(_tokens(name))
            if (
                not toks
                or len(toks) > max_len
                or (len(toks) == 1 and len(toks[0]) < 5 and toks[0] not in _SHORT_GENRES)
            ):
                continue
            self.by_tokens.setdefault(toks, []).append(e)

    def link(self, text: str) -> list[int]:
        """Entity ids mentioned in ``text``, in order of appearance, longest match first, no repeats.

        A movie match must start with a capital letter or a digit (titles are written in title
        case; "frozen" is an adjective) and must not run on into a number or another capitalised
        word ("Frozen 2", "Avengers Endgame" are other movies than "Frozen", "Avengers")."""
        spans = [(m.start(), m.end()) for m in re.finditer(r"[A-Za-z0-9]+", text)]
        raw = [text[a:b] for a, b in spans]
        toks = [t.lower() for t in raw]
        out: list[int] = []
        i = 0
        while i < len(toks):
            for n in range(min(self.max_len, len(toks) - i), 0, -1):
                ids = self.by_tokens.get(tuple(toks[i : i + n]))
                if ids and self.kg.entity_types[ids[0]] == "movie":
                    j = i + n
                    nxt = raw[j] if j < len(raw) else ""
                    gap = text[spans[j - 1][1] : spans[j][0]] if nxt else ""
                    runs_on = not re.search(r"[.!?,;(]", gap) and (
                        ":" in gap or (nxt[:1].isdigit() and not _YEAR.fullmatch(nxt)) or nxt[:1].isupper()
                    )
                    if not (raw[i][0].isupper() or raw[i][0].isdigit()) or runs_on:
                        ids = None
                if ids:
                    e = self._year_pick(ids, text)
                    if e not in out:
                        out.append(e)
                    i += n
                    break
            else:
                i += 1
        return out

    def items_in(self, text: str) -> list[str]:
        """Catalogue item ids mentioned in ``text``."""
        return [self.entity_item[e] for e in self.link(text) if e in self.entity_item]

    def _year_pick(self, ids: list[int], text: str) -> int:
        for e in ids:
            m = re.search(r"\((\d{4})\)$", self.kg.entities[e])
            if m and m.group(1) in text:
                return e
        return ids[0]


_YEAR = re.compile(r"(19|20)\d\d")
_SHORT_GENRES = {"war", "crime", "music", "drama", "sport"}


def mask_items(text: str, titles: Sequence[str], slot: str = "<movie>") -> str:
    """``text`` with every mention of ``titles`` (with an optional ``(year)``) replaced by ``slot``:
    the response template the generators learn (the item fills the slot at reply time)."""
    for t in sorted(set(titles), key=len, reverse=True):
        if t:
            text = re.sub(re.escape(t) + r"(\s*\(\d{4}\))?", slot, text, flags=re.IGNORECASE)
    return text
