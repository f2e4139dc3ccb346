"""The lockstep dialogue engine: control flow with scripted LLMs (fast), then real dialogues end
to end with the embedded models under both simulators (slow)."""

from __future__ import annotations

import json

import pytest
from engine_fixtures import ITEMS, Counting, make_engine, targets

from rso_lib.dialogue.chat import chat
from rso_lib.dialogue.config import EngineConfig
from rso_lib.dialogue.engine import DialogueEngine
from rso_lib.dialogue.simulators import AgendaSimulator
from rso_lib.dialogue.systems import (
    PROMPT_ONLY,
    RSO,
    SYSTEMS,
    SystemConfig,
    build_system,
    get_system,
)
from rso_lib.dialogue.transcript import (
    FIELDS,
    TranscriptError,
    read_episodes,
    validate_row,
    validate_transcript,
)
from rso_lib.experts.retriever import FactRetriever
from rso_lib.experts.rewarder import Rewarder
from rso_lib.llm.scripted import ScriptedLLM
from rso_lib.strategies import INQUIRY_STRATEGIES, STRATEGIES

ROLES = ("actor", "reasoner", "chooser", "rewarder", "simulator", "judge")


# ------------------------------------------------------------------ control flow (fast)
def test_lockstep_one_call_per_role_per_step(tmp_path):
    eng, log = make_engine(sim="llm", max_turns=4, tmp_path=tmp_path)
    # two users want horror (the LLM user asks about the first movie named, then accepts it), two
    # want a western (none in the catalogue: the coverage gate turns every accept into a reject)
    eps = eng.run(targets(2) + targets(4, ("western",))[2:], tmp_path / "t.jsonl")
    lens = [len(e.turns) for e in eps]
    assert all(e.accepted and 2 <= len(e.turns) < 4 for e in eps[:2]) and lens[2:] == [4, 4]
    assert not any(e.accepted for e in eps[2:])
    for e in eps:  # never decided at the first mention: the user asks about it first
        first = next(t for t in e.turns if t.mentioned_item)
        assert first.user_action == "inquire" and not first.accepted
    # the engine's own log: per step, exactly one backend call per (role, method)
    assert max(eng.stats.calls.values()) == 1
    assert {s for s, _, _ in eng.stats.calls} == {0, 1, 2, 3}  # the users open with a fixed "Hello."
    for s in range(4):
        roles = {(r, m) for st, r, m in eng.stats.calls if st == s}
        assert {
            ("planner", "act"),
            ("reasoner", "chat"),
            ("retriever", "retrieve"),
            ("chooser", "score_options"),
            ("actor", "chat"),
            ("simulator", "chat"),
        } <= roles
    # the test's own counting wrapper: one batch per role per step holding every active dialogue
    active = [sum(n > s for n in lens) for s in range(4)]
    for role in ("reasoner", "actor", "chooser"):
        assert [b for r, m, b in log if r == role] == active, role
    assert [b for r, m, b in log if r == "simulator" and m == "chat"] == active
    # the judge is asked only about states in which a movie has been named
    named = [sum(any(t.mentioned_item for t in e.turns[: s + 1]) for e in eps if len(e.turns) > s) for s in range(4)]
    assert [b for r, m, b in log if r == "rewarder"] == [n for n in named if n]
    # a preference-elicitation strategy (Table I) is offered the chosen item (the authors' env.py)
    # but not told to name it: the scripted Actor then asks instead of recommending
    asking = [t for e in eps for t in e.turns if t.strategy in INQUIRY_STRATEGIES]
    assert asking and all(t.chosen_item is not None and t.facts for t in asking)
    assert all(t.reply == "What kind of movies do you like?" for t in asking)


def honest_judge(messages, options):
    """Acceptance judge for tests: reads the seeker's last line like the rubric says."""
    last = messages[-1]["content"].split("Conversation:\n")[1].split("\n\n")[0].splitlines()[-1].lower()
    level = (
        4
        if "?" in last or "tell me more" in last
        else 5
        if any(w in last for w in ("watch", "it is", "go with"))
        else 1
    )
    return [1.0 if o == str(level) else 0.0 for o in options]


@pytest.mark.parametrize("tau,past_first", [(0.8, True), (0.7, False)])
def test_dialogue_runs_past_the_users_question_unless_tau_lets_interest_pass(tmp_path, tau, past_first):
    """The agenda user asks about a fitting movie before accepting it. Under the authors' values
    "interested" is worth 0.8: it passes the authors' tau 0.7 (the dialogue ends, a success, on
    the user's question) but not tau 0.8, where the dialogue runs on to the acceptance."""
    eng, _ = make_engine(max_turns=5, tmp_path=tmp_path)
    eng.rewarder = Rewarder(ScriptedLLM(option_probs=honest_judge), stop_threshold=tau)
    eps = eng.run(targets(3), tmp_path / "t.jsonl")
    for e in eps:
        first = next(k for k, t in enumerate(e.turns) if t.mentioned_item)
        assert e.turns[first].user_action == "inquire" and e.turns[first].reward == pytest.approx(0.8)
        if past_first:
            assert len(e.turns) > first + 1 and e.accepted and e.stop_reason == "accepted"
            assert e.turns[-1].reward == 1.0 and e.turns[-1].stop  # Conv-SR: the final state passes tau
        else:
            assert len(e.turns) == first + 1 and e.stop_reason == "reward" and not e.accepted


def test_inquiry_item_off_keeps_inquiry_turns_item_free(tmp_path):
    eng, log = make_engine(max_turns=3, tmp_path=tmp_path)
    eng.inquiry_item = False
    eps = eng.run(targets(4), tmp_path / "t.jsonl")
    asking = [t for e in eps for t in e.turns if t.strategy in INQUIRY_STRATEGIES]
    assert asking and all(t.chosen_item is None and not t.facts for t in asking)


def test_transcript_schema_rerun_skips_finished(tmp_path):
    path = tmp_path / "t.jsonl"
    eng, log = make_engine(max_turns=4, tmp_path=tmp_path)
    eps = eng.run(targets(3), path)
    summary = validate_transcript(path)
    assert summary == {
        "rows": sum(len(e.turns) for e in eps),
        "dialogues": 3,
        "finished": 3,
        "turns_per_dialogue": {e.dialog_id: len(e.turns) for e in eps},
    }
    rows = [json.loads(l) for l in path.read_text().splitlines()]
    assert all(set(r) == set(FIELDS) for r in rows)
    n_calls = len(log)
    again = eng.run(targets(3), path)  # everything finished: no model call at all
    assert len(log) == n_calls
    assert [e.turns[-1].reply for e in again] == [e.turns[-1].reply for e in eps]
    assert [len(e.turns[-1].history_before) for e in again] == [len(e.turns[-1].history_before) for e in eps]
    # drop the last line of d1's dialogue: d1 is unfinished and rerun from scratch, d0/d2 skipped
    d1 = [i for i, r in enumerate(rows) if r["dialog_id"] == "d1"]
    path.write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if i != d1[-1]))
    eng.reset_stats()
    eps3 = eng.run(targets(3), path)
    assert eng.stats.dialogues == 1
    assert validate_transcript(path)["finished"] == 3
    assert [e.turns[-1].reply for e in eps3] == [e.turns[-1].reply for e in eps]
    assert {e.dialog_id for e in read_episodes(path)} == {"d0", "d1", "d2"}


def test_agenda_dialogue_accepts_fitting_item_and_same_seed_same_transcript(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    eps = make_engine(max_turns=5, tmp_path=tmp_path)[0].run(targets(2, ("horror", "sci-fi")), a)
    make_engine(max_turns=5, tmp_path=tmp_path)[0].run(targets(2, ("horror", "sci-fi")), b)
    assert a.read_text() == b.read_text()
    # the bag-of-words retriever puts Alien (horror, sci-fi) first for "horror sci-fi" queries,
    # the chooser takes A; the agenda user inquires, then accepts
    e = eps[0]
    assert e.accepted and e.accepted_item == "1" and e.stop_reason == "accepted"
    assert [t.user_action for t in e.turns][-2:] == ["inquire", "accept"]
    assert all(t.strategy in STRATEGIES and 0 < t.strategy_prob <= 1 for t in e.turns)


def test_no_movie_named_never_stops_even_if_the_judge_says_accepted(tmp_path):
    # the judge is certain the user accepted, but the chooser's answer names no candidate and the
    # scripted Actor then asks instead of recommending: no movie named, so no turn passes tau
    eng, log = make_engine(
        rating_probs=[0, 0, 0, 0, 1], chooser_mode="generate", chooser_replies=("Titanic",), tmp_path=tmp_path
    )
    eps = eng.run(targets(2), tmp_path / "t.jsonl")
    for e in eps:
        assert len(e.turns) == 3 and e.stop_reason == "max_turns"
        assert all(t.reward == 0.6 and not t.stop and t.mentioned_item is None for t in e.turns)
        assert e.turns[0].chosen_item is None  # not replaced by the top candidate
        assert e.turns[0].parse_failures == {"chooser": 1} and e.parse_failures == {"chooser": 3}
    assert not any(r == "rewarder" for r, _, _ in log)  # the judge is not even asked
    rows = [json.loads(l) for l in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r["parse_failures"] for r in rows] == [{"chooser": 1}] * 6


def test_reward_stop_rule_fires_on_the_first_state_with_a_named_movie(tmp_path):
    eng, _ = make_engine(rating_probs=[0, 0, 0, 0, 1], max_turns=4, tmp_path=tmp_path)
    eps = eng.run(targets(4), tmp_path / "t.jsonl")
    for e in eps:
        named = [k for k, t in enumerate(e.turns) if t.mentioned_item]
        assert named and e.stop_reason == "reward" and len(e.turns) == named[0] + 1
        assert e.turns[-1].reward == 1.0 and not any(t.stop for t in e.turns[:-1])


@pytest.mark.parametrize(
    "system", [s for s in SYSTEMS.values() if not s.plm], ids=[k for k, s in SYSTEMS.items() if not s.plm]
)
def test_every_system_runs(system, tmp_path):
    eng, log = make_engine(system=system, max_turns=2, tmp_path=tmp_path)
    eps = eng.run(targets(2), tmp_path / "t.jsonl")
    validate_transcript(tmp_path / "t.jsonl")
    roles = {r for r, _, _ in log}
    t0 = eps[0].turns[0]
    assert ("reasoner" in roles) == system.use_reasoner
    assert bool(t0.retrieved) == system.use_retriever and (t0.chosen_item is not None) == system.use_chooser
    assert bool(t0.preference) == system.use_reasoner
    if system.strategy_mode == "planner":
        assert t0.strategy in STRATEGIES
    elif system.strategy_mode == "explanation":
        assert t0.strategy == "logical_appeal" and t0.strategy_index is None
        assert t0.refinements == 0  # the scripted self-check says "yes"
    else:
        assert t0.strategy is None
    assert get_system(system.name.lower()) is system


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="needs a planner"):
        DialogueEngine(RSO, {"actor": ScriptedLLM()}, retriever=None, planner=None, simulator=AgendaSimulator(ITEMS))
    with pytest.raises(ValueError, match="chooser needs the retriever"):
        SystemConfig("X", use_retriever=False, use_chooser=True)
    with pytest.raises(KeyError, match="unknown system"):
        get_system("KBRD")  # UNICRS / BARCOR are presets (tests/unit/baselines/test_baselines.py runs them)
    eng, _ = make_engine(tmp_path=tmp_path)
    eng.run(targets(1), tmp_path / "t.jsonl")
    other, _ = make_engine(system=PROMPT_ONLY, tmp_path=tmp_path)
    with pytest.raises(ValueError, match="one transcript per system"):
        other.run(targets(1), tmp_path / "t.jsonl")
    with pytest.raises(ValueError, match="duplicate"):
        eng.run(targets(1) * 2)


def test_validate_row_catches_bad_rows(tmp_path):
    eng, _ = make_engine(max_turns=1, tmp_path=tmp_path)
    eng.run(targets(1), tmp_path / "t.jsonl")
    row = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])
    assert validate_row(row) == []
    for k, v, msg in [
        ("reward", 1.5, "outside"),
        ("done", False, "stop_reason"),
        ("turn", "0", "field 'turn'"),
        ("chosen_item", "zzz", "not among retrieved"),
        ("accepted", True, "mentioned_item"),
    ]:
        bad = dict(row, **{k: v})
        if k == "accepted":
            bad["mentioned_item"] = None
        assert any(msg in e for e in validate_row(bad)), (k, validate_row(bad))
    del row["reply"]
    assert "missing field 'reply'" in validate_row(row)
    (tmp_path / "bad.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(TranscriptError, match=r"bad.jsonl:1: missing field 'reply'"):
        validate_transcript(tmp_path / "bad.jsonl")


def test_interactive_chat_shows_trace_and_accepts(tmp_path):
    eng, _ = make_engine(max_turns=4, tmp_path=tmp_path)
    said = iter(["I want a horror sci-fi movie", "tell me more", "/accept"])
    shown = []
    ep = chat(eng, input_fn=lambda prompt: next(said), print_fn=shown.append, target_genres=["horror"])
    text = "\n".join(shown)
    assert (
        "[strategy]" in text
        and "[preference] The user wants a horror sci-fi film about aliens." in text
        and "[facts]" in text
    )
    assert "system> I think you would enjoy" in text
    assert ep.accepted and ep.stop_reason == "accepted" and len(ep.turns) == 2  # open + 2 answers
    assert isinstance(eng.simulator, AgendaSimulator)  # the engine's simulator is restored


# ------------------------------------------------------------------ real models (slow)
@pytest.fixture(scope="session")
def real(data_dir, tmp_path_factory):
    from rso_lib.data.kb import KnowledgeBase, load_kb
    from rso_lib.data.targets import load_sim_targets
    from rso_lib.llm import build_llm, load_embedder
    from rso_lib.paths import run_dir

    full = load_kb(data_dir)
    tg = [t for t in load_sim_targets(data_dir, "inspired", "test") if t.target_genres][:2]
    # a real sub-catalogue keeps the one-off index build short in CI: up to 100 valid targets of
    # each simulated user + the first 400 items by id (the full 6.5k index takes minutes on 2 cores)
    keep = sorted(full.items)[:400] + [i for t in tg for i in full.valid_targets(t.target_genres)[:100]]
    kb = KnowledgeBase([full.get(i) for i in dict.fromkeys(keep)], source="redial-subset")
    llm = build_llm({"backend": "embedded"})
    emb = load_embedder()
    retr = FactRetriever(kb, emb, cache_dir=run_dir("test") / "cache", top_k=3)
    return {"kb": kb, "targets": tg, "llm": llm, "emb": emb, "retriever": retr}


def _real_engine(real, system, sim, log, max_turns=3):
    from rso_lib.experts.planner import Planner

    llms = {r: Counting(real["llm"], log, r) for r in ROLES}
    planner = Planner.from_config(seed=0) if system.strategy_mode == "planner" else None
    cfg = EngineConfig(
        simulator=sim, max_turns=max_turns, actor_max_tokens=24, user_max_tokens=20, reasoner_max_tokens=24
    )
    return build_system(system, cfg, kb=real["kb"], llms=llms, planner=planner, retriever=real["retriever"], seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("system,sim", [(RSO, "agenda"), (PROMPT_ONLY, "llm")], ids=["RSO-agenda", "PROMPT_ONLY-llm"])
def test_real_dialogues_end_to_end(real, system, sim, tmp_path):
    log = []
    eng = _real_engine(real, system, sim, log, max_turns=3 if sim == "agenda" else 2)  # test time budget
    path = tmp_path / "t.jsonl"
    eps = eng.run(real["targets"], path, sample_strategy=True)
    s = validate_transcript(path)
    assert s["dialogues"] == 2 and s["finished"] == 2
    kb = real["kb"]
    for e in eps:
        assert 1 <= len(e.turns) <= eng.max_turns
        for t in e.turns:
            assert t.reply.strip() and t.user_reply.strip()
            if system.use_retriever:
                assert len(t.retrieved) == 3 and len(t.ranking) == 50
                assert t.chosen_item in t.retrieved or t.chosen_item is None  # None: no recommendation yet
            else:  # QwenCRS-style prompt-only: in context, no candidates, no facts
                assert not t.retrieved and t.chosen_item is None and not t.facts
            assert t.reward is not None and 0 <= t.reward <= 1
            if system.strategy_mode == "planner":
                assert t.strategy in STRATEGIES and t.preference
            if t.accepted:  # grounded acceptance: only an item whose KB genres cover the targets
                assert kb.covers(t.mentioned_item, e.target.target_genres)
    # lockstep: per step one call per (role, method); batch = number of active dialogues
    steps = max(len(e.turns) for e in eps)
    for role in ("actor",) + (("reasoner",) if system.use_reasoner else ()):
        sizes = [b for r, _, b in log if r == role]
        assert sizes == [sum(len(e.turns) > st for e in eps) for st in range(steps)], role
    # the judge is asked only about states in which a movie has been named (others: 0.6, no stop)
    named = [
        sum(any(t.mentioned_item for t in e.turns[: st + 1]) for e in eps if len(e.turns) > st) for st in range(steps)
    ]
    assert [b for r, _, b in log if r == "rewarder"] == [n for n in named if n]
    assert all(
        t.reward == 0.6 and not t.stop
        for e in eps
        for k, t in enumerate(e.turns)
        if not any(u.mentioned_item for u in e.turns[: k + 1])
    )
    assert eng.stats.model_s > 0 and 0 <= eng.stats.outside_share < 1


def test_chat_widget_buttons_drive_the_dialogue(tmp_path):
    """The widget's buttons feed the background dialogue: a message, then Accept ends it with the
    movie the system named; replies and expert traces land in their panes."""
    pytest.importorskip("ipywidgets")
    from rso_lib.dialogue.chat_widget import ChatWidget

    eng, _ = make_engine(max_turns=3, tmp_path=tmp_path)
    w = ChatWidget(eng, target_genres=["horror"], timeout_s=30)
    w.text.value = "Hi, I want a scary movie."
    w.send.click()
    w.accept.click()
    w.thread.join(timeout=60)
    assert not w.thread.is_alive() and w.error is None
    assert w.episode.accepted and len(w.episode.turns) == 1
    said = "".join(o["text"] for o in w.conversation.outputs)
    assert "you> Hi, I want a scary movie." in said and "system> I think you would enjoy" in said
    assert "[strategy]" in "".join(o["text"] for o in w.trace.outputs)
