"""SQLite disk cache: keys, hit/miss counting, only misses sent (as one batch), deterministic only."""

from __future__ import annotations

import numpy as np
import pytest
from llm_fixtures import RATING_PROMPT, RATINGS, convs, embedded

from rso_lib.llm import role_llms
from rso_lib.llm.cache import CachedLLM
from rso_lib.llm.protocol import Sampling
from rso_lib.llm.scripted import ScriptedLLM


def _echo(m):
    return "re: " + m[-1]["content"]


def test_hits_misses_and_only_misses_are_sent(tmp_path):
    inner = ScriptedLLM(_echo)
    c = CachedLLM(inner, tmp_path / "c.sqlite")
    a, b, d = convs(3)
    s = Sampling(max_tokens=8)
    assert c.chat([a, b], s) == [[_echo(a)], [_echo(b)]]
    assert c.stats()["misses"] == 2 and c.stats()["hits"] == 0
    out = c.chat([b, d, a, d], s)  # b, a cached; d twice -> sent once
    assert out == [[_echo(b)], [_echo(d)], [_echo(a)], [_echo(d)]]
    assert len(inner.chat_calls) == 2 and inner.chat_calls[1][0] == [d]  # one batch with the miss only
    st = c.stats()
    assert (st["hits"], st["misses"], st["entries"]) == (2, 4, 3)


def test_cache_persists_across_instances(tmp_path):
    inner = ScriptedLLM(_echo)
    CachedLLM(inner, tmp_path / "c.sqlite").chat(convs(2), Sampling())
    fresh = ScriptedLLM(lambda m: "never called")
    c2 = CachedLLM(fresh, tmp_path / "c.sqlite")
    assert c2.chat(convs(2), Sampling()) == [[_echo(m)] for m in convs(2)]
    assert fresh.chat_calls == [] and c2.stats()["hits"] == 2


def test_keys_depend_on_model_messages_and_sampling(tmp_path):
    c = CachedLLM(ScriptedLLM(_echo, model_id="m1"), tmp_path / "c.sqlite")
    m = convs(1)[0]
    base = c.key("chat", m, sampling={"temperature": 0})
    assert c.key("chat", m, sampling={"temperature": 0}) == base
    assert c.key("chat", m, sampling={"temperature": 0.5}) != base
    assert c.key("chat", convs(2)[1], sampling={"temperature": 0}) != base
    assert c.key("score", m, sampling={"temperature": 0}) != base
    other = CachedLLM(ScriptedLLM(_echo, model_id="m2"), tmp_path / "c.sqlite")
    assert other.key("chat", m, sampling={"temperature": 0}) != base


def test_only_deterministic_calls_are_cached(tmp_path):
    inner = ScriptedLLM(_echo)
    c = CachedLLM(inner, tmp_path / "c.sqlite")
    hot = Sampling(temperature=0.9)
    c.chat(convs(2), hot)
    c.chat(convs(2), hot)
    assert c.stats()["bypassed"] == 4 and c.stats()["entries"] == 0 and len(inner.chat_calls) == 2
    seeded = Sampling(temperature=0.9, seed=1)
    c.chat(convs(2), seeded)
    c.chat(convs(2), seeded)
    assert c.stats()["hits"] == 2 and len(inner.chat_calls) == 3
    c.chat(convs(2), Sampling(temperature=0.9, seed=2))  # another seed is another request
    assert c.stats()["misses"] == 4


def test_greedy_ignores_top_p_and_seed_in_the_key(tmp_path):
    c = CachedLLM(ScriptedLLM(_echo), tmp_path / "c.sqlite")
    c.chat(convs(1), Sampling(temperature=0, top_p=0.5, seed=3))
    c.chat(convs(1), Sampling(temperature=0))
    assert c.stats()["hits"] == 1


def test_scores_are_cached_per_options_and_prefix(tmp_path):
    inner = ScriptedLLM(option_probs=lambda m, o: [i + 1.0 for i in range(len(o))])
    c = CachedLLM(inner, tmp_path / "c.sqlite")
    p = c.score_options(convs(2), ["a", "b"], prefix="X: ")
    np.testing.assert_allclose(c.score_options(convs(2), ["a", "b"], prefix="X: "), p)
    c.score_options(convs(2), ["a", "b"], prefix="Y: ")
    c.score_options(convs(2), ["a", "b", "c"], prefix="X: ")
    assert len(inner.score_calls) == 3 and c.stats()["hits"] == 2
    assert c.score_options(convs(2), ["a", "b", "c"], prefix="X: ").shape == (2, 3)


def test_role_llms_share_one_cache_per_model(tmp_path):
    roles = role_llms({"default": {"backend": "embedded"}, "cache": str(tmp_path / "roles.sqlite")})
    assert all(isinstance(m, CachedLLM) for m in roles.values())
    assert roles["actor"] is roles["judge"]


@pytest.mark.slow
def test_real_model_through_the_cache(tmp_path):
    llm = embedded()
    c = CachedLLM(llm, tmp_path / "c.sqlite")
    s = Sampling(max_tokens=12)
    direct = llm.chat(convs(3), s)
    assert c.chat(convs(3), s) == direct
    g = llm.stats()["generated_tokens"]
    assert c.chat(convs(3), s) == direct
    assert llm.stats()["generated_tokens"] == g  # served from disk, the model did no work
    p = c.score_options([RATING_PROMPT], RATINGS, prefix="Rating: ")
    np.testing.assert_allclose(c.score_options([RATING_PROMPT], RATINGS, prefix="Rating: "), p)
    assert c.stats()["hits"] == 4
