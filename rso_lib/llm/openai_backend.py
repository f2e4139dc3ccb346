"""OpenAI-compatible HTTP backend: ``vllm serve``, llama.cpp's server, ``python -m rso_lib.llm.serve``,
or any server speaking ``/v1/chat/completions`` (stdlib ``urllib``, no extra dependency).

* One HTTP request per conversation, sent by a thread pool of ``max_concurrency`` workers (the
  server batches concurrent requests; ``vllm serve`` does continuous batching).
* ``Sampling.seed`` goes out as the request's ``seed``; ``n``, ``temperature``, ``top_p``,
  ``max_tokens`` and ``stop`` map one to one.
* Connection errors, timeouts, HTTP 408/409/429 and 5xx are retried ``retries`` times with
  exponential backoff (``backoff * 2**attempt`` seconds); then :class:`LLMServerError` names the URL.
  Other HTTP errors fail at once with the server's message.
* The API key is read from the environment variable named by ``api_key_env`` (default
  ``OPENAI_API_KEY``); without it no ``Authorization`` header is sent (local servers).

Option scoring over HTTP (``score_mode``):

``"echo"`` (default)
    ``POST /v1/completions`` with ``prompt = [chat-rendered conversation + prefix + option, ...]``
    (the K options of one conversation in one request), ``echo: true``, ``logprobs: 1``,
    ``max_tokens: 1``: the server returns the log-prob of every prompt token, and an option's score
    is the sum over the tokens after the context (found from ``text_offset``), exactly like the
    local backends. The chat template is rendered client-side, so a tokenizer is needed:
    ``tokenizer`` (a directory, a hub id, or ``"embedded"``), default the ``model`` name.
    Supported by vLLM's OpenAI server, llama.cpp's ``llama-cpp-python`` server (model loaded with
    ``logits_all=True``) and ``rso_lib.llm.serve``. OpenAI's hosted API no longer supports
    echo+logprobs: use ``"chat"`` there.
``"chat"``
    ``POST /v1/chat/completions`` with ``max_tokens: 1``, ``logprobs: true``, ``top_logprobs: 20``;
    an option's probability is the log-prob of its FIRST token among the top 20 (options outside
    them get ``-inf``); with a ``prefix`` the prefix is sent as a partial assistant message with
    vLLM's ``continue_final_message`` (other servers may ignore it). Only exact for single-token
    options -- an approximation otherwise. OpenAI's hosted API and vLLM support it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rso_lib.llm.prompting import normalise_logprobs, per_conversation
from rso_lib.llm.protocol import Messages, Sampling

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class LLMServerError(RuntimeError):
    """An OpenAI-compatible server could not be reached or answered with an error."""


class OptionScoringUnsupported(LLMServerError):
    """The server does not return the log-probs option scoring needs."""


def sampling_to_request(s: Sampling) -> dict:
    """Our :class:`Sampling` as OpenAI request fields."""
    body = {
        "temperature": float(s.temperature),
        "top_p": float(s.top_p),
        "max_tokens": int(s.max_tokens),
        "n": int(s.n),
    }
    if s.stop:
        body["stop"] = list(s.stop)
    if s.seed is not None:
        body["seed"] = int(s.seed)
    return body


class OpenAIChatLLM:
    """Client for an OpenAI-compatible server (see module doc).

    Args:
        model: model name the server knows (``/v1/models``).
        base_url: API root including ``/v1`` (default ``http://localhost:8000/v1``).
        api_key_env: environment variable holding the API key (default ``OPENAI_API_KEY``).
        max_concurrency: parallel HTTP requests (default 8).
        timeout: seconds per request (default 120).
        retries: retries after the first failure (default 3).
        backoff: first retry delay in seconds, doubled each time (default 0.5).
        system_prompt: prepended as a system message to conversations without one.
        score_mode: ``"echo"`` or ``"chat"`` (see module doc).
        tokenizer: for ``"echo"`` scoring: tokenizer dir / hub id / ``"embedded"`` (default: model).
    """

    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str = "http://localhost:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 0.5,
        system_prompt: str | None = None,
        score_mode: str = "echo",
        tokenizer: str | None = None,
    ):
        if score_mode not in ("echo", "chat"):
            raise ValueError(f"score_mode {score_mode!r} is not 'echo' or 'chat'")
        self.model = model
        self.model_id = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.max_concurrency = int(max_concurrency)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.system_prompt = system_prompt
        self.score_mode = score_mode
        self.tokenizer_name = tokenizer
        self._tok = None
        self.fingerprint = f"{model}@{self.base_url}|sys={system_prompt!r}|score={score_mode}"
        self._stats = {"requests": 0, "retries": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0}

    # ------------------------------------------------------------------ HTTP
    def _headers(self) -> dict:
        h = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env or "", "")
        if key:
            h["Authorization"] = f"Bearer {key}"
        return h

    def request(self, path: str, body: dict | None = None) -> dict:
        """POST ``body`` (or GET when None) to ``base_url + path`` with retries; the JSON reply."""
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._stats["retries"] += 1
                time.sleep(self.backoff * 2 ** (attempt - 1))
            req = urllib.request.Request(
                url, data=data, headers=self._headers(), method="GET" if data is None else "POST"
            )
            self._stats["requests"] += 1
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    out = json.loads(r.read().decode())
                usage = out.get("usage") or {}
                self._stats["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
                self._stats["completion_tokens"] += int(usage.get("completion_tokens") or 0)
                return out
            except urllib.error.HTTPError as e:
                msg = e.read().decode(errors="replace")[:500]
                if e.code not in _RETRY_STATUS:
                    self._stats["failures"] += 1
                    raise LLMServerError(f"{url} answered HTTP {e.code}: {msg}") from e
                last = LLMServerError(f"HTTP {e.code}: {msg}")
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = e
        self._stats["failures"] += 1
        raise LLMServerError(
            f"OpenAI-compatible server at {url} failed after {self.retries + 1} attempts "
            f"(timeout {self.timeout}s): {last}"
        ) from last

    def _map(self, fn, items):
        if len(items) <= 1 or self.max_concurrency <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items))) as ex:
            return list(ex.map(fn, items))

    def _prep(self, messages: Messages) -> Messages:
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        if self.system_prompt and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.system_prompt})
        return msgs

    def stats(self) -> dict:
        return dict(self._stats)

    def models(self) -> list[str]:
        """Model ids the server lists at ``/v1/models``."""
        return [m["id"] for m in self.request("/models").get("data", [])]

    # ------------------------------------------------------------------ protocol
    def chat(self, batch: Sequence[Messages], sampling: Sampling = Sampling()) -> list[list[str]]:
        def one(item):
            messages, s = item  # each conversation with its own seed (prompting.per_conversation)
            body = {"model": self.model, **sampling_to_request(s), "messages": self._prep(messages)}
            out = self.request("/chat/completions", body)
            choices = sorted(out.get("choices", []), key=lambda c: c.get("index", 0))
            if len(choices) != sampling.n:
                raise LLMServerError(
                    f"{self.base_url}/chat/completions returned {len(choices)} choices, asked n={sampling.n}"
                )
            return [(c.get("message") or {}).get("content") or "" for c in choices]

        return self._map(one, list(zip(batch, per_conversation(sampling, batch))))

    def _tokenizer(self):
        if self._tok is None:
            from transformers import AutoTokenizer

            name = self.tokenizer_name or self.model
            if name == "embedded":
                from rso_lib.llm.embedded import converted_dir

                name = str(converted_dir())
            try:
                self._tok = AutoTokenizer.from_pretrained(name)
            except OSError as e:
                raise OptionScoringUnsupported(
                    f"echo option scoring renders the chat template client-side and needs a tokenizer: cannot load "
                    f"{name!r} ({e}); set the spec's 'tokenizer' to a local directory, or score_mode 'chat'"
                ) from e
        return self._tok

    def render(self, messages: Messages) -> str:
        return self._tokenizer().apply_chat_template(self._prep(messages), tokenize=False, add_generation_prompt=True)

    def score_options_raw(self, batch: Sequence[Messages], options: Sequence[str], prefix: str = "") -> np.ndarray:
        """Unnormalised option log-probs ``[B, K]`` (see module doc for the two modes)."""
        if len(options) == 0:
            raise ValueError("score_options needs at least one option")
        fn = self._score_echo if self.score_mode == "echo" else self._score_chat
        return np.asarray(self._map(lambda m: fn(m, list(options), prefix), list(batch)), dtype=np.float64)

    def score_options(self, batch: Sequence[Messages], options: Sequence[str], prefix: str = "") -> np.ndarray:
        return normalise_logprobs(self.score_options_raw(batch, options, prefix))

    def _score_echo(self, messages: Messages, options: list[str], prefix: str) -> list[float]:
        ctx = self.render(messages) + prefix
        body = {
            "model": self.model,
            "prompt": [ctx + o for o in options],
            "echo": True,
            "logprobs": 1,
            "max_tokens": 1,
            "temperature": 0.0,
        }
        out = self.request("/completions", body)
        choices = sorted(out.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != len(options):
            raise OptionScoringUnsupported(
                f"{self.base_url}/completions returned {len(choices)} choices for {len(options)} prompts"
            )
        scores = []
        for o, c in zip(options, choices):
            lp = c.get("logprobs") or {}
            offs, vals = lp.get("text_offset"), lp.get("token_logprobs")
            if not offs or not vals:
                raise OptionScoringUnsupported(
                    f"{self.base_url}/completions gave no prompt log-probs with echo=true (llama.cpp: load with "
                    f"logits_all=True; hosted OpenAI: use score_mode 'chat')"
                )
            end = len(ctx) + len(o)
            # the tokens that end after the context and start before the prompt's end: the option's
            # (a token straddling the boundary counts for the option, like the local backends)
            toks = lp.get("tokens") or [""] * len(offs)
            total = 0.0
            for off, v, t in zip(offs, vals, toks):
                if off < end and off + max(len(t), 1) > len(ctx):
                    if v is None:
                        raise OptionScoringUnsupported(f"{self.base_url}: no log-prob for option token {t!r}")
                    total += float(v)
            scores.append(total)
        return scores

    def _score_chat(self, messages: Messages, options: list[str], prefix: str) -> list[float]:
        msgs = self._prep(messages)
        body = {"model": self.model, "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": 20}
        if prefix:
            msgs = msgs + [{"role": "assistant", "content": prefix}]
            body.update(continue_final_message=True, add_generation_prompt=False)  # vLLM extensions
        out = self.request("/chat/completions", {**body, "messages": msgs})
        try:
            top = out["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        except (KeyError, IndexError, TypeError) as e:
            raise OptionScoringUnsupported(f"{self.base_url}/chat/completions returned no top_logprobs") from e
        best: dict[str, float] = {}
        for t in top:
            k = t["token"].strip()
            best[k] = max(best.get(k, -np.inf), float(t["logprob"]))
        scores = [best.get(o.strip(), -np.inf) for o in options]
        if all(np.isinf(scores)):
            # fall back to prefix matching: an option whose start is a top token (multi-token options)
            scores = [
                max((v for k, v in best.items() if k and o.strip().startswith(k)), default=-np.inf) for o in options
            ]
        if all(np.isinf(scores)):
            raise OptionScoringUnsupported(
                f"none of the options {options} is among the top-20 first tokens from {self.base_url}/chat/completions"
            )
        return scores
