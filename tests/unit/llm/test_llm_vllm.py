"""vLLM adapter: the request mapping, tested in the main venv (the engine: test_llm_vllm_cpu.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rso_lib.llm.protocol import Sampling
from rso_lib.llm.vllm_backend import (
    option_logprob,
    packaged_model_dir,
    sampling_params_kwargs,
    scoring_params_kwargs,
)


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


def test_packaged_names_resolve_to_the_embedded_conversion(monkeypatch, tmp_path):
    """``model: smollm2`` on backend vllm loads the embedded backend's cached conversion (offline,
    same weights, same provenance); hub ids and directories pass through unchanged."""
    import rso_lib.llm.embedded as emb

    monkeypatch.setattr(emb, "converted_dir", lambda: tmp_path)
    monkeypatch.setattr(emb, "smollm2_provenance", lambda: {"model": "smollm2"})
    assert packaged_model_dir("smollm2") == (str(tmp_path), emb.SMOLLM2_ID, {"model": "smollm2"})
    assert packaged_model_dir("Qwen/Qwen2.5-7B-Instruct") == ("Qwen/Qwen2.5-7B-Instruct",) * 2 + (None,)
    assert packaged_model_dir(str(tmp_path)) == (str(tmp_path), str(tmp_path), None)


# The engine itself is exercised by tests/integration/test_llm_vllm_cpu.py, in the second venv .venv-vllm that
# `make test` builds (vllm-cpu); this file runs in the main venv, which has no vLLM.
