"""Fact Retriever (paper Eq. 4): e_t = top-K(sim(Enc(s_t, p_t), Enc(items))) and their facts.

* Items are described by title, year, genres and plot (:func:`item_description`), embedded once
  per catalogue with the sentence embedder (MiniLM by default), L2-normalised, and put in a faiss
  ``IndexFlatIP`` (inner product of unit vectors = cosine similarity; exact search: 6.5k x 384 is
  tiny). The index is cached on disk, keyed by the embedder name and a hash of the catalogue
  descriptions, so a changed catalogue or embedder never reuses a stale index.
* A query is the recent turns plus the inferred preference. All active dialogues' queries are
  embedded in one batch and searched with one faiss call.
* Each result keeps the full ranking (``rank_n`` ids, default 50) so that Recall@k can be computed
  later from the transcript, plus the top-K items' knowledge-base facts for the Actor.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rso_lib.data.records import Item, Turn
from rso_lib.paths import temp_sibling


def item_description(item: Item) -> str:
    """The text embedded for an item: ``Title (year). Genres: a, b. Plot``."""
    parts = [item.name]
    if item.genres:
        parts.append("Genres: " + ", ".join(item.genres))
    if item.plot:
        parts.append(item.plot)
    return ". ".join(parts)


def query_text(history: Sequence[Turn], preference: str, recent_turns: int = 2) -> str:
    """The retrieval query of Eq. 4: the last ``recent_turns`` utterances + the preference."""
    recent = " ".join(t.text for t in list(history)[-recent_turns:])
    return (preference + " " + recent).strip() if preference else recent.strip()


@dataclass
class Retrieval:
    """What the Fact Retriever returns for one dialogue."""

    item_ids: list[str]  # top-K ids, best first
    scores: list[float]  # their cosine similarities
    ranking: list[str]  # top-``rank_n`` ids (for Recall@k), best first
    facts: list[str] = field(default_factory=list)  # Item.facts() of the top-K


class FactRetriever:
    """Eq. 4 over a catalogue.

    Args:
        items: the catalogue (a ``KnowledgeBase`` or any iterable of :class:`Item`).
        embedder: a ``sentence_transformers.SentenceTransformer`` (``rso_lib.llm.load_embedder()``).
        embedder_name: stable name of the embedder, part of the cache key (default the MiniLM).
        cache_dir: the index goes to ``cache_dir/retriever/<key>.faiss``, ``key`` a digest of the
            embedder name and every item's description (the kit passes the user cache,
            ``$RSO_CACHE_DIR`` or ``~/.cache/rso``); None = no disk cache.
        top_k: items handed to the chooser / Actor (default 5).
        rank_n: length of the recorded ranking (default 50).
        recent_turns: utterances that go into the query (default 2).
        batch_size: embedding batch size when building the index (default 64).
    """

    def __init__(
        self,
        items: Iterable[Item],
        embedder: Any,
        embedder_name: str = "all-MiniLM-L6-v2",
        cache_dir: str | os.PathLike | None = None,
        top_k: int = 5,
        rank_n: int = 50,
        recent_turns: int = 2,
        batch_size: int = 64,
    ):
        import faiss  # imported here: only the retriever needs it

        self.items: dict[str, Item] = {it.item_id: it for it in items}
        if not self.items:
            raise ValueError("FactRetriever: empty catalogue")
        self.ids: list[str] = sorted(self.items)  # fixed order -> reproducible index and ties
        self.embedder, self.embedder_name = embedder, embedder_name
        self.top_k, self.rank_n, self.recent_turns = top_k, min(rank_n, len(self.ids)), recent_turns
        self.batch_size = batch_size
        descs = [item_description(self.items[i]) for i in self.ids]
        h = hashlib.sha256(embedder_name.encode())
        for i, d in zip(self.ids, descs):
            h.update(f"\x00{i}\x01{d}".encode())
        self.cache_key = h.hexdigest()[:20]
        self.index_path = Path(cache_dir) / "retriever" / f"{self.cache_key}.faiss" if cache_dir else None
        self.loaded_from_cache = False
        self.index = self._load_or_build(descs, faiss)

    # -- index -------------------------------------------------------------------------------
    def _load_or_build(self, descs: list[str], faiss):
        p = self.index_path
        if p is not None and p.exists():
            idx = faiss.read_index(str(p))
            meta = json.loads(p.with_suffix(".json").read_text())
            if idx.ntotal == len(self.ids) and meta.get("ids") == self.ids:
                self.loaded_from_cache = True
                return idx
        emb = self.encode(descs, batch_size=self.batch_size)  # [N_items, D], unit rows
        idx = faiss.IndexFlatIP(emb.shape[1])
        idx.add(emb)
        if p is not None:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_sibling(p)
            faiss.write_index(idx, str(tmp))
            p.with_suffix(".json").write_text(json.dumps({"embedder": self.embedder_name, "ids": self.ids}))
            os.replace(tmp, p)  # index last: its presence means both files are complete
        return idx

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-norm float32 embeddings ``[len(texts), D]``."""
        emb = self.embedder.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(emb, dtype=np.float32)

    # -- Eq. 4 -------------------------------------------------------------------------------
    def retrieve(
        self, histories: Sequence[Sequence[Turn]], preferences: Sequence[str], exclude: Sequence[set[str]] | None = None
    ) -> list[Retrieval]:
        """Top-K items and facts for each dialogue: one embedding batch + one faiss search.

        ``exclude[i]``: item ids left out of dialogue i's ranking (the engine passes the movies
        the user already turned down, so they are not offered again)."""
        if not histories:
            return []
        exclude = exclude or [set()] * len(histories)
        queries = [query_text(h, p, self.recent_turns) for h, p in zip(histories, preferences)]
        q = self.encode(queries, batch_size=max(1, len(queries)))  # [B, D]
        k = min(len(self.ids), self.rank_n + max(map(len, exclude)))
        scores, idx = self.index.search(q, k)  # [B, k] each
        out = []
        for srow, irow, ex in zip(scores, idx, exclude):
            keep = [(self.ids[j], float(s)) for j, s in zip(irow, srow) if j >= 0 and self.ids[j] not in ex]
            keep = keep[: self.rank_n]
            ranking = [i for i, _ in keep]
            top = ranking[: self.top_k]
            out.append(
                Retrieval(
                    item_ids=top,
                    scores=[s for _, s in keep[: len(top)]],
                    ranking=ranking,
                    facts=[self.items[i].facts() for i in top],
                )
            )
        return out
