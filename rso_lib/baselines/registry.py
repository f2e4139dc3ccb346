"""The one registry of PLM baselines: ``kind`` -> (model class, config class), and the two ways a
model is made from it (fresh for training, or loaded from a saved directory).

It sits above :mod:`~rso_lib.baselines.unicrs` and :mod:`~rso_lib.baselines.barcor` (which build
on :mod:`~rso_lib.baselines.common`), so no module imports one that imports it back."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rso_lib.baselines.barcor import BARCOR, BARCORConfig
from rso_lib.baselines.common import PLMBase
from rso_lib.baselines.kg import build_kg
from rso_lib.baselines.unicrs import UniCRS, UniCRSConfig

MODELS: dict[str, tuple[type[PLMBase], type]] = {
    "unicrs": (UniCRS, UniCRSConfig),
    "barcor": (BARCOR, BARCORConfig),
}


def _classes(kind: object, where: str) -> tuple[type[PLMBase], type]:
    if kind not in MODELS:
        raise ValueError(f"{where}: unknown PLM baseline {kind!r} ({' | '.join(MODELS)})")
    return MODELS[kind]


def make_model(kind: str, kg, items, model_cfg: dict) -> PLMBase:
    """A fresh (untrained) model of ``kind`` over graph ``kg`` and catalogue ``items``."""
    cls, cfg_cls = _classes(kind, "make_model")
    return cls(cfg_cls(**model_cfg), kg, items)


def load_plm(path: str | os.PathLike, items, data_dir: str | os.PathLike | None = None):
    """Load a saved UniCRS / BARCOR (``save`` output) for the catalogue ``items``; the graph is
    rebuilt from ``cfg.kg_source`` and must match the saved summary."""
    from safetensors.torch import load_file

    path = Path(path)
    meta_p = path / "plm.json"
    if not meta_p.is_file():
        raise FileNotFoundError(f"{path}: no plm.json (not a saved UniCRS/BARCOR model)")
    meta = json.loads(meta_p.read_text())
    cls, cfg_cls = _classes(meta.get("kind"), str(meta_p))
    cfg = cfg_cls(**meta["config"])
    items = list(items)
    kg = build_kg(cfg.kg_source, items, data_dir)
    if kg.summary() != meta["kg"]:
        raise ValueError(f"{meta_p}: knowledge graph differs from the one trained on: {kg.summary()} vs {meta['kg']}")
    model = cls(cfg, kg, items)
    weights = load_file(str(path / "model.safetensors"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    params = dict(model.named_parameters())
    missing = [k for k in missing if k in params]  # tied aliases are not stored
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()
