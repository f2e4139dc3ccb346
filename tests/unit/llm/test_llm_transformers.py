"""The generic transformers backend on a local model directory (the converted SmolLM2 copy,
loaded as any user's local model would be), in fp32, checked against the embedded bf16 model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from llm_fixtures import RATING_PROMPT, RATINGS, convs, embedded, scores_by_both_paths

from rso_lib.llm import build_llm
from rso_lib.llm.prompting import conversation_seed
from rso_lib.llm.protocol import Sampling

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hf():
    from rso_lib.llm.embedded import converted_dir

    return build_llm({"backend": "transformers", "model": str(converted_dir()), "dtype": "fp32", "max_batch": 4})


def test_loads_a_local_directory(hf):
    import torch

    assert hf.backend == "transformers" and hf.dtype == torch.float32
    assert hf.model_id.endswith("-v1") and hf.max_context == 8192


def test_generates_and_batches_consistently(hf):
    s = Sampling(max_tokens=10)
    batch = convs(5)  # max_batch 4: two forward groups, left padding in each
    out = hf.chat(batch, s)
    assert all(r[0].strip() for r in out)
    # fp32: a row's greedy reply does not depend on the batch it was run in
    assert [hf.chat([c], s)[0] for c in batch[:2]] == out[:2]


def test_scores_agree_with_the_embedded_bf16_model(hf):
    p32 = hf.score_options([RATING_PROMPT], RATINGS, prefix="Rating: ")
    p16 = embedded().score_options([RATING_PROMPT], RATINGS, prefix="Rating: ")
    np.testing.assert_allclose(p32.sum(axis=1), 1.0)
    np.testing.assert_allclose(p32, p16, atol=0.05)


def test_multi_token_scoring_paths_agree_in_fp32(hf):
    shared, full = scores_by_both_paths(hf)
    np.testing.assert_allclose(shared, full, atol=2e-3)
    # chain rule: log P("Toy Story") = log P("Toy") + log P(" Story" | ... "Toy")
    two = hf.score_options_raw([RATING_PROMPT], ["Toy Story", "Toy"], prefix="Title: ")
    step = hf.score_options_raw([RATING_PROMPT], [" Story"], prefix="Title: Toy")
    assert abs(two[0, 0] - (two[0, 1] + step[0, 0])) < 2e-3


def test_missing_model_error_is_clear(tmp_path):
    with pytest.raises(OSError, match="cannot load transformers model .*holds no loadable model"):
        build_llm({"backend": "transformers", "model": str(tmp_path)})
    with pytest.raises(OSError, match="not a local directory"):
        build_llm({"backend": "transformers", "model": "no-such-org/no-such-model-xyz"})


def test_shared_prefix_pass_matches_the_unshared_pass_in_fp32(hf):
    # every chat prompt starts with the same system message + template: a shared prefix
    sys_msg = {"role": "system", "content": "You recommend movies to people in one short sentence."}
    batch = [[sys_msg] + c for c in convs(4)]
    ids = [hf._encode(hf.render(m)) for m in batch]
    assert hf._shared_prefix_len(ids, 1) >= 10
    s = Sampling(max_tokens=10)
    hf.set_prefix_cache(None)  # the stored-prefix reuse would serve the second pass from the first
    st0 = hf.stats()
    shared_text = hf.chat(batch, s)
    shared_scores = hf.score_options_raw(batch, RATINGS, prefix="Rating: ")
    shared_multi = hf.score_options_raw(batch, ["Toy Story", "Up"], prefix="Title: ")
    st1 = hf.stats()
    hf.min_shared_prefix = 0
    try:
        plain_text = hf.chat(batch, s)
        plain_scores = hf.score_options_raw(batch, RATINGS, prefix="Rating: ")
        plain_multi = hf.score_options_raw(batch, ["Toy Story", "Up"], prefix="Title: ")
        st2 = hf.stats()
    finally:
        hf.min_shared_prefix = 8
        hf.set_prefix_cache(1024)
    assert shared_text == plain_text
    np.testing.assert_allclose(shared_scores, plain_scores, atol=1e-3)
    np.testing.assert_allclose(shared_multi, plain_multi, atol=1e-3)
    done_shared = st1["prefill_padded_tokens"] - st0["prefill_padded_tokens"]
    done_plain = st2["prefill_padded_tokens"] - st1["prefill_padded_tokens"]
    assert done_shared < done_plain  # the prefix was computed once per batch, not once per row


def test_per_prompt_seeds_share_a_batch_and_pausing_changes_nothing(hf):
    from rso_lib.llm.hf import run_steps

    ids = [hf._encode(hf.render(m)) for m in convs(5)]  # max_batch 4: two chunks
    samplings = [Sampling(temperature=0.9, max_tokens=10, seed=100 + i, n=2 if i == 1 else 1) for i in range(5)]
    batched = run_steps(hf.generate_steps(ids, samplings))
    assert [len(g) for g in batched] == [1, 2, 1, 1, 1]
    # fp32: each row keeps the seed it has alone, whatever else shares its batch
    alone = [hf.generate_ids([p], s)[0] for p, s in zip(ids, samplings)]
    assert [[g.text for g in gs] for gs in batched] == [[g.text for g in gs] for gs in alone]
    # paused every 3 decode steps (the server interleaves other batches there): the same text
    steps, pauses = hf.generate_steps(ids, samplings, segment=3), 0
    while True:
        try:
            next(steps)
            pauses += 1
        except StopIteration as done:
            paused = done.value
            break
    assert pauses >= 4 and [[g.text for g in gs] for gs in paused] == [[g.text for g in gs] for gs in batched]
    with pytest.raises(ValueError, match="must agree on temperature"):
        run_steps(hf.generate_steps(ids[:2], [samplings[0], Sampling(temperature=0.5, max_tokens=10)]))


def test_samples_of_one_prompt_share_its_prompt_pass(hf):
    # n samples of a request are rows with the same prompt: one prompt pass, its KV cache copied.
    # With a vanishing top_p sampling is greedy, so every sample must equal that prompt's greedy
    # reply; a cache row copied to the wrong sample (or a stale one) gives another reply.
    batch = convs(2)
    greedy = [r[0] for r in hf.chat(batch, Sampling(max_tokens=10))]
    st0 = hf.stats()
    out = hf.chat(batch, Sampling(temperature=1.0, top_p=1e-9, max_tokens=10, n=2, seed=3))
    st1 = hf.stats()
    assert out == [[g, g] for g in greedy]
    assert st1["repeated_prompt_rows_saved"] - st0["repeated_prompt_rows_saved"] == 2  # 4 rows, 2 prompt passes
    assert st1["prefill_passes"] - st0["prefill_passes"] == 1
    # real sampling: each sample keeps its own seed (the same call gives the same replies)
    s = Sampling(temperature=1.0, max_tokens=10, n=3, seed=5)
    assert hf.chat(batch[:1], s) == hf.chat(batch[:1], s)


def test_a_seeded_batch_samples_each_conversation_with_its_own_seed(hf):
    # the engine sends every dialogue's request in one seeded call: each conversation must draw
    # from its own stream (one seed for the batch gave sample j of every dialogue the same one)
    batch = convs(3)
    s = Sampling(temperature=1.0, max_tokens=10, seed=7)
    out = hf.chat(batch, s)
    ids = [hf._encode(hf.render(m)) for m in batch]
    alone = [hf.generate_ids([p], replace(s, seed=conversation_seed(7, m)))[0][0].text for p, m in zip(ids, batch)]
    assert [r[0] for r in out] == alone
    assert hf.chat(batch[1:2], s)[0] == out[1]  # fp32: the same reply whatever shares the batch
