"""Hand-made transcripts, a tiny knowledge base and a scripted judge for the eval tests."""

import json

import numpy as np

from rso_lib.data.records import Item
from rso_lib.llm.scripted import ScriptedLLM


class TinyKB:
    def __init__(self, items):
        self.items = {i.item_id: i for i in items}

    def get(self, iid):
        return self.items.get(str(iid))

    def covers(self, iid, genres):
        it = self.items.get(str(iid))
        return it is not None and set(genres) <= set(it.genres)


KB = TinyKB(
    [
        Item("m1", "Alien", 1979, ["horror", "sci-fi"], plot="A crew meets a creature.", director=["Ridley Scott"]),
        Item("m2", "Airplane!", 1980, ["comedy"], plot="A pilot panics."),
        Item("m3", "Heat", 1995, ["crime", "drama"], plot="A heist."),
    ]
)


def _rows(did, accepted, turns, genres=("horror",), system="RSO", dataset="inspired", reward_stop=None):
    """Transcript lines (schema rso.transcript/1) of one finished dialogue. The evaluator's stop
    rule fires on the last turn when ``reward_stop`` (default: ``accepted``) is true."""
    reward_stop = accepted if reward_stop is None else reward_stop
    from rso_lib.dialogue.transcript import SCHEMA

    out = []
    for k, t in enumerate(turns):
        last = k == len(turns) - 1
        acc = accepted and last
        out.append(
            {
                "schema": SCHEMA,
                "system": system,
                "dialog_id": did,
                "turn": k,
                "dataset": dataset,
                "user_id": "u" + did,
                "target_genres": list(genres),
                "persona": "A student who loves scary films." if k == 0 else None,
                "user_open": "Hi, I want a movie." if k == 0 else None,
                "strategy": t.get("strategy", "credibility"),
                "strategy_index": 0,
                "strategy_prob": 0.5,
                "strategy_entropy": 1.0,
                "preference": "",
                "retrieved": t.get("retrieved", []),
                "retrieval_scores": [0.5] * len(t.get("retrieved", [])),
                "ranking": t.get("retrieved", []),
                "chosen_item": t.get("chosen"),
                "chooser_probs": [],
                "reply": t["reply"],
                "refinements": 0,
                "mentioned_item": t.get("mentioned", t.get("chosen")),
                "user_reply": "ok",
                "user_action": "inquire",
                "covers_target": None,
                "p_accept": None,
                "accepted": acc,
                "reward": 1.0 if reward_stop and last else 0.5,
                "rating": 5.0 if reward_stop and last else 3.0,
                "stop": bool(reward_stop and last),
                "done": last,
                "stop_reason": ("accepted" if acc else "max_turns") if last else None,
                "parse_failures": {"actor": t.get("pf", 0)},
            }
        )
    return out


def _turn(reply, chosen=None, retrieved=(), pf=0, strategy="credibility", mentioned="same"):
    t = {"reply": reply, "chosen": chosen, "retrieved": list(retrieved), "pf": pf, "strategy": strategy}
    if mentioned != "same":
        t["mentioned"] = mentioned
    return t


def _write(path, dialogues):
    path.write_text("".join(json.dumps(r) + "\n" for d in dialogues for r in d) + "\n")
    return path


def _judge():
    """Option probabilities by prompt kind: pre -> 2, post -> 4, true -> 5, credibility -> 3."""

    def probs(messages, options):
        text = messages[-1]["content"]
        if "fact-checker" in messages[0]["content"]:
            want = 3
        elif "its title" in text:
            want = 2
        elif "recommender said" in text:
            want = 4
        else:
            want = 5
        p = np.zeros(len(options))
        p[want - 1] = 1.0
        return p

    return ScriptedLLM(option_probs=probs)


class WordRanker:
    """A deterministic stand-in for the embedding ranker (unit tests of the evaluation rules):
    similarity = number of lower-cased words an item's title, genres and plot share with the
    query; ties by item id. Records the queries it was asked."""

    def __init__(self, kb):
        self.kb = kb
        self.queries: list[str] = []

    def _words(self, text):
        import re

        return set(re.findall(r"[a-z]+", text.lower()))

    def _score(self, query, iid):
        it = self.kb.get(iid)
        return len(self._words(query) & self._words(f"{it.name} {' '.join(it.genres)} {it.plot}"))

    def most_similar(self, queries, candidates):
        self.queries += list(queries)
        return [max(sorted(c), key=lambda i: self._score(q, i)) if c else None for q, c in zip(queries, candidates)]

    def rank_catalogue(self, queries):
        self.queries += list(queries)
        ids = sorted(self.kb.items)
        return [sorted(ids, key=lambda i: (-self._score(q, i), i)) for q in queries]
