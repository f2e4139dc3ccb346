"""Planner expert (Eq. 2): input format, left truncation, act / log-prob maths, seeding, save/load."""

from __future__ import annotations

import math

import pytest
import torch

from rso_lib.data.records import RECOMMENDER, SEEKER, Turn
from rso_lib.experts.planner import Planner, PlannerChoice, format_history, make_tiny_encoder, resolve_encoder
from rso_lib.strategies import NUM_STRATEGIES, STRATEGIES


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny_enc"), seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return Planner.from_config(str(tiny_dir), max_length=32, seed=0)


HIST = [
    Turn(RECOMMENDER, "Hi there!  What kind of movies\tdo you like?", "opinion_inquiry"),
    Turn(SEEKER, "I like horror, especially old slashers."),
]


def test_format_history_role_lines():
    assert format_history(HIST) == (
        "RECOMMENDER: Hi there! What kind of movies do you like?\nSEEKER: I like horror, especially old slashers."
    )
    assert format_history([]) == ""


def test_left_truncation_keeps_most_recent_turns(tiny):
    old = [Turn(SEEKER, "ancient " * 200)]
    recent = Turn(RECOMMENDER, "zebra")
    enc = tiny.encode([format_history(old + [recent])])
    ids = enc["input_ids"][0].tolist()
    toks = tiny.tokenizer.convert_ids_to_tokens(ids)
    assert len(ids) == tiny.config.max_length
    assert toks[0] == "[CLS]" and toks[-1] == "[SEP]"  # special tokens survive the cut
    assert toks[-2] == "zebra"  # the newest turn is kept ...
    assert toks[-5:-1] == ["recommend", "##er", ":", "zebra"]
    # ... and the oldest text is what was cut: [CLS] + ancient*k + "seeker" no longer fits
    assert "seeker" not in toks and toks.count("ancient") == tiny.config.max_length - 6


def test_act_distribution_greedy_and_entropy(tiny):
    hs = [HIST, HIST[:1], []]
    ch = tiny.act(hs, greedy=True)
    assert len(ch) == 3 and all(isinstance(c, PlannerChoice) for c in ch)
    for c in ch:
        p = torch.tensor(c.probs)
        assert p.shape == (NUM_STRATEGIES,) and abs(float(p.sum()) - 1) < 1e-5
        assert c.index == int(p.argmax()) and c.strategy == STRATEGIES[c.index]
        assert c.prob == pytest.approx(float(p[c.index]), abs=1e-7)
        assert c.entropy == pytest.approx(float(-(p * p.log()).sum()), abs=1e-5)
        assert 0 < c.entropy <= math.log(NUM_STRATEGIES) + 1e-6


def test_sampling_is_reproducible_with_a_generator(tiny):
    hs = [HIST] * 40
    a = [c.index for c in tiny.act(hs, generator=torch.Generator().manual_seed(1))]
    b = [c.index for c in tiny.act(hs, generator=torch.Generator().manual_seed(1))]
    c = [c.index for c in tiny.act(hs, generator=torch.Generator().manual_seed(2))]
    assert a == b
    assert a != c  # a near-uniform fresh head: 40 draws from 14 classes cannot coincide by chance
    assert len(set(a)) > 3  # sampling, not argmax


def test_log_prob_and_entropy_match_act_and_have_grad(tiny):
    tiny.eval()
    choices = tiny.act([HIST, []], greedy=False, generator=torch.Generator().manual_seed(0))
    logp, ent = tiny.log_prob_and_entropy([HIST, []], [c.index for c in choices])
    assert logp.requires_grad and ent.requires_grad
    for i, c in enumerate(choices):
        assert float(logp[i].detach().exp()) == pytest.approx(c.prob, abs=1e-6)
        assert float(ent[i].detach()) == pytest.approx(c.entropy, abs=1e-5)
    logp.sum().backward()
    assert tiny.head.weight.grad is not None and tiny.head.weight.grad.abs().sum() > 0
    tiny.zero_grad()
    with pytest.raises(ValueError, match="out of range"):
        tiny.log_prob_and_entropy([HIST], [14])
    with pytest.raises(ValueError, match="1 histories but 2 actions"):
        tiny.log_prob_and_entropy([HIST], [0, 1])


def test_head_is_seeded_before_creation(tiny_dir):
    a = Planner.from_config(str(tiny_dir), seed=3)
    torch.manual_seed(12345)
    torch.rand(100)  # disturb the global RNG: must not matter
    b = Planner.from_config(str(tiny_dir), seed=3)
    c = Planner.from_config(str(tiny_dir), seed=4)
    assert torch.equal(a.head.weight, b.head.weight) and torch.equal(a.head.bias, b.head.bias)
    assert not torch.equal(a.head.weight, c.head.weight)


def test_save_load_roundtrip(tiny_dir, tmp_path):
    p = Planner.from_config(str(tiny_dir), max_length=24, seed=5, pooling="cls")
    with torch.no_grad():
        p.head.weight.add_(0.5)  # make the weights differ from any fresh init
    p.save(tmp_path / "pl")
    q = Planner.load(tmp_path / "pl")
    assert q.config == p.config and q.config.pooling == "cls" and q.config.max_length == 24
    assert q.tokenizer.truncation_side == "left"
    sd_p, sd_q = p.state_dict(), q.state_dict()
    assert sd_p.keys() == sd_q.keys()
    assert all(torch.equal(sd_p[k], sd_q[k]) for k in sd_p)
    p.eval(), q.eval()
    texts = [format_history(HIST), ""]
    with torch.no_grad():
        assert torch.equal(p(texts), q(texts))


def test_bad_inputs_fail_clearly(tmp_path, tiny_dir):
    with pytest.raises(FileNotFoundError, match="neither 'all-MiniLM-L6-v2', a local"):
        resolve_encoder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_encoder(tmp_path)
    assert resolve_encoder("FacebookAI/roberta-large") == "FacebookAI/roberta-large"  # a hub id, loaded by transformers
    with pytest.raises(FileNotFoundError, match="cannot load Planner encoder"):  # offline and not cached
        Planner.from_config("rso-test-no-such-org/no-such-model")
    with pytest.raises(FileNotFoundError, match="not a saved Planner"):
        Planner.load(tmp_path)
    with pytest.raises(ValueError, match="pooling"):
        Planner.from_config(str(tiny_dir), pooling="max")


@pytest.mark.slow
def test_real_minilm_planner(tmp_path):
    p = Planner.from_config()  # the embedded all-MiniLM-L6-v2
    assert p.encoder.config.hidden_size == 384 and p.config.pooling == "mean"
    ch = p.act([HIST], greedy=True)[0]
    assert ch.strategy in STRATEGIES and 0 < ch.prob < 1
    p.save(tmp_path / "m")
    q = Planner.load(tmp_path / "m")
    p.eval(), q.eval()
    with torch.no_grad():
        assert torch.equal(p([format_history(HIST)]), q([format_history(HIST)]))
