"""Prompt-prefix KV reuse (rso_lib.llm.prefix_cache + HFChatLLM): the store's bookkeeping without a
model, and on the embedded SmolLM2 that reuse gives the replies and scores a whole prompt pass
gives, over the kit's real multi-turn expert prompts."""

from __future__ import annotations

import llm_fixtures  # noqa: F401  -- offline environment
import numpy as np
import pytest

from rso_lib.data.records import RECOMMENDER, SEEKER, Turn
from rso_lib.experts.prompts import ACCEPTANCE_PREFIX, acceptance_prompt, actor_prompt, reasoner_prompt
from rso_lib.llm.prefix_cache import PrefixKVStore, common_prefix_len
from rso_lib.llm.protocol import Sampling

# ------------------------------------------------------------------------------ the store alone


def _kv(n: int) -> list[tuple]:
    import torch

    return [(torch.zeros(1, 1, n, 2), torch.zeros(1, 1, n, 2))]


def test_common_prefix_len():
    a = np.array([1, 2, 3, 4])
    assert common_prefix_len(a, np.array([1, 2, 9])) == 2
    assert common_prefix_len(a, np.array([1, 2, 3, 4, 5])) == 4
    assert common_prefix_len(a, np.array([7])) == 0
    assert common_prefix_len(a, np.array([], dtype=np.int64)) == 0


def test_lookup_finds_the_longest_start_capped_and_above_the_minimum():
    s = PrefixKVStore(max_tokens=1000, min_reuse=3)
    s.put(list(range(10)), _kv(10))
    s.put(list(range(6)) + [99, 98, 97, 96], _kv(10))
    key, n = s.lookup(list(range(8)) + [50, 51], cap=100)
    assert n == 8 and list(s.get(key).tokens[:3]) == [0, 1, 2] and s.get(key).tokens[6] == 6
    assert s.lookup(list(range(8)) + [50, 51], cap=5)[1] == 5  # the caller keeps the rest to run
    assert s.lookup([0, 1, 42, 43], cap=100) == (None, 0)  # 2 < min_reuse
    assert s.counters["hits"] == 2 and s.counters["reused_tokens"] == 13


def test_eviction_keeps_the_store_within_its_budget_least_recently_used_first():
    s = PrefixKVStore(max_tokens=25, min_reuse=2)
    a, b, c = [1] * 10, [2] * 10, [3] * 10
    s.put(a, _kv(10))
    s.put(b, _kv(10))
    assert s.lookup(a + [5], cap=10)[1] == 10  # a used: b is now the least recent
    s.put(c, _kv(10))
    assert s.tokens <= 25 and len(s) == 2 and s.counters["evicted"] == 1
    assert s.lookup(b + [5], cap=10) == (None, 0)  # b was evicted
    assert s.lookup(a + [5], cap=10)[1] == 10
    s.put([4] * 30, _kv(30))  # longer than the whole budget: not stored, nothing evicted
    assert len(s) == 2 and s.tokens == 20
    assert s.contains(a[:5]) and not s.contains(a + [1])
    s.clear()
    assert len(s) == 0 and s.tokens == 0


def test_bad_budget_fails_clearly():
    with pytest.raises(ValueError, match="max_tokens"):
        PrefixKVStore(0)


# ------------------------------------------------------------------------------ on a real model

_TURNS = [
    ("I'm in the mood for a funny movie with animals, something for the whole family.", ""),
    (
        "Have you seen Paddington 2? It is a warm comedy about a bear in London.",
        "That sounds nice, but I saw it already. Anything with dogs?",
    ),
    (
        "Then try Hotel for Dogs: two kids hide a pack of stray dogs in an empty hotel.",
        "Ha, that could be fun. Is it very silly?",
    ),
]


def _history(upto: int, opener: str) -> list[Turn]:
    h = [Turn(SEEKER, opener)]
    for reply, user in _TURNS[1 : upto + 1]:
        h += [Turn(RECOMMENDER, reply), Turn(SEEKER, user)]
    return h


def _dialogue_prompts(turn: int) -> list[list[dict]]:
    """Three dialogues' Reasoner and Actor prompts at ``turn`` (each extends its turn-1 history)."""
    openers = [_TURNS[0][0], "Looking for a scary film for tonight.", "Any good space movies?"]
    out = []
    for i, op in enumerate(openers):
        h = _history(turn, op)
        out.append(reasoner_prompt(h))
        out.append(actor_prompt(h, "Ask about the user's favourite actors." if i else None, "", [], None, mode="ask"))
    return out


@pytest.fixture(scope="module")
def llm():
    # fp32: in bf16 (the default on CPUs with native bf16) a row's logits already move by ~0.5
    # with the batch's shapes, reuse or not, and greedy ties then flip either way
    from rso_lib.llm import build_llm

    m = build_llm({"backend": "embedded", "dtype": "fp32"})
    yield m
    m.set_prefix_cache(1024)  # the default, for other test modules sharing this model


def _gen(llm, batch, sampling):
    return [[g.token_ids for g in gs] for gs in llm.generate_ids([llm._encode(llm.render(m)) for m in batch], sampling)]


@pytest.mark.slow
def test_reuse_gives_the_same_greedy_tokens_over_dialogue_turns(llm):
    greedy = Sampling(max_tokens=20)
    llm.set_prefix_cache(None)
    want = [_gen(llm, _dialogue_prompts(t), greedy) for t in range(3)]
    llm.set_prefix_cache(256)
    got = []
    for t in range(3):
        before = llm.stats()["prefix_reused_tokens"]
        got.append(_gen(llm, _dialogue_prompts(t), greedy))
        if t:  # turn t starts where turn t-1's prompts did: most of its prompt is loaded, not run
            assert llm.stats()["prefix_reused_tokens"] - before > 100
    assert got == want


@pytest.mark.slow
def test_reuse_gives_the_same_scores(llm):
    h = _history(2, _TURNS[0][0])
    earlier = [
        acceptance_prompt([*h[:3], Turn(RECOMMENDER, _TURNS[2][0]), Turn(SEEKER, _TURNS[2][1])]),
        reasoner_prompt(h[:3]),
    ]
    batch = [
        acceptance_prompt(
            [*h, Turn(RECOMMENDER, "Or Beethoven, about a big St. Bernard."), Turn(SEEKER, "Perfect, I'll watch it!")]
        ),
        reasoner_prompt(h),
    ]
    llm.set_prefix_cache(None)
    want = llm.score_options(batch, ["1", "2", "3", "4", "5"], prefix=ACCEPTANCE_PREFIX)
    want_multi = llm.score_options_raw(batch, ["Beethoven", "Hotel for Dogs"], prefix="Title: ")
    llm.set_prefix_cache(256)
    llm.score_options(earlier, ["1", "2"], prefix=ACCEPTANCE_PREFIX)  # stores the shorter histories
    before = llm.stats()["prefix_reused_tokens"]
    got = llm.score_options(batch, ["1", "2", "3", "4", "5"], prefix=ACCEPTANCE_PREFIX)
    assert llm.stats()["prefix_reused_tokens"] - before > 50
    got_multi = llm.score_options_raw(batch, ["Beethoven", "Hotel for Dogs"], prefix="Title: ")
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(got_multi, want_multi, atol=1e-3)


@pytest.mark.slow
def test_sampled_replies_with_reuse_match_without(llm):
    """Seeded sampling draws from the same distribution row by row: same seeds, same replies."""
    s = Sampling(temperature=0.8, max_tokens=12, seed=3, n=2)
    llm.set_prefix_cache(None)
    want = llm.chat(_dialogue_prompts(1), s)
    llm.set_prefix_cache(256)
    llm.chat(_dialogue_prompts(0), s)
    assert llm.chat(_dialogue_prompts(1), s) == want


@pytest.mark.slow
def test_store_memory_stays_within_its_budget(llm):
    llm.set_prefix_cache(12)  # 12 MiB: ~270 positions of SmolLM2, two of these prompts
    store = llm.prefix_store
    for t in range(3):
        llm.chat(_dialogue_prompts(t), Sampling(max_tokens=2))
    held = sum(k.nbytes + v.nbytes for e in store._entries.values() for k, v in e.kv)
    assert store.counters["evicted"] > 0
    assert store.tokens <= store.max_tokens and held <= 12 * 2**20 and len(store) >= 1
    assert held == store.tokens * llm._kv_bytes_per_token()


def test_the_engine_empties_every_backends_store_at_the_start_and_end_of_a_run(tmp_path):
    """The engine's calls reach the backends through wrappers (timing, counting); each backend's
    store is emptied before the run (its numbers then depend on its own calls only) and after it
    (the dialogues have ended)."""
    from engine_fixtures import make_engine, targets

    eng, _ = make_engine(sim="llm", max_turns=2, tmp_path=tmp_path)
    cleared = []
    backends = {id(w.inner.inner): w.inner.inner for w in eng.llms.values()}  # _TimedLLM -> Counting -> Scripted
    for b in backends.values():
        b.clear_prefix_cache = lambda b=b: cleared.append(b)
    eng.run(targets(2))
    assert len(cleared) == 2 * len(backends) and set(map(id, cleared)) == set(backends)
