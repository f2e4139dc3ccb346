"""vLLM on this CPU (``vllm-cpu`` in the second venv ``.venv-vllm``): the offline engine's batched
chat and option scoring against the transformers backend, and vLLM's OpenAI-compatible server
driven by our ``openai`` backend. Model: SmolLM2-135M-Instruct, the embedded default's cached
safetensors conversion.

Run by ``make test`` as its own invocation::

    VLLM_CPU_KVCACHE_SPACE=1 PYTHONPATH=. .venv-vllm/bin/python -m pytest tests/integration/test_llm_vllm_cpu.py

The main venv has no vLLM (its pins would clash: vllm-cpu 0.32 wants transformers<5.20), so the
main ``pytest tests`` run leaves this file out (``--ignore``); run there by hand, it skips and says
which venv runs it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip(
    "vllm",
    reason="vLLM runs in the second venv: `make setup-vllm`, then .venv-vllm/bin/python "
    "-m pytest tests/integration/test_llm_vllm_cpu.py (make test does both)",
)

from llm_fixtures import RATING_PROMPT, RATINGS, TITLE_OPTIONS, convs  # noqa: E402

from rso_lib.llm.protocol import Sampling  # noqa: E402

pytestmark = pytest.mark.slow
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="module")
def model_dir() -> str:
    from rso_lib.llm.embedded import converted_dir

    return os.environ.get("RSO_VLLM_TEST_MODEL") or str(converted_dir())


@pytest.fixture(scope="module")
def engine(model_dir):
    from rso_lib.llm import build_llm

    llm = build_llm(
        {"backend": "vllm", "model": model_dir, "dtype": "float32", "max_model_len": 2048, "enforce_eager": True}
    )
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def reference(model_dir):
    from rso_lib.llm.hf import HFChatLLM

    return HFChatLLM(model_dir, dtype="fp32", device="cpu", max_context=2048)


def test_batched_chat(engine):
    batch = convs(6)
    out = engine.chat(batch, Sampling(max_tokens=16))
    assert len(out) == 6 and all(len(r) == 1 and r[0].strip() for r in out)
    assert len({r[0] for r in out}) > 1  # different prompts, different replies
    assert engine.chat(batch, Sampling(max_tokens=16)) == out  # greedy is repeatable
    s = Sampling(temperature=1.0, max_tokens=12, seed=7, n=3)
    a = engine.chat(batch[:2], s)
    assert all(len(r) == 3 for r in a) and any(len(set(r)) > 1 for r in a)
    assert engine.chat(batch[:2], s) == a  # per-request seeds


def test_option_scores_match_the_transformers_backend(engine, reference):
    batch = [RATING_PROMPT, *convs(3)]
    for options, prefix in ((RATINGS, "Rating: "), (TITLE_OPTIONS, "Title: ")):
        v = engine.score_options_raw(batch, options, prefix=prefix)
        h = reference.score_options_raw(batch, options, prefix=prefix)
        assert v.shape == h.shape == (4, len(options))
        # same fp32 weights, different kernels: log-probs agree to well under 0.01 nats
        np.testing.assert_allclose(v, h, rtol=0, atol=0.02)
        np.testing.assert_allclose(engine.score_options(batch, options, prefix=prefix).sum(1), 1.0)


def test_single_token_options_take_one_pass_per_conversation(engine, monkeypatch):
    """Ratings "1".."5" are one token each: one request per conversation on the shared context,
    log-probs of exactly those tokens at the next position; multi-token titles go one prompt per
    option. Both ways give the same scores."""
    import rso_lib.llm.vllm_backend as vb

    batch = [RATING_PROMPT, *convs(3)]
    n0 = engine.stats()["next_token_scores"]
    fast = engine.score_options_raw(batch, RATINGS, prefix="Rating: ")
    assert engine.stats()["next_token_scores"] == n0 + len(batch)
    engine.score_options_raw(batch, TITLE_OPTIONS, prefix="Title: ")
    assert engine.stats()["next_token_scores"] == n0 + len(batch)
    monkeypatch.setattr(vb, "next_token_params", lambda ids: None)  # a vLLM without logprob_token_ids
    slow = engine.score_options_raw(batch, RATINGS, prefix="Rating: ")
    assert engine.stats()["next_token_scores"] == n0 + len(batch)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=0.02)


def test_prefix_cache_is_emptied_through_wrappers(engine, monkeypatch):
    """The dialogue engine empties every backend's prefix store at the start and end of a run
    (``clear_prefix_caches``, which looks through wrappers): for vLLM that must reach its
    automatic prefix cache, or a run's timings (and bf16 rounding) depend on earlier runs."""
    from rso_lib.llm import clear_prefix_caches

    calls = []
    real = engine.engine.reset_prefix_cache
    monkeypatch.setattr(engine.engine, "reset_prefix_cache", lambda *a, **k: calls.append(1) or real(*a, **k))

    class Wrapper:  # what the response cache and the engine's timing wrapper look like
        def __init__(self, inner):
            self.inner = inner

    engine.chat(convs(2), Sampling(max_tokens=4))
    clear_prefix_caches(Wrapper(Wrapper(engine)), engine)
    assert calls == [1]  # reached once, though named twice


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_dir):
    """vLLM's OpenAI-compatible server (``python -m vllm.entrypoints.openai.api_server``: the
    ``vllm serve`` script has no distribution metadata to run from in ``vllm-cpu``)."""
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model_dir,
        "--served-model-name",
        "smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        "2048",
        "--enforce-eager",
    ]
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"rso-vllm-server-{port}.log"), "w")  # noqa: SIM115 -- the server writes to it for its lifetime
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise TimeoutError(f"vLLM server not up after 600 s; see {log.name}")
            time.sleep(2)
        yield url + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_openai_backend_against_vllm_server(server, model_dir, engine):
    from rso_lib.llm.openai_backend import OpenAIChatLLM

    client = OpenAIChatLLM("smollm2", base_url=server, tokenizer=model_dir, max_concurrency=4)
    batch = convs(4)
    out = client.chat(batch, Sampling(max_tokens=16))
    assert len(out) == 4 and all(r[0].strip() for r in out)
    assert out == engine.chat(batch, Sampling(max_tokens=16))  # same engine, same greedy replies
    # option scoring through /v1/completions with echo + logprobs equals the offline engine's
    batch = [RATING_PROMPT, *convs(2)]
    np.testing.assert_allclose(
        client.score_options_raw(batch, RATINGS, prefix="Rating: "),
        engine.score_options_raw(batch, RATINGS, prefix="Rating: "),
        rtol=0,
        atol=0.02,
    )
