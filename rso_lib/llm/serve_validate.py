"""Request checks of the model server, before any work is queued: every malformed or hostile
request becomes a :class:`BadRequest` (HTTP 400) naming the field, never another exception.

* :func:`parse_body`: the raw body -> a JSON object (bad UTF-8, bad JSON, nesting deeper than
  :data:`MAX_BODY_DEPTH`, a non-object: 400).
* :func:`validate_chat` / :func:`validate_completions`: the fields of ``/v1/chat/completions`` and
  ``/v1/completions`` (OpenAI's documented ranges where it has them) -> a
  :class:`ChatRequest` / :class:`CompletionRequest`.
* :class:`PromptBound`: a prompt's length in tokens against the model's context, counted on the
  request's own thread so that an over-long prompt is answered 400 without reaching the worker.

No HTTP and no model here: the fuzz tests call these functions directly.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any

from rso_lib.data._io import BadJSON, parse_json
from rso_lib.llm.protocol import Sampling

MAX_TOKENS_CAP = 2048  # per request: a long generation cannot hold the worker indefinitely
MAX_N = 16
MAX_STOP = 4  # OpenAI's limit on stop strings
MAX_BODY_DEPTH = 64  # a chat body nests 5 levels (body, messages, message, content parts, part)
ROLES = ("system", "user", "assistant", "developer", "tool")


class BadRequest(ValueError):
    """A request the server answers 400; the message names the field."""


def _show(v: Any, n: int = 60) -> str:
    """A short repr of a client's value for an error message (never the whole 4 MiB of it)."""
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."


def parse_body(raw: bytes) -> dict:
    """The request body as a JSON object (an empty body is ``{}``)."""
    try:
        text = raw.decode("utf-8") if raw else "{}"
    except UnicodeDecodeError as e:
        raise BadRequest(f"the request body is not UTF-8 (byte {raw[e.start]:#04x} at offset {e.start})") from None
    try:
        body = parse_json(text, max_depth=MAX_BODY_DEPTH)
    except BadJSON as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def number(body: dict, field: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    v = body.get(field)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadRequest(f"'{field}' must be a number, got {type(v).__name__} {_show(v)}")
    try:
        v = float(v)
    except OverflowError:  # an integer of hundreds of digits
        raise BadRequest(f"'{field}' must be in [{lo:g}, {hi:g}], got an integer of {len(str(v))} digits") from None
    if v != v or v in (float("inf"), float("-inf")) or v > hi or v < lo or (lo_open and v == lo):
        raise BadRequest(f"'{field}' must be in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {v!r}")
    return v


def integer(body: dict, field: str, default: int, lo: int, hi: int) -> int:
    v = body.get(field)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise BadRequest(f"'{field}' must be an integer, got {type(v).__name__} {_show(v)}")
    if not lo <= v <= hi:
        raise BadRequest(f"'{field}' must be in [{lo}, {hi}], got {_show(v)}")
    return v


def flag(body: dict, field: str) -> bool:
    """A boolean field (absent or null: False)."""
    v = body.get(field)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise BadRequest(f"'{field}' must be a boolean, got {type(v).__name__} {_show(v)}")
    return v


def sampling(body: dict, default_max: int, max_field: str | None = None) -> Sampling:
    """The request's decoding settings; every malformed field is a :class:`BadRequest` naming it."""
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)) or not all(isinstance(x, str) for x in stop) or len(stop) > MAX_STOP:
        raise BadRequest(f"'stop' must be a string or a list of at most {MAX_STOP} strings")
    field = max_field or ("max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest(f"'seed' must be an integer, got {type(seed).__name__} {_show(seed)}")
    return Sampling(
        temperature=number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        max_tokens=integer(body, field, default_max, 1, MAX_TOKENS_CAP),
        stop=tuple(stop),
        seed=seed,
        n=integer(body, "n", 1, 1, MAX_N),
    )


def content(m: dict, i: int) -> str:
    """A message's text: a string, or OpenAI's list of ``{"type": "text", "text": ...}`` parts."""
    c = m.get("content")
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in c
    ):
        return "".join(p["text"] for p in c)
    raise BadRequest(f"'messages[{i}].content' must be a string or a list of text parts, got {type(c).__name__}")


def _common(body: dict) -> str | None:
    """Fields both endpoints check the same way: ``model`` (returned) and ``stream``."""
    if flag(body, "stream"):
        raise BadRequest(
            "'stream': true is not supported by this server (no server-sent events); leave 'stream' out or send false"
        )
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest(f"'model' must be a string, got {type(model).__name__}")
    return model


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, str]]  # {role, content} with content as one string
    sampling: Sampling
    model: str | None
    top_logprobs: int | None  # None: no log-probs asked for
    continue_final_message: bool  # vLLM's: continue the last (assistant) message, no new turn


def validate_chat(body: Any) -> ChatRequest:
    """The fields of a ``/v1/chat/completions`` body; :class:`BadRequest` naming the first bad one."""
    if not isinstance(body, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(body).__name__}")
    model = _common(body)
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("'messages' must be a non-empty list of {role, content} objects")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"'messages[{i}]' must be a {{role, content}} object with a string role")
        if m["role"] not in ROLES:
            raise BadRequest(f"'messages[{i}].role' must be one of {' | '.join(ROLES)}, got {_show(m['role'])}")
    messages = [{"role": m["role"], "content": content(m, i)} for i, m in enumerate(msgs)]
    s = sampling(body, 256)
    top = integer(body, "top_logprobs", 0, 0, 20) if flag(body, "logprobs") else None
    return ChatRequest(messages, s, model, top, flag(body, "continue_final_message"))


@dataclass(frozen=True)
class CompletionRequest:
    prompts: list[str]
    sampling: Sampling  # max_tokens at least 1 (see max_tokens)
    model: str | None
    echo: bool
    logprobs: int | None  # None: no log-probs asked for
    max_tokens: int  # 0 allowed with echo: score the prompt only


def validate_completions(body: Any) -> CompletionRequest:
    """The fields of a ``/v1/completions`` body; :class:`BadRequest` naming the first bad one."""
    if not isinstance(body, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(body).__name__}")
    model = _common(body)
    prompts = body.get("prompt")
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise BadRequest("'prompt' must be a string or a list of strings (token-id prompts are not supported)")
    echo = flag(body, "echo")
    nlp = None if body.get("logprobs") is None else integer(body, "logprobs", 0, 0, 20)
    mt = integer(body, "max_tokens", 16, 0, MAX_TOKENS_CAP)
    if mt == 0 and not echo:
        raise BadRequest("'max_tokens' 0 needs 'echo'")
    s = sampling({**body, "max_tokens": max(1, mt)}, 16, max_field="max_tokens")
    return CompletionRequest(prompts, s, model, echo, nlp, mt)


class PromptBound:
    """A prompt's tokens, counted before any work is queued, against the model's context.

    A prompt with more than ``max_context * max_token_chars`` characters cannot fit (no token
    covers more characters than its vocabulary entry is long) and is refused without tokenizing;
    any other is tokenized on the request's own thread with a private copy of the backend's
    tokenizer (the worker thread owns the original), under a lock, so that even the longest
    prompt that may fit delays others by one tokenization (~1 s for SmolLM2's 8,192 tokens, 81
    characters at most per token) and never holds up the worker.

    Args:
        tokenizer: the backend's (Hugging Face) tokenizer.
        max_context: the model's context in tokens.
    """

    def __init__(self, tokenizer, max_context: int):
        self.tokenizer = copy.deepcopy(tokenizer)
        self.max_context = int(max_context)
        self.max_token_chars = max((len(t) for t in self.tokenizer.get_vocab()), default=1)
        self._lock = threading.Lock()

    def ids(self, text: str, reserve: int, what: str = "prompt") -> list[int]:
        """The token ids of ``text``; :class:`BadRequest` naming the limit when ``text`` and
        ``reserve`` more tokens (the completion's ``max_tokens``) do not fit the context."""
        budget = self.max_context - reserve
        limit = f"the model's context of {self.max_context} tokens ({budget} for the prompt with max_tokens {reserve})"
        if len(text) > max(budget, 0) * self.max_token_chars:
            raise BadRequest(f"{what} of {len(text):,} characters is longer than {limit}")
        with self._lock:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > budget:
            raise BadRequest(f"{what} of {len(ids):,} tokens is longer than {limit}")
        return ids
