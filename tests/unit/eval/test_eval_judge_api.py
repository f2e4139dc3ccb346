"""The judges' public API (judge_cred / judge_wi / judge_prs / judge_both) with scripted LLMs:
reasoned-mode decoding as the authors read it, failure counts, and the score-vs-reasoned agreement."""

import json

import numpy as np
import pytest

from rso_lib.data.records import Item
from rso_lib.eval import judges as J
from rso_lib.llm.scripted import ScriptedLLM

ALIEN = Item(
    "m1", "Alien (1979)", 1979, ["horror", "sci-fi"], plot="A crew meets a creature.", director=["Ridley Scott"]
)


@pytest.mark.parametrize(
    "text,want",
    [
        ('{"Evidence": "all true", "Truthfulness": 4}', 4),
        ('```json\n{"Evidence": "x", "Truthfulness": 5}\n```', 5),  # wrapped: the first {...}
        ('{"Evidence": "cut off... "Truthfulness": 2', 2),  # broken JSON: the authors' split rule
        ('{"Evidence": "x", "Truthfulness": "3"}', 3),
        ('{"Evidence": "x", "Truthfulness": 7}', None),  # out of range
        ('{"Evidence": "x", "Truthfulness": 3.5}', None),  # not an integer
        ("I think it is a 4.", None),  # no key: a failure, not a guess
        ("", None),
    ],
)
def test_parse_reasoned(text, want):
    assert J.parse_reasoned(text, "Truthfulness") == want


def test_judge_cred_reasoned_counts_failures_and_decodes_greedily():
    replies = iter(['{"Evidence": "ok", "Truthfulness": 5}', "no json here", '{"Evidence": "x", "Truthfulness": 1}'])
    llm = ScriptedLLM(replies=lambda m: next(replies))
    cases = [J.CredCase("Alien is by Ridley Scott.", ALIEN)] * 3
    out = J.judge_cred(llm, cases, mode="reasoned")
    assert out.scores == [5.0, None, 1.0] and out.parse_failures == 1 and out.unparsed == 1
    assert out.requests == 3 and out.mode == "reasoned"
    sampling = llm.chat_calls[0][1]
    assert sampling.temperature == 0.0 and sampling.n == 1 and sampling.max_tokens == 300
    prompt = llm.chat_calls[0][0][0][-1]["content"]
    assert '"Truthfulness"' in prompt and "Evidence" in prompt  # asks for reasoning, then the score


def test_judge_wi_uses_the_watching_intention_key_and_kind():
    seen = []

    def reply(m):
        seen.append(m[-1]["content"])
        return json.dumps({"Evidence": "fits", "Watching Intention": 4})

    cases = [J.IntentionCase("A student.", ("horror",), ALIEN, "Recommender: Alien is a horror classic.")]
    out = J.judge_wi(ScriptedLLM(replies=reply), cases, kind="post", mode="reasoned")
    assert out.scores == [4.0]
    assert "Alien is a horror classic" in seen[0] and '"Watching Intention"' in seen[0]
    with pytest.raises(ValueError):
        J.judge_wi(ScriptedLLM(), cases, kind="later")


def test_judge_prs_combines_three_intentions():
    def probs(m, o):  # pre (title) 2, post (recommender's words) 4, true (full record) 5
        t = m[-1]["content"]
        want = 2 if "its title" in t else 4 if "recommender said" in t else 5
        return np.eye(5)[want - 1]

    cases = [J.IntentionCase("A student.", ("horror",), ALIEN, "Recommender: a creature hunts a crew.")]
    out = J.judge_prs(ScriptedLLM(option_probs=probs), cases, mode="score")
    assert out.cases[0].status == "ok" and out.cases[0].value == pytest.approx(1 - (5 - 4) / (5 - 2))
    assert out.requests == 3 and out.parse_failures == 0


def test_judge_both_reports_rank_agreement():
    """Score mode and reasoned mode from one scripted judge whose two answers agree in order
    (reasoned = round(score)) on 4 cases -> Spearman 1; reversing one procedure -> -1."""
    levels = {"a": 1, "b": 2, "c": 4, "d": 5}

    def level(m):
        return next(v for k, v in levels.items() if f'"{k} ' in m[-1]["content"])

    probs = lambda m, o: np.eye(5)[level(m) - 1] * 0.8 + 0.05  # noqa: E731
    agree = ScriptedLLM(replies=lambda m: json.dumps({"Evidence": "", "Truthfulness": level(m)}), option_probs=probs)
    cases = [J.CredCase(f"{k} x", ALIEN) for k in levels]
    a = J.judge_both(J.judge_cred, agree, cases)
    assert a.n == 4 and a.spearman == pytest.approx(1.0) and a.score.mode == "score" and a.reasoned.mode == "reasoned"
    rev = ScriptedLLM(replies=lambda m: json.dumps({"Truthfulness": 6 - level(m)}), option_probs=probs)
    assert J.judge_both(J.judge_cred, rev, cases).spearman == pytest.approx(-1.0)


def test_cred_rubric_does_not_reward_saying_nothing():
    """The rubric places a reply with nothing checkable at 3, below supported specific details."""
    text = J.credibility_messages("You will love it!", ALIEN)[-1]["content"]
    three = next(line for line in text.splitlines() if line.startswith("3 ="))
    assert "little that can be checked" in three
    five = next(line for line in text.splitlines() if line.startswith("5 ="))
    assert "specific details" in five
