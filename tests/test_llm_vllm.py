"""vLLM adapter: the request mapping is tested everywhere; the engine only where vLLM imports."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest

from rso_lib.llm.protocol import Sampling
from rso_lib.llm.vllm_backend import option_logprob, sampling_params_kwargs, scoring_params_kwargs


def test_sampling_maps_to_sampling_params():
    kw = sampling_params_kwargs(Sampling(temperature=0.7, top_p=0.9, max_tokens=50, stop=("\n",), seed=3, n=4))
    assert kw == {"n": 4, "temperature": 0.7, "top_p": 0.9, "max_tokens": 50, "stop": ["\n"], "seed": 3}


def test_greedy_asks_for_one_reply_and_no_seed():
    kw = sampling_params_kwargs(Sampling(temperature=0.0, top_p=0.5, n=3, seed=9, max_tokens=8))
    assert kw == {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 8}


def test_bad_sampling_is_rejected():
    with pytest.raises(ValueError, match="n and max_tokens"):
        sampling_params_kwargs(Sampling(n=0))


def test_scoring_params_ask_for_prompt_logprobs():
    assert scoring_params_kwargs()["prompt_logprobs"] == 0


def test_option_logprob_sums_the_option_tokens_only():
    lp = lambda v: SimpleNamespace(logprob=v)  # noqa: E731 -- vLLM's Logprob has .logprob
    prompt_lps = [None, {5: lp(-1.0)}, {6: lp(-2.0)}, {7: lp(-0.5), 1: lp(-0.1)}, {8: lp(-0.25)}]
    assert option_logprob(prompt_lps, [7, 8]) == pytest.approx(-0.75)
    assert option_logprob(prompt_lps, [8]) == pytest.approx(-0.25)
    with pytest.raises(ValueError):
        option_logprob([None], [3])


def test_importing_the_kit_does_not_import_vllm():
    import subprocess
    import sys

    code = (
        "import sys, rso_lib.llm, rso_lib.llm.vllm_backend, rso_lib.llm.openai_backend, rso_lib.llm.serve; "
        "print(sorted(m for m in ('vllm', 'torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # vllm (and even torch) load only when a backend is built


_HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.gpu
@pytest.mark.skipif(not _HAS_VLLM, reason="vllm is not installed (GPU machines: pip install -e '.[vllm]')")
def test_vllm_engine_generates_and_scores():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vllm is installed but no CUDA device is visible")
    from rso_lib.llm import build_llm

    llm = build_llm(
        {"backend": "vllm", "model": "Qwen/Qwen2.5-0.5B-Instruct", "gpu_memory_utilization": 0.3, "max_model_len": 2048}
    )
    conv = [{"role": "user", "content": "Name one movie for a rainy day."}]
    out = llm.chat([conv, conv], Sampling(temperature=0.8, seed=5, max_tokens=16, n=2))
    assert out[0] == out[1] and all(t for t in out[0])
    p = llm.score_options([conv], ["1", "2", "3", "4", "5"], prefix="Rating: ")
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
