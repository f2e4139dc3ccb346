"""The transformers backend: any local model directory or hub id, batched, on CPU or GPU.

This is the one generation / option-scoring implementation of the kit; the embedded default
(:mod:`rso_lib.llm.embedded`) is this class pointed at a converted copy of the packaged GGUF.

Generation
    A small decoding loop over ``model(...)`` with a KV cache instead of ``model.generate`` so that
    every row gets its *own* ``torch.Generator`` -- the same request with the same ``seed`` gives
    the same text whatever else is in the batch (``generate`` draws from one global stream).
    Prompts are rendered with the tokenizer's chat template, LEFT padded (so the last column is
    every row's next-token position), grouped by length and sent ``max_batch`` rows at a time.
    Finished rows (EOS or a stop string) are dropped from the batch and from the KV cache.
    ``temperature == 0`` is greedy (and ``n`` greedy replies are one computation, copied).
    :meth:`HFChatLLM.generate_steps` takes one seed and ``n`` per prompt (so the server batches
    requests from different clients) and runs as a generator that pauses every few decode steps
    (so the server can interleave batches, and stop one nobody waits for).

Decoding pieces (sampler, KV cache) live in :mod:`rso_lib.llm.decoding`; the truncation rule,
seeds and log-prob normalisation shared with the other backends in :mod:`rso_lib.llm.prompting`.

Option scoring
    The log-probability of ``prompt + prefix + option`` continuing with the option: the SUM of
    its tokens' log-probs (a multi-token option is scored as the joint probability of all its
    tokens, not just the first one); the K options are then normalised with a softmax, so each
    row sums to 1. When every option is a single token after the same context, one pass over the
    context alone gives all K scores; otherwise the context runs once into a KV cache that is
    repeated K times, and only the option tokens run on top (``shared_context_scoring``; the
    reference path, one full pass per option, gives the same numbers and is tested against it).

Context limit (documented truncation rule, :func:`rso_lib.llm.prompting.truncate_messages`)
    See :mod:`rso_lib.llm.prompting` (shared by every backend); every truncation is counted in
    :meth:`HFChatLLM.stats` and logged once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from rso_lib.llm.decoding import _apply_top_p, apply_top_p, generation_cache, sample_nucleus  # noqa: F401
from rso_lib.llm.prompting import (  # noqa: F401  -- re-exported: older imports use rso_lib.llm.hf
    TRUNCATION_MARK,
    PromptTooLongError,
    derive_seed,
    normalise_logprobs,
    per_conversation,
    truncate_messages,
)
from rso_lib.llm.protocol import Messages, Sampling

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Generation:
    """One generated reply. ``logprobs`` / ``top_logprobs`` (token id, log-prob) are filled only
    when asked for; ``finish_reason`` is ``"stop"`` (EOS or a stop string) or ``"length"``."""

    text: str
    token_ids: list[int]
    finish_reason: str
    logprobs: list[float] | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = None


# ----------------------------------------------------------------------------------------------
# Pure helpers (unit-tested without a model)
# ----------------------------------------------------------------------------------------------


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 matmul (AVX512-BF16 or AMX), where bf16 is ~2x faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str, device: str):
    """``"auto"`` -> bf16 on CUDA and on CPUs with native bf16, else fp32; or ``"bf16"|"fp16"|"fp32"``."""
    import torch

    names = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
        "fp32": torch.float32,
        "float32": torch.float32,
    }
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    if dtype not in names:
        raise ValueError(f"dtype {dtype!r} is not one of auto, {', '.join(names)}")
    return names[dtype]


def run_steps(steps: Generator[None, None, T]) -> T:
    """Run a step generator (:meth:`HFChatLLM.generate_steps`) to its end; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def _batch_sampling(samplings: Sequence[Sampling]) -> Sampling:
    """The decoding settings one batch runs with: every request must agree on ``temperature``,
    ``top_p``, ``max_tokens`` and ``stop`` (one decode loop serves them all); ``seed`` and ``n``
    stay per request. Returns the first request's sampling."""
    sampling = samplings[0]
    shared = ("temperature", "top_p", "max_tokens", "stop")
    for s in samplings:
        if any(getattr(s, k) != getattr(sampling, k) for k in shared):
            raise ValueError(f"samplings in one batch must agree on {', '.join(shared)}")
        if s.n < 1 or s.max_tokens < 1:
            raise ValueError(f"n and max_tokens must be >= 1 (got n={s.n}, max_tokens={s.max_tokens})")
    return sampling


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# ----------------------------------------------------------------------------------------------
# The backend
# ----------------------------------------------------------------------------------------------


class HFChatLLM:
    """Transformers chat backend implementing :class:`rso_lib.llm.protocol.ChatLLM`.

    Args:
        model: local model directory or hub id (hub ids need network unless cached).
        dtype: ``"auto"`` (bf16 on GPU / bf16-capable CPU, else fp32), ``"bf16"``, ``"fp16"``, ``"fp32"``.
        device: ``"auto"`` (cuda if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
        max_batch: most rows per forward pass (default 16: measured best tok/s on 2 CPU cores).
        max_context: context length in tokens (default: the model config's
            ``max_position_embeddings``, capped at 32768).
        model_id: name recorded in results and cache keys (default: ``model``).
        backend: backend label (``"transformers"``; ``"embedded"`` for the packaged default).
        system_prompt: if given, prepended as a system message to conversations without one.
        trust_remote_code: passed to transformers (default False).
        threads: if set, ``torch.set_num_threads(threads)`` -- process-wide. Use 1 when several
            processes share few cores: OpenMP oversubscription made 2 threads ~10x SLOWER than 1
            on a 2-core machine shared by 4 busy processes (measured).
        prefix_cache_mib: memory for prompt keys/values kept for reuse by later prompts that
            start the same way (:mod:`rso_lib.llm.prefix_cache`; 0: off). Default (None): 1024
            MiB in fp32, off in bf16 / fp16, where a row's logits already move by ~0.5 with the
            batch's shapes and reuse would flip greedy ties as often as re-batching does; give a
            number to switch it on there.
        hf_model, hf_tokenizer: already-loaded objects (then ``model`` is only a label).
    """

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        device: str = "auto",
        max_batch: int = 16,
        max_context: int | None = None,
        model_id: str | None = None,
        backend: str = "transformers",
        system_prompt: str | None = None,
        trust_remote_code: bool = False,
        threads: int | None = None,
        prefix_cache_mib: float | None = None,
        hf_model=None,
        hf_tokenizer=None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.backend = backend
        self.model_id = model_id or str(model)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_batch = int(max_batch)
        self.system_prompt = system_prompt
        if threads:
            torch.set_num_threads(int(threads))  # process-wide (see the threads argument)
        else:
            from rso_lib.threads import configure_torch_threads

            configure_torch_threads()  # the free cores, or RSO_THREADS / OMP_NUM_THREADS
        t0 = time.perf_counter()
        try:
            if hf_tokenizer is None:
                hf_tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
            if hf_model is None:
                hf_model = AutoModelForCausalLM.from_pretrained(
                    model, dtype=self.dtype, trust_remote_code=trust_remote_code
                )
        except (OSError, ValueError) as e:
            local = Path(str(model)).expanduser().exists()
            hint = (
                "it is a directory but holds no loadable model"
                if local
                else "it is not a local directory, so it is fetched from the Hugging Face hub"
                + (", which is switched off (HF_HUB_OFFLINE=1)" if os.environ.get("HF_HUB_OFFLINE") == "1" else "")
            )
            raise OSError(
                f"cannot load transformers model {model!r}: {hint}. Give a local model directory, or "
                f"download it first (huggingface-cli download {model}). Cause: {e}"
            ) from e
        self.tokenizer = hf_tokenizer
        self.model = hf_model.to(device=self.device, dtype=self.dtype).eval()
        self.load_seconds = time.perf_counter() - t0
        cfg = self.model.config
        ctx = max_context or getattr(cfg, "max_position_embeddings", None) or 2048
        self.max_context = int(min(ctx, 32768))
        eos = set()
        for src in (getattr(self.model, "generation_config", None), cfg):
            e = getattr(src, "eos_token_id", None) if src is not None else None
            if e is not None:
                eos.update(e if isinstance(e, (list, tuple)) else [e])
        if self.tokenizer.eos_token_id is not None:
            eos.add(self.tokenizer.eos_token_id)
        self.eos_ids = sorted(int(e) for e in eos)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0))
        # what changes outputs for the same model id: cache keys use it
        self.fingerprint = (
            f"{self.model_id}|{str(self.dtype).replace('torch.', '')}|ctx={self.max_context}|sys={system_prompt!r}"
        )
        self._has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if not self._has_template:
            log.warning("%s has no chat template: using a plain 'ROLE: text' format", self.model_id)
        self._stats = {
            "chat_calls": 0,
            "score_calls": 0,
            "rows": 0,
            "prompt_tokens": 0,
            "generated_tokens": 0,
            "truncations": 0,
            "seconds": 0.0,
            # phases: prompt passes (generation prefill and option scoring) and decoding
            # steps; padded = rows x longest row, what the forward pass computed
            "prefill_passes": 0,
            "prefill_padded_tokens": 0,
            "prefill_seconds": 0.0,
            "shared_prefix_tokens_saved": 0,
            "prefix_reused_tokens": 0,  # prompt positions loaded from the prefix store, not run
            "repeated_prompt_rows_saved": 0,  # sample rows whose prompt pass was another row's
            "decode_steps": 0,
            "decode_seconds": 0.0,
        }
        self._warned_trunc = False
        #: score multi-token options on one shared context pass (False: one pass per option; same result)
        self.shared_context_scoring = True
        #: run a common prefix of at least this many tokens once per batch (0: never; see _forward)
        self.min_shared_prefix = 8
        #: rows with the same prompt (the n samples of a request) share one prompt pass (False: one each)
        self.share_repeated_prompts = True
        #: stored prompt keys/values that later prompts start from (None: off; see set_prefix_cache)
        self.prefix_store = None
        if prefix_cache_mib is None:
            import torch

            prefix_cache_mib = 1024 if self.dtype == torch.float32 else 0
        self.set_prefix_cache(prefix_cache_mib)

    # ------------------------------------------------------------------ rendering / truncation
    def _prep(self, messages: Messages) -> Messages:
        msgs = [dict(m) for m in messages]
        if self.system_prompt and not any(m.get("role") == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.system_prompt})
        return msgs

    def render(self, messages: Messages, add_generation_prompt: bool = True) -> str:
        """The prompt text for ``messages`` (chat template, or ``ROLE: text`` lines without one)."""
        msgs = self._prep(messages)
        if self._has_template:
            return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)
        text = "".join(f"{m['role'].upper()}: {m['content']}\n" for m in msgs)
        return text + ("ASSISTANT:" if add_generation_prompt else "")

    def _encode(self, text: str) -> list[int]:
        # The rendered template already holds any BOS the model wants.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _cut_left(self, text: str, n: int) -> str:
        ids = self._encode(text)
        return self.tokenizer.decode(ids[n:], skip_special_tokens=False) if n < len(ids) else ""

    def fit(self, messages: Messages, reserve: int) -> Messages:
        """``messages`` shortened to leave ``reserve`` tokens of context (see :func:`truncate_messages`)."""
        budget = self.max_context - reserve
        msgs, changes = truncate_messages(
            self._prep(messages), lambda m: len(self._encode(self.render(m))), budget, self._cut_left
        )
        if changes:
            self._stats["truncations"] += 1
            if not self._warned_trunc:
                log.warning(
                    "%s: prompt over %d tokens left-truncated (counted in stats()['truncations'])",
                    self.model_id,
                    budget,
                )
                self._warned_trunc = True
        return msgs

    def stats(self) -> dict:
        """Counters: calls, rows, prompt/generated tokens, truncated prompts, seconds in the model,
        and the split of forward passes into prompt passes (``prefill_*``: generation prefill and
        option scoring, ``prefill_padded_tokens`` = rows x longest row) and decoding steps
        (``decode_*``; the rest of ``seconds`` is tokenising, sampling and bookkeeping)."""
        return dict(self._stats)

    # ------------------------------------------------------------------ forward helpers
    def _call(self, keep_last: int, **kw):
        """``self.model(**kw)`` computing logits for the last ``keep_last`` positions only, where
        the model supports it."""
        try:
            return self.model(**kw, logits_to_keep=keep_last)
        except TypeError:  # models without logits_to_keep
            return self.model(**kw)

    def _shared_prefix_len(self, ids_rows: list[list[int]], keep_last: int) -> int:
        """Tokens at the start of every row computed once for the whole batch (0: no sharing).

        The longest common prefix, capped so that every row keeps at least ``keep_last`` tokens
        after it (their logits come from the suffix pass); used when it is at least
        ``min_shared_prefix`` tokens and there are at least 2 rows."""
        if not self.min_shared_prefix or len(ids_rows) < 2:
            return 0
        first, n = ids_rows[0], min(len(r) for r in ids_rows) - keep_last
        p = 0
        while p < n and all(r[p] == first[p] for r in ids_rows):
            p += 1
        return p if p >= self.min_shared_prefix else 0

    def _forward(self, ids_rows: list[list[int]], keep_last: int, cache=None):
        """Left-padded forward pass. Returns (logits of the last ``keep_last`` positions [b, k, V]
        as float32, attention mask [b, L], position ids [b, L]) where ``L`` is what ``cache`` now
        holds.

        Reused prefix (:mod:`rso_lib.llm.prefix_cache`, when :attr:`prefix_store` is on): each row
        whose start matches a stored prompt loads those positions' keys and values instead of
        computing them; only the rest of the row runs.

        Shared prefix (when no row reuses a stored one): when the rows start with the same ``P``
        tokens (system prompt and template, ~30 tokens of every expert prompt), those run ONCE as
        a batch-1 pass whose KV cache is repeated to the ``b`` rows.

        Either way the layout is ``[pad | prefix_i | pad | suffix_i]``: a prefix block as wide as
        the longest row prefix (each row's right-aligned), then the suffixes left-padded, the pads
        masked out and position ids counting real tokens only. Prompt passes are compute-bound on
        a CPU, so each prefix token not run is work saved; the result equals the whole pass up to
        floating-point rounding."""
        import torch

        b = len(ids_rows)
        t0 = time.perf_counter()
        plan = self._reuse_plan(ids_rows, keep_last)
        R = [n for _, n in plan]
        P = 0 if any(R) else self._shared_prefix_len(ids_rows, keep_last)
        if P:
            R = [P] * b
        W = max(R)  # width of the prefix block
        L = max(len(r) - n for r, n in zip(ids_rows, R))
        store = self.prefix_store is not None
        if cache is None and (W or store):
            cache = generation_cache(self.model, W + L)
        if P:
            pre = torch.tensor([ids_rows[0][:P]], dtype=torch.long, device=self.device)
            self._call(1, input_ids=pre, attention_mask=torch.ones_like(pre), past_key_values=cache, use_cache=True)
            cache.batch_repeat_interleave(b)  # [1, h, P, d] -> [b, h, P, d]
        elif W:
            self._load_prefixes(cache, plan, W)
        input_ids = torch.full((b, L), self.pad_id, dtype=torch.long)
        attn = torch.zeros((b, W + L), dtype=torch.long)
        for r, (ids, n) in enumerate(zip(ids_rows, R)):
            suf = ids[n:]
            input_ids[r, L - len(suf) :] = torch.tensor(suf, dtype=torch.long)
            attn[r, W - n : W] = 1
            attn[r, W + L - len(suf) :] = 1
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        input_ids, attn, pos = (t.to(self.device) for t in (input_ids, attn, pos))
        kw = dict(input_ids=input_ids, attention_mask=attn, position_ids=pos[:, W:], use_cache=cache is not None)
        if cache is not None:
            kw["past_key_values"] = cache
        logits = self._call(keep_last, **kw).logits[:, -keep_last:, :].float()
        if store:
            self._store_prompts(ids_rows, cache, attn)
        self._stats["prefill_passes"] += 1
        self._stats["prefill_padded_tokens"] += P + b * L
        self._stats["shared_prefix_tokens_saved"] += (b - 1) * P
        self._stats["prefix_reused_tokens"] += 0 if P else sum(R)
        self._stats["prefill_seconds"] += time.perf_counter() - t0
        return logits, attn, pos

    # ------------------------------------------------------------------ prompt-prefix reuse
    def set_prefix_cache(self, mib: float | None) -> None:
        """Keep up to ``mib`` MiB of prompt keys/values for reuse by later prompts
        (:mod:`rso_lib.llm.prefix_cache`); 0 or None switches reuse off and frees the store."""
        from rso_lib.llm.prefix_cache import PrefixKVStore

        self.prefix_store = None
        if not mib:
            return
        per_token = self._kv_bytes_per_token()
        if per_token is None:
            log.warning("%s: prompt-prefix reuse needs plain full-attention layers; left off", self.model_id)
            return
        self.prefix_store = PrefixKVStore(max(1, int(mib * 2**20 // per_token)))

    def clear_prefix_cache(self) -> None:
        """Drop every stored prompt (the dialogue engine does at the start and end of a run, so a
        run's results depend only on its own calls: same seed, same results in one process)."""
        if self.prefix_store is not None:
            self.prefix_store.clear()

    def _kv_bytes_per_token(self) -> int | None:
        """Bytes of keys + values one position takes in the KV cache (None: not a plain cache)."""
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        cfg = self.model.config
        layers = DynamicCache(config=cfg).layers
        if not layers or any(type(layer) is not DynamicLayer for layer in layers):
            return None
        heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return len(layers) * 2 * heads * dim * self.model.dtype.itemsize

    def _reuse_plan(self, ids_rows: list[list[int]], keep_last: int) -> list[tuple[int | None, int]]:
        """Per row ``(stored entry key, positions to load)``; every row keeps at least
        ``keep_last`` tokens to run (their logits are needed)."""
        if self.prefix_store is None:
            return [(None, 0)] * len(ids_rows)
        return [self.prefix_store.lookup(r, len(r) - keep_last) for r in ids_rows]

    def _load_prefixes(self, cache, plan, width: int) -> None:
        """Fill ``cache`` with each row's stored prefix, right-aligned in ``width`` positions
        (rows without one hold zeros there, masked out)."""
        entries = [(self.prefix_store.get(k), n) if k is not None else (None, 0) for k, n in plan]
        ref = next(e for e, _ in entries if e is not None).kv
        b = len(plan)
        for li, (k0, v0) in enumerate(ref):
            K = k0.new_zeros((b, k0.shape[1], width, k0.shape[3]))
            V = v0.new_zeros((b, v0.shape[1], width, v0.shape[3]))
            for r, (e, n) in enumerate(entries):
                if e is not None:
                    K[r, :, width - n :] = e.kv[li][0][0, :, :n]
                    V[r, :, width - n :] = e.kv[li][1][0, :, :n]
            cache.update(K, V, li)

    def _store_prompts(self, ids_rows: list[list[int]], cache, attn) -> None:
        """Store each row's prompt keys/values (the cache positions its mask keeps)."""
        for r, ids in enumerate(ids_rows):
            if self.prefix_store.contains(ids):
                continue
            keep = attn[r].bool()
            kv = [
                (layer.keys[r : r + 1, :, keep].clone(), layer.values[r : r + 1, :, keep].clone())
                for layer in cache.layers
            ]
            self.prefix_store.put(ids, kv)

    # ------------------------------------------------------------------ generation
    def chat(self, batch: Sequence[Messages], sampling: Sampling = Sampling()) -> list[list[str]]:
        """Replies for each conversation: ``[len(batch)][sampling.n]`` strings (see module doc).
        A seeded call samples each conversation with its own seed
        (:func:`~rso_lib.llm.prompting.per_conversation`)."""
        self._stats["chat_calls"] += 1
        prompts = [self._encode(self.render(self.fit(m, sampling.max_tokens))) for m in batch]
        gens = run_steps(self.generate_steps(prompts, per_conversation(sampling, batch)))
        return [[g.text for g in gs] for gs in gens]

    def complete(
        self, prompts: Sequence[str], sampling: Sampling = Sampling(), top_logprobs: int | None = None
    ) -> list[list[Generation]]:
        """Raw-text continuation (no chat template, no truncation): ``[len(prompts)][n]`` Generations.

        Raises:
            PromptTooLongError: a prompt leaves fewer than ``max_tokens`` tokens of context."""
        return run_steps(self.complete_steps(prompts, sampling, top_logprobs))

    def complete_steps(
        self,
        prompts: Sequence[str],
        sampling: Sampling = Sampling(),
        top_logprobs: int | None = None,
        segment: int | None = None,
    ) -> Generator[None, None, list[list[Generation]]]:
        """:meth:`complete` as a step generator (see :meth:`generate_steps`)."""
        ids = [self._encode(p) for p in prompts]
        for p in ids:
            if len(p) + sampling.max_tokens > self.max_context:
                raise PromptTooLongError(
                    f"prompt of {len(p)} tokens + max_tokens {sampling.max_tokens} exceeds "
                    f"the context of {self.max_context}"
                )
        return (yield from self.generate_steps(ids, [sampling] * len(ids), top_logprobs, segment))

    def generate_ids(
        self, prompts: list[list[int]], sampling: Sampling, top_logprobs: int | None = None
    ) -> list[list[Generation]]:
        """Generate from token-id prompts: ``[len(prompts)][sampling.n]`` :class:`Generation`.

        Rows are (prompt, sample) pairs, sorted by length and run ``max_batch`` at a time. Row
        seeds: ``derive_seed(sampling.seed, j)`` for sample j when a seed is given (so the same
        request gives the same replies whatever the batch), else drawn from torch's global RNG."""
        return run_steps(self.generate_steps(prompts, [sampling] * len(prompts), top_logprobs))

    def generate_steps(
        self,
        prompts: list[list[int]],
        samplings: Sequence[Sampling],
        top_logprobs: int | None = None,
        segment: int | None = None,
    ) -> Generator[None, None, list[list[Generation]]]:
        """:meth:`generate_ids` with one :class:`Sampling` per prompt, as a step generator.

        The samplings must agree on ``temperature``, ``top_p``, ``max_tokens`` and ``stop``; ``seed``
        and ``n`` are per prompt, so requests from different clients share one batch and each row
        keeps the seed it would have alone (``derive_seed(seed, j)``; unseeded prompts draw from
        torch's global RNG). The generator yields after every ``segment`` decode steps (never when
        ``None``), so a caller can interleave other work between steps (the server's scheduler),
        or stop a generation nobody waits for any more by closing it; its return value is
        ``[len(prompts)][n]`` :class:`Generation` (use :func:`run_steps` to run it to the end)."""
        import torch

        if len(samplings) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(samplings)} samplings")
        if not prompts:
            return []
        sampling = _batch_sampling(samplings)
        t0 = time.perf_counter()
        busy = 0.0  # time spent here, without the time the caller spent between steps
        greedy = sampling.temperature <= 0
        base = None
        if not greedy and any(s.seed is None for s in samplings):
            base = int(torch.randint(0, 2**62, (1,)).item())  # follows torch.manual_seed
        rows = []  # (prompt index, sample index, prompt ids, generator seed)
        for i, (p, s) in enumerate(zip(prompts, samplings)):
            for j in range(1 if greedy else s.n):
                seed = None
                if not greedy:
                    seed = derive_seed(s.seed, j) if s.seed is not None else derive_seed(base, i, j)
                rows.append((i, j, p, seed))
        order = sorted(range(len(rows)), key=lambda r: -len(rows[r][2]))
        gens: dict[int, Generation] = {}
        for k in range(0, len(order), self.max_batch):
            chunk = order[k : k + self.max_batch]
            if k and segment is not None:  # between chunks too
                busy += time.perf_counter() - t0
                yield
                t0 = time.perf_counter()
            steps = self._chunk_steps(
                [rows[r][2] for r in chunk], [rows[r][3] for r in chunk], sampling, top_logprobs, segment
            )
            while True:
                try:
                    next(steps)
                except StopIteration as stop:
                    gens.update(zip(chunk, stop.value))
                    break
                busy += time.perf_counter() - t0
                yield
                t0 = time.perf_counter()
        result: list[list[Generation]] = [[] for _ in prompts]
        for r, (i, _, _, _) in enumerate(rows):
            result[i].append(gens[r])
        if greedy:
            result = [res * s.n for res, s in zip(result, samplings)]
        self._stats["rows"] += len(rows)
        self._stats["prompt_tokens"] += sum(len(r[2]) for r in rows)
        self._stats["seconds"] += busy + time.perf_counter() - t0
        return result

    def _chunk_steps(
        self,
        prompts: list[list[int]],
        seeds: list[int | None],
        sampling: Sampling,
        top_logprobs: int | None = None,
        segment: int | None = None,
    ) -> Generator[None, None, list[Generation]]:
        """One batch of rows (at most ``max_batch``), yielding after every ``segment`` decode steps.
        Inference mode is entered per step, never held across a ``yield``."""
        import torch

        greedy = sampling.temperature <= 0
        want_lp = top_logprobs is not None
        b = len(prompts)
        gens = []
        for sd in seeds:
            g = None
            if sd is not None:
                g = torch.Generator(device=self.device)
                g.manual_seed(sd)
            gens.append(g)
        eos = torch.tensor(self.eos_ids, dtype=torch.long, device=self.device)
        finish: list[str | None] = [None] * b
        gen_ids: list[list[int]] = [[] for _ in range(b)]
        lps: list[list[float]] = [[] for _ in range(b)]
        tops: list[list[list[tuple[int, float]]]] = [[] for _ in range(b)]
        active = list(range(b))  # current batch row -> chunk row
        with torch.inference_mode():
            cache = generation_cache(self.model, max(len(p) for p in prompts) + sampling.max_tokens)
            # Rows with the same prompt (the n samples of one request: the Rewarder's sampled
            # judgements) run ONE prompt pass whose KV cache and logits are copied to each of
            # them, as vLLM's prefix cache does; on a CPU the prompt pass is most of a short
            # sampled judgement, so n samples then cost about one pass plus n short decodes.
            first: dict[tuple[int, ...], int] = {}
            src = [first.setdefault(tuple(p), len(first)) for p in prompts]
            if len(first) < b and self.share_repeated_prompts:
                logits, attn, pos = self._forward([list(p) for p in first], 1, cache)
                idx = torch.tensor(src, dtype=torch.long, device=self.device)
                cache.batch_select_indices(idx)
                logits, attn, pos = logits[idx], attn[idx], pos[idx]
                self._stats["repeated_prompt_rows_saved"] += b - len(first)
            else:
                logits, attn, pos = self._forward(prompts, 1, cache)
            logits = logits[:, -1, :]  # [b, V] next-token logits
            pos = pos[:, -1:]
        for step in range(sampling.max_tokens):
            if segment is not None and step and step % segment == 0:
                yield
            with torch.inference_mode():
                if greedy:
                    nxt = logits.argmax(-1)
                else:
                    nxt = sample_nucleus(logits, sampling.temperature, sampling.top_p, [gens[row] for row in active])
                if want_lp:  # log-probs of the model's own distribution (before temperature / top_p)
                    logp = torch.log_softmax(logits, dim=-1)
                    chosen = logp.gather(1, nxt[:, None])[:, 0].tolist()
                    tv, ti = logp.topk(max(1, top_logprobs), dim=-1)
                    tv, ti = tv.tolist(), ti.tolist()
                is_eos = torch.isin(nxt, eos).tolist()
                keep = []
                for k, row in enumerate(active):
                    if is_eos[k]:
                        finish[row] = "stop"
                        continue
                    gen_ids[row].append(int(nxt[k]))
                    if want_lp:
                        lps[row].append(chosen[k])
                        tops[row].append(list(zip(ti[k], tv[k])) if top_logprobs else [])
                    if sampling.stop:
                        txt = self.tokenizer.decode(gen_ids[row], skip_special_tokens=True)
                        if any(st in txt for st in sampling.stop):
                            finish[row] = "stop"
                            continue
                    keep.append(k)
                self._stats["generated_tokens"] += len(active)
                if not keep or step == sampling.max_tokens - 1:
                    break
                if len(keep) < len(active):
                    idx = torch.tensor(keep, dtype=torch.long, device=self.device)
                    cache.batch_select_indices(idx)  # drop finished rows from the KV cache
                    attn, pos, nxt = attn[idx], pos[idx], nxt[idx]
                    active = [active[k] for k in keep]
                attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
                pos = pos + 1
                t_step = time.perf_counter()
                out = self.model(
                    input_ids=nxt.unsqueeze(1),
                    attention_mask=attn,
                    position_ids=pos,
                    past_key_values=cache,
                    use_cache=True,
                )
                logits = out.logits[:, -1, :].float()
                self._stats["decode_steps"] += 1
                self._stats["decode_seconds"] += time.perf_counter() - t_step
        return [
            self._finish(
                gen_ids[r],
                sampling.stop,
                finish[r] or "length",
                lps[r] if want_lp else None,
                tops[r] if want_lp else None,
            )
            for r in range(b)
        ]

    def _finish(self, ids: list[int], stop: Sequence[str], reason: str, lps=None, tops=None) -> Generation:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = min((text.find(s) for s in stop if s and s in text), default=-1)
        if cut >= 0:
            text = text[:cut]
            if lps is not None:  # keep the tokens that lie before the stop string
                n = 0
                while n < len(ids) and len(self.tokenizer.decode(ids[: n + 1], skip_special_tokens=True)) <= cut:
                    n += 1
                ids, lps, tops = ids[:n], lps[:n], tops[:n]
        return Generation(text=text, token_ids=list(ids), finish_reason=reason, logprobs=lps, top_logprobs=tops)

    def token_text(self, ids: Sequence[int]) -> list[str]:
        """The text of each token id (for logprob listings)."""
        return [self.tokenizer.decode([int(i)], skip_special_tokens=False) for i in ids]

    def prompt_logprobs(self, prompts: Sequence[str]) -> list[tuple[list[int], list[int], list[float | None]]]:
        """Per-token log-probs of raw text prompts (what ``/v1/completions`` with ``echo`` returns).

        Returns for each prompt ``(token_ids, char_offsets, logprobs)``; the first token has no
        log-prob (``None``). One left-padded forward pass per ``max_batch`` prompts."""
        import torch

        ids = [self._encode(p) for p in prompts]
        for t in ids:
            if len(t) > self.max_context:
                raise PromptTooLongError(f"prompt of {len(t)} tokens exceeds the context of {self.max_context}")
        out: list = [None] * len(prompts)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        with torch.inference_mode():
            V = int(self.model.config.vocab_size)
            chunks, cur = [], []
            for i in order:  # longest first; cap rows so that fp32 logits [b, L, V] stay < 512 MB
                if cur and (len(cur) >= self.max_batch or (len(cur) + 1) * len(ids[cur[0]]) * V * 4 > 2**29):
                    chunks.append(cur)
                    cur = []
                cur.append(i)
            chunks.append(cur)
            for ch in chunks:
                L = max(len(ids[i]) for i in ch)
                logits, _, _ = self._forward([ids[i] for i in ch], L)
                lp = torch.log_softmax(logits, dim=-1)  # [b, L, V]
                for r, i in enumerate(ch):
                    n = len(ids[i])
                    t = torch.tensor(ids[i][1:], device=lp.device)
                    # logits at positions L-n .. L-2 predict tokens 1 .. n-1
                    vals = lp[r, L - n : L - 1, :].gather(1, t[:, None])[:, 0].tolist() if n > 1 else []
                    out[i] = (ids[i], self._offsets(prompts[i], ids[i]), [None] + vals)
        self._stats["prompt_tokens"] += sum(len(t) for t in ids)
        return out

    def _offsets(self, text: str, ids: list[int]) -> list[int]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if enc["input_ids"] == ids and "offset_mapping" in enc:
            return [int(a) for a, _ in enc["offset_mapping"]]
        pos, offs = 0, []  # slow tokenizers: rebuild from decoded prefixes
        for n in range(len(ids)):
            offs.append(pos)
            pos = len(self.tokenizer.decode(ids[: n + 1], skip_special_tokens=False))
        return offs

    # ------------------------------------------------------------------ option scoring
    def _split_ids(self, ctx_text: str, option: str) -> tuple[list[int], list[int]]:
        """Context ids and option ids such that ctx + opt is the tokenization of ctx_text+option.

        If the option merges with the last context token (BPE across the boundary), the context
        is shortened to the longest common prefix and the merged token counts as the option's."""
        ctx = self._encode(ctx_text)
        full = self._encode(ctx_text + option)
        n = 0
        for a, b in zip(ctx, full):
            if a != b:
                break
            n += 1
        if n == len(full):  # empty option
            raise ValueError(f"option {option!r} adds no tokens")
        return full[:n], full[n:]

    def score_options_raw(self, batch: Sequence[Messages], options: Sequence[str], prefix: str = "") -> np.ndarray:
        """Unnormalised log P(option | conversation, prefix): float64 ``[B, K]`` (sum over the
        option's tokens)."""
        import torch

        if len(options) == 0:
            raise ValueError("score_options needs at least one option")
        t0 = time.perf_counter()
        self._stats["score_calls"] += 1
        K = len(options)
        B = len(batch)
        reserve = max(len(self._encode(prefix + o)) for o in options) + 2
        split = []  # [B][K] (ctx ids, opt ids)
        for m in batch:
            ctx_text = self.render(self.fit(m, reserve)) + prefix
            split.append([self._split_ids(ctx_text, o) for o in options])
        out = np.zeros((B, K), dtype=np.float64)
        single = all(len(o) == 1 and c == s[0][0] for s in split for c, o in s)
        with torch.inference_mode():
            if single:
                # one pass over each context; all K options read off the last position
                order = sorted(range(B), key=lambda i: -len(split[i][0][0]))
                for s in range(0, B, self.max_batch):
                    ch = order[s : s + self.max_batch]
                    logits, _, _ = self._forward([split[i][0][0] for i in ch], 1)
                    lp = torch.log_softmax(logits[:, -1, :], dim=-1)
                    for r, i in enumerate(ch):
                        tok = torch.tensor([split[i][k][1][0] for k in range(K)], device=lp.device)
                        out[i] = lp[r, tok].double().cpu().numpy()
                    self._stats["prompt_tokens"] += sum(len(split[i][0][0]) for i in ch)
            elif self.shared_context_scoring:
                self._score_shared(split, out)
            else:
                self._score_full(split, out)
        self._stats["rows"] += B
        self._stats["seconds"] += time.perf_counter() - t0
        return out

    def _score_full(self, split, out: np.ndarray) -> None:
        """Reference path: one left-padded forward pass per (conversation, option) sequence."""
        import torch

        B, K = out.shape
        seqs = [(i, k) for i in range(B) for k in range(K)]
        seqs.sort(key=lambda ik: -len(split[ik[0]][ik[1]][0]) - len(split[ik[0]][ik[1]][1]))
        for s in range(0, len(seqs), self.max_batch):
            ch = seqs[s : s + self.max_batch]
            ids = [split[i][k][0] + split[i][k][1] for i, k in ch]
            m = max(len(split[i][k][1]) for i, k in ch) + 1
            logits, _, _ = self._forward(ids, m)  # [b, m, V]: positions L-m .. L-1
            lp = torch.log_softmax(logits, dim=-1)
            for r, (i, k) in enumerate(ch):
                opt = split[i][k][1]
                c = len(opt)
                # logits at positions L-c-1 .. L-2 predict the option tokens at L-c .. L-1
                rows = lp[r, m - c - 1 : m - 1, :]
                out[i, k] = float(rows.gather(1, torch.tensor(opt, device=rows.device)[:, None]).sum())
            self._stats["prompt_tokens"] += sum(len(x) for x in ids)

    def _score_shared(self, split, out: np.ndarray, max_rows: int = 32) -> None:
        """Shared-context path: each conversation's context runs ONCE (KV cache), the cache is
        repeated K times and only the option tails run on top -- cost ~ 1 context pass instead of K.

        Per conversation the shared context is the shortest of its options' contexts (they are all
        prefixes of one tokenization); an option's tail = its extra context tokens (conditioned on,
        not scored) + its option tokens (scored)."""
        B, K = out.shape
        V = int(self.model.config.vocab_size)
        ctx, tails, n_opt = [], [], []
        for i in range(B):
            c = min((split[i][k][0] for k in range(K)), key=len)
            ctx.append(c)
            full = [split[i][k][0] + split[i][k][1] for k in range(K)]
            tails.append([f[len(c) :] for f in full])
            n_opt.append([len(split[i][k][1]) for k in range(K)])
        order = sorted(range(B), key=lambda i: -len(ctx[i]))
        b = max(1, min(self.max_batch, max_rows // K))  # conversations per chunk: b*K rows of KV cache
        for s in range(0, B, b):
            ch = order[s : s + b]
            Lt = max(len(t) for i in ch for t in tails[i])
            # keep the fp32 tail logits [b*K, Lt, V] under ~512 MB
            sub = max(1, min(len(ch), (2**29) // max(1, K * Lt * V * 4)))
            for s2 in range(0, len(ch), sub):
                self._score_shared_chunk(ch[s2 : s2 + sub], ctx, tails, n_opt, out, K)

    def _score_shared_chunk(self, ch, ctx, tails, n_opt, out, K) -> None:
        import torch
        from transformers import DynamicCache

        cache = DynamicCache()
        last, attn, pos = self._forward([ctx[i] for i in ch], 1, cache)  # last: [b, 1, V]
        b = len(ch)
        cache.batch_repeat_interleave(K)  # rows i*K + k share conversation i's context
        Lt = max(len(t) for i in ch for t in tails[i])
        tail_ids = torch.full((b * K, Lt), self.pad_id, dtype=torch.long)
        tail_mask = torch.zeros((b * K, Lt), dtype=torch.long)
        for r, i in enumerate(ch):
            for k in range(K):
                t = tails[i][k]
                tail_ids[r * K + k, : len(t)] = torch.tensor(t, dtype=torch.long)  # RIGHT padded: causal
                tail_mask[r * K + k, : len(t)] = 1  # attention never lets a real token see the pad after it
        tail_ids, tail_mask = tail_ids.to(self.device), tail_mask.to(self.device)
        attn2 = torch.cat([attn.repeat_interleave(K, dim=0), tail_mask], dim=1)
        pos2 = pos[:, -1:].repeat_interleave(K, dim=0) + 1 + torch.arange(Lt, device=self.device)[None, :]
        t0 = time.perf_counter()
        o = self.model(
            input_ids=tail_ids, attention_mask=attn2, position_ids=pos2, past_key_values=cache, use_cache=True
        )
        self._stats["prefill_passes"] += 1
        self._stats["prefill_padded_tokens"] += b * K * Lt
        self._stats["prefill_seconds"] += time.perf_counter() - t0
        # predictor of tail token j: the context's last logits for j = 0, tail logits j-1 after that
        pred = torch.cat([last.repeat_interleave(K, dim=0), o.logits[:, :-1, :].float()], dim=1)  # [bK, Lt, V]
        lp = torch.log_softmax(pred, dim=-1).gather(2, tail_ids[:, :, None])[:, :, 0]  # [bK, Lt]
        for r, i in enumerate(ch):
            for k in range(K):
                n, c = len(tails[i][k]), n_opt[i][k]
                out[i, k] = float(lp[r * K + k, n - c : n].double().sum())
        self._stats["prompt_tokens"] += sum(len(ctx[i]) + sum(len(t) for t in tails[i]) for i in ch)

    def score_options(self, batch: Sequence[Messages], options: Sequence[str], prefix: str = "") -> np.ndarray:
        """Normalised probability of each option as the start of the reply after ``prefix``:
        float64 ``[B, K]``, rows sum to 1 (softmax of :meth:`score_options_raw`)."""
        return normalise_logprobs(self.score_options_raw(batch, options, prefix))
