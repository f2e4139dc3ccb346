"""The generic transformers backend on a local model directory (the converted SmolLM2 copy,
loaded as any user's local model would be), in fp32, checked against the embedded bf16 model."""

from __future__ import annotations

import numpy as np
import pytest

from llm_fixtures import RATING_PROMPT, RATINGS, convs, embedded
from rso_lib.llm import build_llm
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


def test_missing_model_error_is_clear(tmp_path):
    with pytest.raises(OSError, match="cannot load transformers model .*holds no loadable model"):
        build_llm({"backend": "transformers", "model": str(tmp_path)})
    with pytest.raises(OSError, match="not a local directory"):
        build_llm({"backend": "transformers", "model": "no-such-org/no-such-model-xyz"})
