"""A tiny hand-made catalogue, a bag-of-words embedder and a DialogueEngine over scripted LLMs:
what the experts, engine, RL, prompt-prefix and reliability tests share (not a conftest: imported
explicitly; ``tests/`` is on pytest's ``pythonpath``)."""

from __future__ import annotations

import hashlib

import numpy as np

from rso_lib.data.records import Item, Persona, SimTarget
from rso_lib.dialogue.engine import DialogueEngine
from rso_lib.dialogue.simulators import AgendaSimulator, LLMSimulator, SimulatorReward
from rso_lib.dialogue.systems import RSO
from rso_lib.experts.retriever import FactRetriever
from rso_lib.experts.rewarder import Rewarder
from rso_lib.llm.scripted import ScriptedLLM
from rso_lib.strategies import STRATEGIES

ITEMS = [
    Item(
        "1", "Alien", 1979, ["horror", "sci-fi"], "A space crew is hunted by a deadly alien creature aboard their ship."
    ),
    Item("2", "Notting Hill", 1999, ["comedy", "romance"], "A London bookseller falls in love with a famous actress."),
    Item(
        "3", "Heat", 1995, ["crime", "drama", "action"], "A detective hunts a professional thief crew in Los Angeles."
    ),
    Item(
        "4", "Toy Story", 1995, ["animation", "comedy", "family"], "Toys come to life when their owner leaves the room."
    ),
    Item(
        "5",
        "The Conjuring",
        2013,
        ["horror", "mystery"],
        "Paranormal investigators help a family terrorised by a dark presence.",
    ),
]


class BagEmbedder:
    """Deterministic stand-in for a sentence embedder: hashed bag of words, L2-normalised by the
    retriever. Enough to make lexical overlap decide the ranking."""

    def __init__(self, dim: int = 64):
        self.dim, self.calls = dim, 0

    def encode(self, texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace(".", " ").replace(",", " ").split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(n, 1e-9) if normalize_embeddings else out


class UniformPlanner:
    """Test-only stand-in with the Planner's ``act`` API: uniform random strategy."""

    def act(self, histories, greedy, generator):
        import torch

        from rso_lib.experts.planner import PlannerChoice

        idx = torch.randint(0, len(STRATEGIES), (len(histories),), generator=generator).tolist()
        p = [1 / len(STRATEGIES)] * len(STRATEGIES)
        return [PlannerChoice(STRATEGIES[i], i, p[i], float(np.log(len(STRATEGIES))), p) for i in idx]


class Counting:
    """Wraps a backend and counts batched calls (the test's own view of lockstep batching)."""

    def __init__(self, inner, log, role):
        self.inner, self.log, self.role = inner, log, role
        self.model_id, self.backend = inner.model_id, inner.backend

    def chat(self, batch, sampling):
        self.log.append((self.role, "chat", len(batch)))
        return self.inner.chat(batch, sampling)

    def score_options(self, batch, options, prefix=""):
        self.log.append((self.role, "score", len(batch)))
        return self.inner.score_options(batch, options, prefix)


def targets(n, genres=("horror",)):
    return [
        SimTarget(f"d{i}", "inspired", f"u{i}", Persona(f"u{i}", "You like films."), list(genres)) for i in range(n)
    ]


def scripted_actor(messages):
    """Recommends the movie it was told to (so the agenda user reacts), else asks a question."""
    text = messages[-1]["content"]
    if "Movie to recommend:" in text:
        name = text.split("Movie to recommend:")[1].split("\n")[0].strip()
        return f"I think you would enjoy {name}."
    return "What kind of movies do you like?"


def make_engine(
    system=RSO,
    sim="agenda",
    reward="judge",
    max_turns=3,
    rating_probs=None,
    chooser_mode="letters",
    chooser_replies=("A",),
    log=None,
    tmp_path=None,
):
    rp = rating_probs or [0.2, 0.2, 0.2, 0.2, 0.2]
    base = {
        "actor": ScriptedLLM(scripted_actor, option_probs=lambda m, o: [1.0] + [0.0] * (len(o) - 1)),
        "reasoner": ScriptedLLM(["The user wants a horror sci-fi film about aliens."]),
        "chooser": ScriptedLLM(list(chooser_replies), option_probs=lambda m, o: [1.0] + [0.0] * (len(o) - 1)),
        "rewarder": ScriptedLLM(["Rating: 3"], option_probs=lambda m, o: rp),
        # the LLM user's decision options are ask / accept / reject: it accepts once it has asked
        "simulator": ScriptedLLM(["I like horror."], option_probs=lambda m, o: [0.05, 0.9, 0.05]),
    }
    log = log if log is not None else []
    llms = {r: Counting(l, log, r) for r, l in base.items()}
    retr = FactRetriever(ITEMS, BagEmbedder(), embedder_name="bag", cache_dir=tmp_path, top_k=3, rank_n=5)
    simulator = AgendaSimulator(ITEMS) if sim == "agenda" else LLMSimulator(llms["simulator"], ITEMS)
    rew = Rewarder(llms["rewarder"]) if reward == "judge" else SimulatorReward()
    return DialogueEngine(
        system,
        llms,
        retriever=retr if system.use_retriever else None,
        planner=UniformPlanner() if system.strategy_mode == "planner" else None,
        simulator=simulator,
        rewarder=rew,
        max_turns=max_turns,
        seed=7,
        chooser_mode=chooser_mode,
    ), log
