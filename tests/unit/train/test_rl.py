"""RL maths (Eq. 7-8) and the REINFORCE update on plain data; RL kill-and-resume bitwise."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from rso_lib.data.records import RECOMMENDER, SEEKER, Turn
from rso_lib.experts.planner import Planner, make_tiny_encoder
from rso_lib.strategies import STRATEGIES
from rso_lib.train.checkpoint import latest_checkpoint
from rso_lib.train.rl import (
    EpisodeData,
    RLConfig,
    apply_baseline,
    build_rl_optimizer,
    discounted_returns,
    episodes_from_engine,
    reinforce_loss,
    rl_update,
    train_rl,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny_enc"), seed=0)


def fresh(tiny_dir, seed=0) -> Planner:
    return Planner.from_config(str(tiny_dir), max_length=32, seed=seed)


S1 = [Turn(SEEKER, "I want a scary movie for tonight")]
S2 = S1 + [Turn(RECOMMENDER, "Have you seen Halloween?"), Turn(SEEKER, "No, is it good?")]


def test_discounted_returns_by_hand():
    assert discounted_returns([1.0, 0.0, 1.0], 0.5) == [1.25, 0.5, 1.0]
    assert discounted_returns([0.2, 0.4, 0.6], 0.0) == [0.2, 0.4, 0.6]
    assert discounted_returns([0.2, 0.4, 0.6], 1.0) == pytest.approx([1.2, 1.0, 0.6])
    r = discounted_returns([0.5, 1.0], 0.99)
    assert r == pytest.approx([0.5 + 0.99 * 1.0, 1.0])
    assert discounted_returns([], 0.99) == []
    with pytest.raises(ValueError):
        discounted_returns([1.0], 1.5)


def test_reinforce_loss_by_hand_and_gradient():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    R = torch.tensor([1.0, 0.5])
    H = torch.tensor([2.0, 1.0], requires_grad=True)
    loss = reinforce_loss(logp, R, H, beta=0.1, n_episodes=1)
    assert float(loss.detach()) == pytest.approx(-(-1.0 * 1.0 + -2.0 * 0.5) - 0.1 * 1.5)
    loss.backward()
    assert torch.allclose(logp.grad, -R)  # d/dlogp = -R_t / E
    assert torch.allclose(H.grad, torch.full((2,), -0.1 / 2))  # d/dH = -beta / N
    # two episodes: the policy-gradient term is averaged over episodes
    assert float(
        reinforce_loss(torch.tensor([-1.0, -1.0]), torch.ones(2), torch.zeros(2), 0.0, n_episodes=2)
    ) == pytest.approx(1.0)


def test_baselines():
    R = torch.tensor([1.0, 2.0, 3.0])
    assert torch.equal(apply_baseline(R, "none"), R)
    assert torch.allclose(apply_baseline(R, "mean"), torch.tensor([-1.0, 0.0, 1.0]))
    n = apply_baseline(R, "normalise")
    assert float(n.mean()) == pytest.approx(0, abs=1e-6) and float(n.std()) == pytest.approx(1, abs=1e-5)
    with pytest.raises(ValueError):
        apply_baseline(R, "ema")


def test_normalise_is_per_episode_and_leaves_one_turn_episodes_alone():
    """The authors' agent.py: standardise within an episode, only when it has more than one turn."""
    R = torch.tensor([1.0, 2.0, 3.0, 0.7, 5.0, 5.0])
    n = apply_baseline(R, "normalise", [3, 1, 2])
    assert torch.allclose(n[:3], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-5)  # episode 1 on its own
    assert float(n[3]) == pytest.approx(0.7)  # a one-turn episode keeps its plain return
    assert torch.allclose(n[4:], torch.zeros(2))  # equal returns: zero after standardising
    with pytest.raises(ValueError, match="add up"):
        apply_baseline(R, "normalise", [2, 2])


def test_one_turn_episodes_still_get_a_gradient_under_normalise(tiny_dir):
    p = fresh(tiny_dir)
    cfg = RLConfig(lr=1e-2, beta=0.0, baseline="normalise", dialogues_per_update=1)
    good = STRATEGIES.index("credibility")
    before = _logp(p, S1, good)[0]
    row = rl_update(p, build_rl_optimizer(p, cfg), [EpisodeData([S1], [good], [1.0], accepted=True)], cfg)
    assert row["grad_norm"] > 0 and _logp(p, S1, good)[0] > before + 0.01


def test_gradient_clip_is_off_by_default_and_caps_when_set(tiny_dir):
    eps = [EpisodeData([S1, S2], [0, 1], [1.0, 1.0])]
    norms, moves = [], []
    for clip in (None, 1e-3):
        p = fresh(tiny_dir)
        w0 = p.head.weight.detach().clone()
        cfg = RLConfig(lr=1e-2, beta=0.0, max_grad_norm=clip)
        norms.append(rl_update(p, torch.optim.SGD(p.parameters(), lr=1.0), eps, cfg)["grad_norm"])
        moves.append(float((p.head.weight.detach() - w0).norm()))
    assert RLConfig().max_grad_norm is None
    assert norms[0] == pytest.approx(norms[1])  # the pre-clip norm is logged either way
    assert moves[1] < moves[0] * 0.5  # clipping shrinks the step


def _logp(planner, state, action):
    planner.eval()
    with torch.no_grad():
        lp, ent = planner.log_prob_and_entropy([state], [action])
    return float(lp[0]), float(ent[0])


def test_reinforce_update_raises_logprob_of_rewarded_strategy(tiny_dir):
    p = fresh(tiny_dir)
    cfg = RLConfig(lr=1e-2, beta=0.0, max_grad_norm=None)
    opt = build_rl_optimizer(p, cfg)
    good, bad = STRATEGIES.index("credibility"), STRATEGIES.index("no_strategy")
    eps = [
        EpisodeData([S1, S2], [good, good], [1.0, 1.0], accepted=True),
        EpisodeData([S1, S2], [bad, bad], [0.0, 0.0]),
    ]
    before_good, before_bad = _logp(p, S1, good)[0], _logp(p, S1, bad)[0]
    row = rl_update(p, opt, eps, cfg)
    after_good, after_bad = _logp(p, S1, good)[0], _logp(p, S1, bad)[0]
    assert after_good > before_good + 0.05, (before_good, after_good)
    assert after_bad < before_bad  # probability mass moved to the rewarded strategy
    assert row["accept_sr"] == 0.5 and row["mean_reward"] == 0.5 and row["n_turns"] == 4
    assert row["n_credibility"] == 2 and row["n_no_strategy"] == 2 and row["grad_norm"] > 0


def test_entropy_bonus_raises_entropy_of_a_peaked_policy(tiny_dir):
    p = fresh(tiny_dir)
    with torch.no_grad():
        p.head.bias.zero_()
        p.head.bias[0] = 6.0  # peaked on credibility
    _, h0 = _logp(p, S1, 0)
    assert h0 < 0.5
    eps = [EpisodeData([S1, S2], [0, 0], [0.0, 0.0])]  # no reward: only the entropy term acts
    cfg = RLConfig(lr=1e-2, beta=0.5, max_grad_norm=None)
    rl_update(p, build_rl_optimizer(p, cfg), eps, cfg)
    _, h1 = _logp(p, S1, 0)
    assert h1 > h0 + 0.05, (h0, h1)
    # control: beta = 0 and zero reward -> zero gradient -> nothing moves
    q = fresh(tiny_dir)
    with torch.no_grad():
        q.head.bias.zero_()
        q.head.bias[0] = 6.0
    before = {k: v.clone() for k, v in q.state_dict().items()}
    cfg0 = RLConfig(lr=1e-2, beta=0.0, max_grad_norm=None)
    rl_update(q, build_rl_optimizer(q, cfg0), eps, cfg0)
    assert all(torch.equal(before[k], v) for k, v in q.state_dict().items())


def test_chunking_gives_the_same_update(tiny_dir):
    eps = [EpisodeData([S1, S2, S2], [1, 2, 3], [0.3, 0.7, 1.0], True), EpisodeData([S2], [4], [0.2])]
    out = []
    for chunk in (1, 64):
        p = fresh(tiny_dir)
        cfg = RLConfig(lr=1e-3, beta=0.1, chunk_size=chunk)
        rl_update(p, build_rl_optimizer(p, cfg), eps, cfg)
        out.append(p.head.weight.detach().clone())
    assert torch.allclose(out[0], out[1], atol=1e-6)


def make_collect(reward_strategies=(0, 1, 2)):
    """Deterministic in (epoch, update, weights): samples with the planner, rewards some strategies."""
    states = [S1, S2, S1 + [Turn(RECOMMENDER, "Do you like Jordan Peele?")]]

    def collect(epoch, update, planner):
        g = torch.Generator().manual_seed(1000 * epoch + update)
        eps = []
        for d in range(3):
            ch = planner.act(states, generator=g)
            acts = [c.index for c in ch]
            rew = [1.0 if a in reward_strategies else 0.0 for a in acts]
            eps.append(EpisodeData(states, acts, rew, accepted=bool(rew[-1]), dialog_id=f"e{epoch}u{update}d{d}"))
        return eps

    return collect


class Killed(RuntimeError):
    pass


def test_rl_kill_and_resume_gives_identical_weights(tiny_dir, tmp_path):
    cfg = RLConfig(lr=1e-3, beta=0.05, epochs=2, dialogues_per_epoch=9, dialogues_per_update=3, save_every_updates=2)
    assert cfg.updates_per_epoch == 3
    ref = train_rl(cfg, fresh(tiny_dir), make_collect(), tmp_path / "ref", log=lambda s: None)
    assert len(ref.log) == 6

    def kill(step, row):
        if step == 5:
            raise Killed()

    with pytest.raises(Killed):
        train_rl(cfg, fresh(tiny_dir), make_collect(), tmp_path / "run", on_update=kill, log=lambda s: None)
    assert latest_checkpoint(tmp_path / "run" / "resume").name == "step-00000004"
    res = train_rl(cfg, fresh(tiny_dir), make_collect(), tmp_path / "run", log=lambda s: None)
    assert res.resumed_from == 4
    sa, sb = ref.planner.state_dict(), res.planner.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert res.log == ref.log
    # the run learned: different from the starting weights
    p0 = fresh(tiny_dir).state_dict()
    assert not torch.equal(p0["head.weight"], sb["head.weight"])
    with pytest.raises(ValueError, match="different run.*start_weights"):  # e.g. another SFT Planner
        train_rl(cfg, fresh(tiny_dir, seed=3), make_collect(), tmp_path / "run", log=lambda s: None)
    from rso_lib.plots import plot_rl_curves

    fig = plot_rl_curves(res.log)
    assert len(fig.axes) >= 4


def test_episodes_from_engine_requires_strategy_and_reward():
    tr = lambda idx, rew: SimpleNamespace(turn=0, history_before=[Turn(SEEKER, "hi")], strategy_index=idx, reward=rew)  # noqa: E731
    ok = SimpleNamespace(dialog_id="d1", accepted=True, turns=[tr(3, 0.5), tr(1, 1.0)])
    e = episodes_from_engine([ok])[0]
    assert e.actions == [3, 1] and e.rewards == [0.5, 1.0] and e.accepted and e.dialog_id == "d1"
    with pytest.raises(ValueError, match="reward=None"):
        episodes_from_engine([SimpleNamespace(dialog_id="d2", accepted=False, turns=[tr(3, None)])])
    with pytest.raises(ValueError, match="strategy_index=None"):
        episodes_from_engine([SimpleNamespace(dialog_id="d3", accepted=False, turns=[tr(None, 0.2)])])
    with pytest.raises(ValueError, match="states"):
        EpisodeData([S1], [0, 1], [0.0])


class FakeEngine:
    """Stands in for DialogueEngine: records what the collector asks for."""

    def __init__(self, planner):
        self.planner, self.seed, self.calls = planner, 0, []

    def run(self, targets, transcript_path, sample_strategy):
        self.calls.append(([t.dialog_id for t in targets], self.seed, transcript_path, sample_strategy))
        tr = SimpleNamespace(turn=0, history_before=[Turn(SEEKER, "hi")], strategy_index=1, reward=0.25)
        return [SimpleNamespace(dialog_id=t.dialog_id, accepted=False, turns=[tr]) for t in targets]


def test_engine_collector_order_seeds_and_reset(tiny_dir, tmp_path):
    from rso_lib.data.records import Persona, SimTarget
    from rso_lib.train.rl import engine_collector, update_seed

    targets = [SimTarget(f"d{i}", "inspired", f"u{i}", Persona(f"u{i}", ""), ["horror"]) for i in range(3)]
    p = fresh(tiny_dir)
    eng = FakeEngine(p)
    cfg = RLConfig(dialogues_per_epoch=5, dialogues_per_update=2, seed=4)  # 5 > 3 targets: cycles
    collect = engine_collector(eng, targets, cfg, transcript_dir=tmp_path / "tr")
    got = [collect(0, u, p) for u in range(cfg.updates_per_epoch)]
    assert [len(g) for g in got] == [2, 2, 1]
    ids = [i for ids, *_ in eng.calls for i in ids]
    assert len(ids) == 5 and len(set(ids)) == 5  # a target drawn twice gets its own dialog_id
    assert {i.split("#")[0] for i in ids} == {"d0", "d1", "d2"}
    assert [c[1] for c in eng.calls] == [update_seed(4, 0, u) for u in range(3)]
    assert len({c[1] for c in eng.calls}) == 3 and all(c[3] is True for c in eng.calls)
    assert eng.calls[1][2] == tmp_path / "tr" / "rl_e00_u001.jsonl"
    # same (seed, epoch) -> same order; another epoch -> another order
    eng2 = FakeEngine(p)
    c2 = engine_collector(eng2, targets, cfg, transcript_dir=None)
    for u in range(3):
        c2(0, u, p)
    assert [c[0] for c in eng2.calls] == [c[0] for c in eng.calls]
    assert got[0][0].rewards == [0.25] and got[0][0].actions == [1]
    with pytest.raises(ValueError, match="different Planner"):
        collect(0, 0, fresh(tiny_dir))
    (tmp_path / "tr").mkdir()
    (tmp_path / "tr" / "rl_e00_u000.jsonl").write_text("{}\n")
    collect.reset()
    assert not list((tmp_path / "tr").glob("*.jsonl"))
