"""UniCRS / BARCOR as engine parts: a ranker with the Fact Retriever's ``retrieve`` signature and a
generator with the Actor's ``reply`` signature, so :class:`rso_lib.dialogue.engine.DialogueEngine`
runs them unchanged.

* :class:`PLMRanker`: the model's own item scores over the whole catalogue; ``item_ids`` = its
  top-``top_k`` (default 1: the item the reply names), ``ranking`` = its top-``rank_n`` (Recall@k
  is computed from it), movies the user turned down left out. ``facts`` are the KB facts of the
  top items (the engine hands them to nobody for these systems: the generator does not read them).
* :class:`PLMGenerator`: the model writes a reply template; each ``<movie>`` slot is filled with the
  top-ranked candidate's name (the engine passes the ranker's top items as ``candidate_names``,
  the systems run without the LLM chooser), as UniCRS and BARCOR do. A reply with no slot
  recommends nothing that turn. An empty generation is counted (``empty`` flags), and replaced by
  a fixed question so the dialogue can go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rso_lib.baselines.examples import SLOT
from rso_lib.data.records import Turn
from rso_lib.experts.retriever import Retrieval

FALLBACK_REPLY = "What kind of movie are you looking for?"


class PLMRanker:
    """``retrieve(histories, preferences, exclude) -> list[Retrieval]`` from a PLM's item scores.

    Args:
        model: a trained UniCRS / BARCOR (``item_scores``, ``item_ids``, ``items``).
        top_k: ids in ``Retrieval.item_ids`` (default 1).
        rank_n: ranking length recorded for Recall@k (default 50).
    """

    def __init__(self, model, top_k: int = 1, rank_n: int = 50):
        self.model, self.top_k, self.rank_n = model, top_k, min(rank_n, len(model.item_ids))
        self.items = model.items  # the engine reads names and facts from here

    def retrieve(
        self,
        histories: Sequence[Sequence[Turn]],
        preferences: Sequence[str] = (),
        exclude: Sequence[set[str]] | None = None,
    ) -> list[Retrieval]:
        if not histories:
            return []
        exclude = exclude or [set()] * len(histories)
        scores = self.model.item_scores(histories).float().numpy()  # [B, n_items]
        out = []
        for row, ex in zip(scores, exclude):
            order = np.argsort(-row, kind="stable")  # ties: catalogue id order
            keep = [j for j in order[: self.rank_n + len(ex)] if self.model.item_ids[j] not in ex][: self.rank_n]
            ranking = [self.model.item_ids[j] for j in keep]
            top = ranking[: self.top_k]
            out.append(
                Retrieval(
                    item_ids=top,
                    scores=[float(row[j]) for j in keep[: len(top)]],
                    ranking=ranking,
                    facts=[self.items[i].facts() for i in top],
                )
            )
        return out


class PLMGenerator:
    """``reply(histories, strategy_descriptions, preferences, facts, item_names, candidate_names,
    seed) -> (replies, empty_flags)``, the Actor's signature; strategies, preferences and facts are
    ignored (these systems have no such experts).

    Args:
        model: a trained UniCRS / BARCOR (``generate``).
        max_new_tokens: reply length (default 40).
        temperature: 0 = greedy (default), else sampled with the engine's per-step seed.
    """

    def __init__(self, model, max_new_tokens: int = 40, temperature: float = 0.0):
        self.model, self.max_new_tokens, self.temperature = model, max_new_tokens, temperature

    def reply(
        self,
        histories: Sequence[Sequence[Turn]],
        strategy_descriptions: Sequence[str | None] = (),
        preferences: Sequence[str] = (),
        facts: Sequence[Sequence[str]] = (),
        item_names: Sequence[str | None] = (),
        candidate_names: Sequence[Sequence[str]] | None = None,
        seed: int | None = None,
        modes: Sequence[str] | None = None,
    ) -> tuple[list[str], list[int]]:
        """``modes`` (the LLM Actor's recommend / ask switch) is ignored: the generator decides
        itself whether its template has a ``<movie>`` slot."""
        if not histories:
            return [], []
        n = len(histories)
        item_names = list(item_names) or [None] * n
        candidate_names = list(candidate_names or [()] * n)
        raw = self.model.generate(histories, self.max_new_tokens, self.temperature, seed)
        replies, empty = [], []
        for text, name, cands in zip(raw, item_names, candidate_names):
            fill = name or (cands[0] if cands else None)
            text = fill_slots(text, fill)
            empty.append(int(not text))
            replies.append(text or FALLBACK_REPLY)
        return replies, empty

    def timed(self, engine) -> _TimedReply:
        """This generator with its calls timed by ``engine`` (what ``build_system`` installs)."""
        return _TimedReply(self, engine)


def fill_slots(template: str, name: str | None) -> str:
    """Every ``<movie>`` slot -> ``name`` (None: the slot's sentence stays, the slot becomes
    "a movie")."""
    return template.replace(SLOT, name if name else "a movie").strip()


class _TimedReply:
    """The generator's ``reply`` through the engine's timer (its time counts as the actor role's)."""

    def __init__(self, gen: PLMGenerator, engine):
        self.gen, self.engine = gen, engine
        self.sampling = None  # no LLM sampling (the engine reads it only for PC-CRS self-checks)

    def reply(self, *args, **kw):
        return self.engine._model("actor", "reply", self.gen.reply, *args, **kw)


def plm_dir(profile: str, kind: str, dataset: str) -> Path:
    """Where the chain saves a trained model: ``runs/<profile>/checkpoints/plm/<kind>-<dataset>/model``."""
    from rso_lib.paths import run_dir

    return run_dir(profile) / "checkpoints" / "plm" / f"{kind}-{dataset}" / "model"


def plm_parts(
    plm,
    kb,
    kind: str,
    top_k: int = 1,
    rank_n: int = 50,
    max_new_tokens: int = 40,
    temperature: float = 0.0,
    data_dir=None,
) -> tuple[PLMRanker, PLMGenerator]:
    """Ranker + generator of a trained UniCRS / BARCOR for :func:`rso_lib.dialogue.systems.build_system`.

    Args:
        plm: the model, or the directory it was saved to (``plm_dir(...)``, ``train_plm``'s
            ``<out>/model``).
        kb: the catalogue the engine recommends from (must be the one the model was trained on).
        kind: ``"unicrs"`` | ``"barcor"`` (the system's; a model of the other kind is refused).
        top_k / rank_n: see :class:`PLMRanker`; max_new_tokens / temperature: :class:`PLMGenerator`.
        data_dir: data directory for the ReDial KG files when loading (default: ``RSO_DATA_DIR``).
    """
    if plm is None:
        raise ValueError(
            f"system {kind.upper()} needs a trained model: build_system(..., plm=<model or directory>) "
            f"(train it with rso_lib.baselines.train.train_plm; saved under {plm_dir('<profile>', kind, '<dataset>')})"
        )
    if isinstance(plm, (str, Path)):
        from rso_lib.baselines.registry import load_plm
        from rso_lib.paths import data_dir as default_data_dir

        plm = load_plm(plm, kb, data_dir or default_data_dir())
    if plm.kind != kind:
        raise ValueError(f"system {kind.upper()} got a {plm.kind} model")
    if set(plm.item_ids) != {it.item_id for it in kb}:
        raise ValueError(
            f"{kind} model ranks {len(plm.item_ids)} items, the engine's catalogue has {len(kb)}: "
            "train it on the same knowledge base"
        )
    plm.eval()
    return PLMRanker(plm, top_k=top_k, rank_n=rank_n), PLMGenerator(plm, max_new_tokens, temperature)
