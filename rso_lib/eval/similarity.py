"""Embedding similarity for the evaluation rules that need it (issue 20):

* **the judged item of a dialogue**: the authors' persuasiveness scripts judge WI and PRS on the
  candidate item most similar to the dialogue's last two exchanges (MiniLM embeddings of the
  exchanges vs of each candidate's title and plot), :meth:`ItemRanker.most_similar`;
* **Recall@k of a system without a ranking of its own** (prompt-only LLM CRSs): PC-CRS's
  ChatGPT / Llama CRSs rank the whole catalogue by the similarity of the last two utterances
  before the reply to every item's embedding, :meth:`ItemRanker.rank_catalogue`.

:class:`RetrieverRanker` serves both from the Fact Retriever's cached catalogue index (the same
MiniLM and item texts the retriever uses), built only when first needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from rso_lib.eval.transcripts import EvalDialogue

#: exchanges (system reply + user reply) in the judged-item query (the authors: the last two)
SIMILARITY_EXCHANGES = 2
#: utterances in a catalogue-ranking query (PC-CRS ``get_rec``: the last two)
RANKING_UTTERANCES = 2


class ItemRanker(Protocol):
    def most_similar(self, queries: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[str | None]:
        """Per query, the candidate item id most similar to it (None if it has no candidate)."""
        ...

    def rank_catalogue(self, queries: Sequence[str]) -> list[list[str]]:
        """Per query, catalogue item ids, most similar first."""
        ...


def judged_item_query(d: EvalDialogue, exchanges: int = SIMILARITY_EXCHANGES) -> str:
    """The authors' similarity query: the last ``exchanges`` system turns with the user's replies
    (``Recommender: ...`` / ``Seeker: ...`` lines); the user's opening if there is no turn."""
    lines = []
    for t in d.turns[-exchanges:]:
        lines.append(f"Recommender: {t.reply.strip()}")
        if t.user_reply.strip():
            lines.append(f"Seeker: {t.user_reply.strip()}")
    return "\n".join(lines) or f"Seeker: {d.user_open.strip()}"


def ranking_query(d: EvalDialogue, utterances: int = RANKING_UTTERANCES) -> str:
    """PC-CRS's ranking query for the dialogue's last system turn: the last ``utterances``
    utterances before that reply (``user: ... assistant: ...``), as ``get_rec`` builds it."""
    before_last = d.utterances()
    # drop the last system reply and what followed it: the ranking is made before the reply
    last_reply = max((k for k, (r, _) in enumerate(before_last) if r == "assistant"), default=len(before_last))
    ctx = before_last[:last_reply][-utterances:]
    return " ".join(f"{r}: {x.strip()}" for r, x in ctx)


class RetrieverRanker:
    """:class:`ItemRanker` over a Fact Retriever's catalogue index.

    Args:
        retriever: a :class:`rso_lib.experts.retriever.FactRetriever`, or a zero-argument function
            returning one (called on first use, so evaluation that needs no similarity never
            loads the embedder).
    """

    def __init__(self, retriever: Any | Callable[[], Any]):
        self._src = retriever
        self._r = None if callable(retriever) else retriever

    @property
    def retriever(self):
        if self._r is None:
            self._r = self._src()
        return self._r

    def most_similar(self, queries: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[str | None]:
        from rso_lib.experts.retriever import item_description

        r = self.retriever
        need = [k for k, c in enumerate(candidates) if len(c) > 1]
        out: list[str | None] = [c[0] if len(c) == 1 else None for c in candidates]
        if not need:
            return out
        q = r.encode([queries[k] for k in need])  # [B, D] unit rows
        for row, k in zip(q, need):
            ids = list(candidates[k])
            emb = r.encode([item_description(r.items[i]) for i in ids])  # [C, D]
            out[k] = ids[int(np.argmax(emb @ row))]  # first of ties: order of first appearance
        return out

    def rank_catalogue(self, queries: Sequence[str]) -> list[list[str]]:
        r = self.retriever
        if not queries:
            return []
        q = r.encode(list(queries))
        _, idx = r.index.search(q, r.rank_n)  # [B, rank_n]
        return [[r.ids[j] for j in row if j >= 0] for row in idx]
