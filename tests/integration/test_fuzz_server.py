"""Property-based fuzzing of the server's request validation (issue 25), called directly (no
sockets): generated bodies, raw and parsed, must give a checked request or a :class:`BadRequest`
(HTTP 400) naming the field, never another exception; the prompt bound answers with the limit.

Examples and seed: see ``tests/fuzzing.py`` (``RSO_FUZZ_EXAMPLES`` for longer runs).
"""

from __future__ import annotations

import contextlib
import json

import pytest
from fuzzing import FUZZ, JSON_VALUES, corrupt
from hypothesis import given
from hypothesis import strategies as st

from rso_lib.llm import serve
from rso_lib.llm.scripted import ScriptedLLM
from rso_lib.llm.serve_validate import (
    MAX_N,
    MAX_TOKENS_CAP,
    BadRequest,
    ChatRequest,
    CompletionRequest,
    PromptBound,
    parse_body,
    validate_chat,
    validate_completions,
)

CHAT = {
    "model": "tiny",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Name a film."}]},
        {"role": "assistant", "content": "Jaws"},
    ],
    "temperature": 0.7,
    "top_p": 0.9,
    "max_tokens": 16,
    "n": 2,
    "stop": ["\n"],
    "seed": 3,
    "logprobs": True,
    "top_logprobs": 2,
    "continue_final_message": False,
    "stream": False,
}
COMPLETION = {"model": "tiny", "prompt": ["a", "b"], "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0}


def _paths(obj, path=()):
    """Every (path, value) inside a JSON value, ``path`` a tuple of keys / indices."""
    yield path, obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        yield from _paths(v, (*path, k))


def _replaced(body: dict, path: tuple, value) -> dict:
    body = json.loads(json.dumps(body))
    node = body
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return body


def _field(path: tuple) -> str:
    """How an error message names the field at ``path`` (``messages[1].content``)."""
    name = str(path[0])
    for k in path[1:3]:
        name += f"[{k}]" if isinstance(k, int) else f".{k}"
    return name


def _well_formed(r) -> None:
    s = r.sampling
    assert 0 <= s.temperature <= 2 and 0 < s.top_p <= 1 and 1 <= s.max_tokens <= MAX_TOKENS_CAP
    assert 1 <= s.n <= MAX_N and all(isinstance(x, str) for x in s.stop) and len(s.stop) <= 4
    if isinstance(r, ChatRequest):
        assert r.messages and all(isinstance(m["content"], str) for m in r.messages)


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
@FUZZ
@given(data=st.data())
def test_a_wrong_value_anywhere_is_a_400_naming_its_field(endpoint, data):
    base, validate = (CHAT, validate_chat) if endpoint == "chat" else (COMPLETION, validate_completions)
    path = data.draw(st.sampled_from([p for p, _ in _paths(base) if p]))
    body = _replaced(base, path, data.draw(JSON_VALUES | st.sampled_from([float("nan"), 10**400, "x" * 100_000])))
    try:
        r = validate(body)
    except BadRequest as e:
        msg = str(e)
        assert len(msg) < 400, "an error message repeats the client's whole value"
        top = str(path[0])
        # a message or content part names its index; fields that depend on each other
        # (logprobs -> top_logprobs, max_completion_tokens -> max_tokens) may name the other one
        assert _field(path) in msg or f"'{top}" in msg or top in ("logprobs", "top_logprobs"), (path, msg)
        return
    assert isinstance(r, (ChatRequest, CompletionRequest))
    _well_formed(r)


@FUZZ
@given(data=st.data())
def test_corrupted_raw_bodies_are_400_or_parse(data):
    lines = [ln.encode() + b"\n" for ln in json.dumps(CHAT, indent=1).splitlines()]
    c = data.draw(corrupt(lines))
    try:
        body = parse_body(b"".join(c.lines))
    except BadRequest as e:
        assert "request body" in str(e)
        return
    with contextlib.suppress(BadRequest):
        _well_formed(validate_chat(body))


@FUZZ
@given(body=JSON_VALUES)
def test_any_json_value_as_a_body_is_handled(body):
    for validate in (validate_chat, validate_completions):
        with contextlib.suppress(BadRequest):
            validate(body)


class _Tok:
    """One token per character; the longest vocabulary entry has 3 characters."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    def get_vocab(self):
        return {"a": 0, "abc": 1}


@FUZZ
@given(text=st.text(max_size=300), reserve=st.integers(0, 300))
def test_prompt_bound_counts_or_names_the_limit(text, reserve):
    bound = PromptBound(_Tok(), max_context=256)
    try:
        ids = bound.ids(text, reserve)
    except BadRequest as e:
        assert "the model's context of 256 tokens" in str(e) and len(text) + reserve > 256
        return
    assert len(ids) == len(text) and len(ids) + reserve <= 256


@pytest.fixture(scope="module")
def app():
    return serve.App(ScriptedLLM(lambda m: "ok", model_id="tiny"), "tiny", max_wait=0.0)


@FUZZ
@given(data=st.data())
def test_the_app_answers_or_refuses_every_body(app, data):
    path = data.draw(st.sampled_from([p for p, _ in _paths(CHAT) if p]))
    body = _replaced(CHAT, path, data.draw(JSON_VALUES))
    body.pop("logprobs", None)  # this backend has none: keep the other fields reachable
    try:
        out = app.chat(body)
    except (BadRequest, serve.NotFound):
        return
    assert out["choices"] and all(c["message"]["content"] == "ok" for c in out["choices"])
