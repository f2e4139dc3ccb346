"""Seeds of a batched chat call: each conversation samples with its own seed, derived from the
request seed and its content (rso_lib.llm.prompting.per_conversation), in every backend."""

from __future__ import annotations

from dataclasses import replace

from rso_lib.llm.openai_backend import OpenAIChatLLM
from rso_lib.llm.prompting import conversation_seed, per_conversation
from rso_lib.llm.protocol import Sampling


def _conv(text: str) -> list[dict]:
    return [{"role": "system", "content": "You recommend movies."}, {"role": "user", "content": text}]


A, B, C = _conv("I like thrillers."), _conv("I like comedies."), _conv("Anything with Tom Hanks?")


def test_each_conversation_gets_its_own_seed_whatever_shares_its_batch():
    s = Sampling(temperature=0.7, seed=5, n=3)
    seeds = [x.seed for x in per_conversation(s, [A, B, C])]
    assert len(set(seeds)) == 3 and 5 not in seeds  # no two dialogues share a random stream
    # batch-independent: the seed of A is the same alone, in another position, next to a copy of itself
    assert per_conversation(s, [C, A])[1].seed == seeds[0] == per_conversation(s, [A])[0].seed
    assert [x.seed for x in per_conversation(s, [A, A])] == [seeds[0]] * 2
    # another request seed, another stream; the content counts, roles included
    assert conversation_seed(6, A) != seeds[0]
    assert conversation_seed(5, [{**m, "role": "user"} for m in A]) != seeds[0]
    # everything else is kept
    assert all(replace(x, seed=5) == s for x in per_conversation(s, [A, B, C]))


def test_greedy_and_unseeded_calls_are_left_alone():
    for s in (Sampling(temperature=0.0, seed=5), Sampling(temperature=0.9)):
        assert per_conversation(s, [A, B]) == [s, s]


def test_openai_backend_sends_each_conversation_its_seed(monkeypatch):
    llm = OpenAIChatLLM("m", base_url="http://127.0.0.1:9/v1", max_concurrency=1)
    sent = []

    def fake_request(path, body=None):
        sent.append(body)
        return {"choices": [{"index": j, "message": {"content": f"r{j}"}} for j in range(body["n"])]}

    monkeypatch.setattr(llm, "request", fake_request)
    s = Sampling(temperature=0.8, max_tokens=8, seed=11, n=2)
    assert llm.chat([A, B], s) == [["r0", "r1"], ["r0", "r1"]]
    assert [b["seed"] for b in sent] == [conversation_seed(11, A), conversation_seed(11, B)]
    assert all(b["n"] == 2 and b["max_tokens"] == 8 for b in sent)
