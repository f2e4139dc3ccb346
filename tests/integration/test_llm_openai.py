"""The OpenAI-compatible path against a REAL server on loopback (``python -m rso_lib.llm.serve``
over the embedded model, started as a subprocess), not a mock: the official ``openai`` client
validates the protocol; our backend generates and scores through it and matches the embedded
backend in-process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from llm_fixtures import RATING_PROMPT, RATINGS, convs, embedded
from repo_paths import REPO_ROOT

from rso_lib.llm import build_llm
from rso_lib.llm.openai_backend import LLMServerError, OpenAIChatLLM, sampling_to_request
from rso_lib.llm.protocol import Sampling

ROOT = str(REPO_ROOT)


def test_sampling_maps_to_request_fields():
    body = sampling_to_request(Sampling(temperature=0.7, top_p=0.9, max_tokens=33, stop=("\n", "User:"), seed=4, n=2))
    assert body == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 33, "n": 2, "stop": ["\n", "User:"], "seed": 4}
    assert "seed" not in sampling_to_request(Sampling()) and "stop" not in sampling_to_request(Sampling())


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    return port


def test_unreachable_server_retries_then_names_the_url():
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    llm = OpenAIChatLLM("m", base_url=url, retries=2, backoff=0.05, timeout=2)
    t0 = time.monotonic()
    with pytest.raises(LLMServerError, match=r"127\.0\.0\.1:\d+/v1/chat/completions failed after 3 attempts"):
        llm.chat([[{"role": "user", "content": "hi"}]], Sampling(max_tokens=4))
    assert time.monotonic() - t0 >= 0.05 + 0.1  # backoff 0.05 then 0.1 s
    assert llm.stats()["retries"] == 2 and llm.stats()["failures"] == 1


def test_timeout_is_retried_then_fails():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)  # accepts connections, never answers
    url = f"http://127.0.0.1:{srv.getsockname()[1]}/v1"
    try:
        llm = OpenAIChatLLM("m", base_url=url, retries=1, backoff=0.01, timeout=0.3)
        with pytest.raises(LLMServerError, match="failed after 2 attempts.*timeout 0.3s"):
            llm.chat([[{"role": "user", "content": "hi"}]], Sampling(max_tokens=4))
    finally:
        srv.close()


@pytest.fixture(scope="module")
def server():
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TQDM_DISABLE": "1",
        "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "rso_lib.llm.serve", "--backend", "embedded", "--port", "0", "--max-wait-ms", "150"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )
    url, lines = None, []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("rso-serve listening on "):
            url = line.split()[3]
            break
    if url is None:
        proc.kill()
        pytest.fail("server did not start:\n" + "".join(lines[-30:]))
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.slow
def test_official_openai_client_talks_to_our_server(server):
    import openai

    client = openai.OpenAI(base_url=server, api_key="none", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == ["SmolLM2-135M-Instruct-Q4_1"]
    r = client.chat.completions.create(
        model="SmolLM2-135M-Instruct-Q4_1",
        messages=convs(1)[0],
        max_tokens=12,
        temperature=0.8,
        seed=3,
        n=2,
        logprobs=True,
        top_logprobs=3,
    )
    assert len(r.choices) == 2 and all(c.message.content for c in r.choices)
    toks = r.choices[0].logprobs.content
    assert toks and all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in toks)
    assert r.usage.completion_tokens > 0
    r2 = client.chat.completions.create(
        model="SmolLM2-135M-Instruct-Q4_1", messages=convs(1)[0], max_tokens=12, temperature=0.8, seed=3, n=2
    )
    assert [c.message.content for c in r2.choices] == [c.message.content for c in r.choices]  # seeded
    c = client.completions.create(
        model="SmolLM2-135M-Instruct-Q4_1",
        prompt="The capital of France is",
        max_tokens=3,
        temperature=0,
        echo=True,
        logprobs=1,
    )
    lp = c.choices[0].logprobs
    assert c.choices[0].text.startswith("The capital of France is")
    assert lp.token_logprobs[0] is None and all(v <= 0 for v in lp.token_logprobs[1:])
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="x", messages=[], max_tokens=2)


@pytest.mark.slow
def test_our_backend_matches_embedded_through_the_server(server):
    local = embedded()
    remote = build_llm(
        {
            "backend": "openai",
            "model": "SmolLM2-135M-Instruct-Q4_1",
            "base_url": server,
            "tokenizer": "embedded",
            "max_concurrency": 4,
        }
    )
    batch = convs(4)
    s = Sampling(max_tokens=16)
    want = local.chat(batch, s)
    got = remote.chat(batch, s)
    same = sum(a == b for a, b in zip(want, got))
    assert same >= 3, (want, got)  # greedy; bf16 batch shapes may flip a near-tie at most once
    # the server gathered the client's concurrent requests into batches
    import json
    import urllib.request

    with urllib.request.urlopen(server.rsplit("/v1", 1)[0] + "/stats", timeout=10) as r:
        assert max(json.loads(r.read())["chat_batches"]) > 1
    p_local = local.score_options([RATING_PROMPT, batch[0]], RATINGS, prefix="Rating: ")
    p_remote = remote.score_options([RATING_PROMPT, batch[0]], RATINGS, prefix="Rating: ")
    np.testing.assert_allclose(p_remote.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(p_remote, p_local, atol=0.03)
    multi = ["Toy Story", "The Matrix"]
    # multi-token options: compare log-probs (bf16 rounding grows with the number of tokens; an
    # off-by-one token or a wrong boundary would be off by whole nats)
    np.testing.assert_allclose(
        remote.score_options_raw([batch[0]], multi), local.score_options_raw([batch[0]], multi), rtol=0.03, atol=0.1
    )
    # chat-logprobs scoring (the mode for servers without echo) agrees on single-token options
    chat_mode = OpenAIChatLLM("SmolLM2-135M-Instruct-Q4_1", base_url=server, score_mode="chat")
    np.testing.assert_allclose(
        chat_mode.score_options([RATING_PROMPT], RATINGS, prefix="Rating: "), p_local[:1], atol=0.03
    )
    # seeded sampling through HTTP is repeatable
    ss = Sampling(temperature=1.0, max_tokens=10, seed=11)
    assert remote.chat(batch[:2], ss) == remote.chat(batch[:2], ss)
