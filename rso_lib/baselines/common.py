"""What UniCRS and BARCOR share: the catalogue / graph they rank over, backbone resolution,
saving (safetensors + a JSON config, frozen backbones referenced by name, never copied) and
loading.

A model keeps its frozen backbones out of its ``nn.Module`` tree (in :attr:`PLMBase.frozen`), so
``state_dict()`` holds exactly the trained weights: checkpoints stay small and
:func:`rso_lib.train.checkpoint.load_checkpoint` restores them unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from rso_lib.baselines.kg import KG, EntityLinker
from rso_lib.data.records import Turn
from rso_lib.threads import configure_torch_threads

configure_torch_threads()  # before any torch work: a thread count that changes mid-run changes results

#: names that mean the kit's packaged models (no hub needed)
EMBEDDED_GENERATOR = {"embedded", "smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"}


def resolve_causal_lm(name: str) -> str:
    """A causal-LM directory or hub id: ``"embedded"`` is the packaged SmolLM2-135M-Instruct
    (converted once to safetensors, see :mod:`rso_lib.llm.embedded`); anything else (a directory
    or a hub id such as ``microsoft/DialoGPT-small``) is passed to ``from_pretrained``."""
    if name in EMBEDDED_GENERATOR:
        from rso_lib.llm.embedded import converted_dir

        return str(converted_dir())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


def resolve_text_encoder(name: str) -> str:
    """A text-encoder directory or hub id (``"all-MiniLM-L6-v2"`` = the packaged MiniLM; its
    transformer weights sit at the top of the sentence-transformers directory)."""
    from rso_lib.llm.embeddings import resolve_embedder

    return resolve_embedder(name)


def local_only(name: str) -> bool:
    return Path(name).is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1"


class _Frozen:
    """Holder that hides frozen backbones from ``nn.Module`` registration."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


class PLMBase(nn.Module):
    """Base of the PLM baselines.

    Args:
        cfg: the model's config dataclass (saved as JSON beside the weights).
        kg: the knowledge graph (:mod:`rso_lib.baselines.kg`).
        items: the catalogue (``KnowledgeBase`` or iterable of Items) it ranks.
    """

    kind = "?"

    def __init__(self, cfg, kg: KG, items):
        super().__init__()
        self.cfg, self.kg = cfg, kg
        items = list(items)
        self.items = {it.item_id: it for it in items}
        self.item_ids: list[str] = sorted(self.items)  # fixed order -> reproducible ties
        self.linker = EntityLinker(kg, items)
        self.register_buffer(
            "item_entities", torch.tensor([kg.item_entity[i] for i in self.item_ids]), persistent=False
        )
        self.frozen = _Frozen()

    # -- interface the trainer and wrappers use ----------------------------------------------------
    def loss(self, examples, task: str) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def item_scores(self, histories: Sequence[Sequence[Turn]]) -> torch.Tensor:  # pragma: no cover
        """``[B, n_items]`` scores over :attr:`item_ids`."""
        raise NotImplementedError

    def generate(
        self,
        histories: Sequence[Sequence[Turn]],
        max_new_tokens: int = 40,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """``model.safetensors`` (trained weights only) + ``plm.json`` (kind, config, graph summary)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        # tied weights (BART's shared embeddings / LM head) are stored once, under the name
        # named_parameters() gives them; loading ties them again
        keep = set(dict(self.named_parameters()))
        seen: set[int] = set()
        state = {}
        for k, v in self.state_dict().items():
            ptr = v.data_ptr()
            if ptr in seen and k not in keep:
                continue
            seen.add(ptr)
            state[k] = v.detach().cpu().contiguous().clone()
        save_file(state, str(path / "model.safetensors"))
        meta = {
            "kind": self.kind,
            "config": dataclasses.asdict(self.cfg),
            "kg": self.kg.summary(),
            "items": len(self.item_ids),
        }
        (path / "plm.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
