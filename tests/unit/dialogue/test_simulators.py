"""User simulators: title matching, the agenda state machine, the LLM simulator's grounded
acceptance, the simulator reward. Scripted LLMs; real-model runs are in tests/unit/dialogue/test_engine.py."""

from __future__ import annotations

import pytest

from rso_lib.data.records import RECOMMENDER, SEEKER, Item, Persona, SimTarget, Turn
from rso_lib.dialogue.simulators import (
    AgendaSimulator,
    LLMSimulator,
    SimResponse,
    SimulatorReward,
    TitleMatcher,
    covers,
    user_text,
)
from rso_lib.llm.scripted import ScriptedLLM

ITEMS = [
    Item("1", "Alien", 1979, ["horror", "sci-fi"]),
    Item("2", "Notting Hill", 1999, ["comedy", "romance"]),
    Item("3", "Heat", 1995, ["crime", "drama", "action"]),
    Item("4", "It", 2017, ["horror"]),
    Item("5", "Heat", 1986, ["action", "crime", "thriller"]),
    Item("6", "Aliens", 1986, ["action", "horror", "sci-fi"]),
]
T = SimTarget("d1", "inspired", "u1", Persona("u1", "You love scary films."), ["horror", "sci-fi"])


def hist(reply: str) -> list[Turn]:
    return [Turn(SEEKER, "hi"), Turn(RECOMMENDER, reply)]


def test_covers():
    assert covers(ITEMS[0], ["horror", "sci-fi"]) and not covers(ITEMS[1], ["horror"])
    assert not covers(ITEMS[0], [])  # an empty target is never "covered"


def test_title_matcher():
    m = TitleMatcher(ITEMS)
    assert m.find("You might love Aliens, a classic!") == "6"  # longest / exact token match
    assert m.find("Try alien tonight") == "1"
    assert m.find("It is a great day") is None  # short one-word titles ignored catalogue-wide
    assert m.find("It is a great movie", prefer=["4"]) == "4"  # ...but found among the candidates
    assert m.find("Heat (1986) is tense", prefer=["3", "5"]) == "5"  # a year in the text breaks ties
    assert m.find("Heat from 1995", prefer=["5", "3"]) == "3" and m.find("Heat!", prefer=["5", "3"]) == "5"
    assert m.find("Heat is tense") is None  # one-word 4-letter title: candidates only
    assert m.find("no movie here") is None


def test_agenda_flow_inquire_then_accept_and_reject():
    sim = AgendaSimulator(ITEMS)
    st = sim.new_state(T)
    op = sim.open([st])[0]
    assert op.action == "open" and "horror" in op.text and st.disclosed == ["horror"]
    r = sim.respond([st], [hist("What kind of movies do you like?")], [[]])[0]
    assert r.action == "disclose" and "sci-fi" in r.text and st.disclosed == ["horror", "sci-fi"]
    r = sim.respond([st], [hist("How about Notting Hill? It's lovely.")], [["2"]])[0]
    assert (r.action, r.item_id, r.accepted, r.covers_target) == ("reject", "2", False, False)
    r = sim.respond([st], [hist("Then watch Alien (1979).")], [["1"]])[0]
    assert (r.action, r.item_id, r.accepted) == ("inquire", "1", False) and "Alien" in r.text
    r = sim.respond([st], [hist("Alien is about a crew hunted in space.")], [["1"]])[0]
    assert (r.action, r.accepted, r.end) == ("accept", True, True)
    r = sim.respond([st], [hist("Nice weather.")], [[]])[0]
    assert r.action == "request" and not r.accepted


def test_agenda_is_deterministic_and_accepts_at_once_without_inquiry():
    a, b = AgendaSimulator(ITEMS), AgendaSimulator(ITEMS, inquire_before_accept=False)
    s1, s2 = a.new_state(T), a.new_state(T)
    assert a.open([s1])[0].text == a.open([s2])[0].text
    r = b.respond([b.new_state(T)], [hist("Aliens is great.")], [["6"]])[0]
    assert r.accepted and r.item_id == "6"


def test_agenda_paraphrase_batched_and_empty_counted():
    llm = ScriptedLLM(["Reworded text.", ""])
    sim = AgendaSimulator(ITEMS, paraphrase_llm=llm)
    out = sim.open([sim.new_state(T), sim.new_state(T)])
    assert len(llm.chat_calls) == 1
    assert out[0].text == "Reworded text." and out[0].parse_failures == 0
    assert out[1].parse_failures == 1 and "horror" in out[1].text  # template kept, failure counted


def _decide(p_ask, p_acc, p_rej):
    return lambda m, opts: [{"ask": p_ask, "accept": p_acc, "reject": p_rej}[o] for o in opts]


PLOT = "A space crew is hunted by a deadly alien creature aboard their ship."
FACT_ITEMS = [Item("1", "Alien", 1979, ["horror", "sci-fi"], PLOT)] + ITEMS[1:]


def test_llm_user_opens_like_the_authors_and_asks_before_deciding():
    llm = ScriptedLLM(["What is it about?"], option_probs=_decide(0.1, 0.8, 0.1))
    sim = LLMSimulator(llm, FACT_ITEMS, require_kb_cover=False)
    st = sim.new_state(T)
    assert sim.open([st])[0].text == "Hello." and not llm.chat_calls  # fixed opening, as the authors
    r = sim.respond([st], [hist("You should watch Alien (1979).")], [["1"]])[0]
    # a newly named movie: the user asks about it first, no decision scored, dialogue goes on
    assert (r.action, r.item_id, r.accepted, r.end) == ("inquire", "1", False, False) and not llm.score_calls
    assert "one question about Alien" in llm.chat_calls[-1][0][0][-1]["content"]
    # next turn: the recommender answers without naming the movie again; the user decides on it
    r = sim.respond([st], [hist("It's a tense sci-fi horror film set in space.")], [[]])[0]
    assert (r.action, r.item_id, r.accepted, r.end) == ("accept", "1", True, True)
    assert len(llm.score_calls) == 1 and r.p_accept == pytest.approx(0.8)


@pytest.mark.parametrize(
    "require,item,probs,want",
    [
        (True, "1", (0.1, 0.8, 0.1), "accept"),  # fits + the LLM accepts
        (True, "2", (0.1, 0.8, 0.1), "reject"),  # the LLM accepts but the KB genres do not cover the targets
        (True, "1", (0.1, 0.2, 0.7), "reject"),  # fits but the LLM rejects: its own decision
        (False, "2", (0.1, 0.8, 0.1), "accept"),  # paper mode: the LLM alone decides
        (False, "1", (0.7, 0.2, 0.1), "inquire"),  # it may keep asking
    ],
)
def test_llm_user_decision_after_asking(require, item, probs, want):
    llm = ScriptedLLM(["Sure."], option_probs=_decide(*probs))
    sim = LLMSimulator(llm, FACT_ITEMS, require_kb_cover=require)
    name = {"1": "Alien", "2": "Notting Hill"}[item]
    st, other = sim.new_state(T), sim.new_state(T)
    sim.respond([st], [hist(f"Watch {name}!")], [[item]])  # asks first
    r = sim.respond([st, other], [hist(f"{name} is great."), hist("What do you like?")], [[item], []])
    assert len(llm.score_calls) == 1 and len(llm.score_calls[0][0]) == 1  # only the row with a movie
    assert r[0].action == want and r[0].accepted is (want == "accept") and r[0].item_id == item
    assert r[1].item_id is None and not r[1].accepted and r[1].action == "chat"
    assert (item in st.rejected) is (want == "reject")


def test_llm_user_ask_without_a_question_is_said_plainly_and_counted():
    llm = ScriptedLLM(["Alien is a sci-fi horror film."])  # echoes the recommender: no question
    sim = LLMSimulator(llm, FACT_ITEMS, require_kb_cover=False)
    r = sim.respond([sim.new_state(T)], [hist("Watch Alien!")], [["1"]])[0]
    assert (r.action, r.text, r.parse_failures) == ("inquire", "What is Alien about?", 1)


def test_user_text_keeps_only_the_users_own_words():
    assert user_text("You: Sounds good. Recommender: Great!") == "Sounds good."
    assert user_text("Recommender: The movie is a thriller.") == ""  # speaks for the other side: nothing
    assert user_text("What is it about?\n\nAssistant: ...") == "What is it about?"


def test_llm_user_prompts_hold_no_kb_facts():
    """The recommender is the user's only source of information: no plot, no genres of the movie."""
    llm = ScriptedLLM(["Hmm."], option_probs=_decide(0.1, 0.1, 0.8))
    sim = LLMSimulator(llm, FACT_ITEMS, require_kb_cover=False, opening="")
    st = sim.new_state(T)
    sim.open([st])
    sim.respond([st], [hist("Watch Alien!")], [["1"]])
    sim.respond([st], [hist("Alien is good.")], [["1"]])
    sent = [m["content"] for call, _ in llm.chat_calls for msgs in call for m in msgs]
    sent += [m["content"] for call, _ in llm.score_calls for msgs in call for m in msgs]
    assert len(sent) >= 6 and not any(PLOT[:30] in x or "1979" in x for x in sent)


def test_simulator_reward_is_on_the_acceptance_scale():
    rw = SimulatorReward(stop_threshold=0.7)
    res = rw.score_from_sim(
        [
            SimResponse("ok", "accept", "1", accepted=True, covers_target=True),
            SimResponse("?", "inquire", "1", covers_target=True),
            SimResponse("no", "reject", "4", covers_target=False),
            SimResponse("hm", "request"),
            SimResponse("hm", "request"),
        ],
        [True, True, True, False, True],
    )
    assert [r.reward for r in res] == [1.0, 0.8, 0.2, 0.6, 0.4]
    assert [next(iter(r.levels)) for r in res] == [
        "accepted",
        "interested",
        "rejected",
        "no_recommendation",
        "not_interested",
    ]
    # the authors' tau lets "interested" (0.8) pass; a rejection or no recommendation never does
    assert [r.stop for r in res] == [True, True, False, False, False]
    assert [
        r.stop
        for r in SimulatorReward(stop_threshold=0.8).score_from_sim(
            res and [SimResponse("ok", "accept", "1", accepted=True), SimResponse("?", "inquire", "1")], [True, True]
        )
    ] == [True, False]
