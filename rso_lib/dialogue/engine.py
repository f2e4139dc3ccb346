"""The lockstep dialogue engine (paper Alg. 1, one turn = :meth:`DialogueEngine._step`).

N dialogues advance together. At each step the engine gathers every active dialogue's request for
one role and sends it to that role's backend as ONE batched call, in this order::

    planner -> reasoner -> retriever (one embed batch + one faiss search) -> chooser -> actor
    [-> PC-CRS self-check / refine] -> simulator -> rewarder

then drops the finished dialogues (user accepted, Eq. 9 stop rule, or ``max_turns``). Each turn is
appended to a JSONL transcript (:mod:`rso_lib.dialogue.transcript`); a rerun on the same
transcript skips the dialogues already finished there (a partly written dialogue is dropped and
run again from its start: :func:`~rso_lib.dialogue.transcript.finished_episodes`).

Reproducibility: every sampled call gets a seed derived from (engine seed, step, role) and the
Planner samples from a ``torch.Generator`` seeded with the engine seed, so the same seed, targets
and backends give the same transcript. (A batched backend may give slightly different numbers for
a row in a batch of a different size, so a rerun that resumes half-way is reproducible only per
batch composition.)

Timing: every backend call (LLMs, embedder + faiss, Planner) is timed; :attr:`DialogueEngine.stats`
holds wall time, time inside model calls and the calls per (step, role, method), which the
lockstep test and ``bench/dialogue_engine.py`` read.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rso_lib.data.records import RECOMMENDER, SEEKER, SimTarget, Turn
from rso_lib.dialogue.transcript import (
    Episode,
    TurnRecord,
    append_rows,
    finished_episodes,
    record_to_row,
)
from rso_lib.experts.actor import (
    EXPLANATION_NAMES,
    Actor,
    ItemChooser,
    choose_explanation_strategy,
    self_check_and_refine,
)
from rso_lib.experts.prompts import EXPLANATION_STRATEGIES
from rso_lib.experts.reasoner import PreferenceReasoner
from rso_lib.experts.rewarder import RewardResult
from rso_lib.llm import clear_prefix_caches
from rso_lib.llm.protocol import ChatLLM, Sampling
from rso_lib.strategies import DESCRIPTIONS, INQUIRY_STRATEGIES, NUM_STRATEGIES, STRATEGIES

_ROLE_SEED = {"open": 1, "reasoner": 2, "chooser": 3, "actor": 4, "refine": 5, "simulator": 6, "rewarder": 7}


class _TimedLLM:
    """Wraps a backend: times each call and logs (step, role, method) on the engine."""

    def __init__(self, inner: ChatLLM, role: str, engine: DialogueEngine):
        self.inner = inner.inner if isinstance(inner, _TimedLLM) else inner
        self.role, self.engine = role, engine
        self.model_id = getattr(self.inner, "model_id", "?")
        self.backend = getattr(self.inner, "backend", "?")

    def chat(self, batch, sampling):
        return self.engine._model(self.role, "chat", self.inner.chat, batch, sampling)

    def score_options(self, batch, options, prefix=""):
        return self.engine._model(self.role, "score_options", self.inner.score_options, batch, options, prefix)


def _actor_mode(abstain: bool, inquiry: bool, chosen: str | None, cand_names: list, use_retriever: bool) -> str:
    """The Actor's mode for one turn (see :func:`rso_lib.experts.prompts.actor_prompt`)."""
    if abstain:
        return "ask"
    if chosen:
        return "candidates" if inquiry else "item"  # an inquiry turn is offered the item, not told to name it
    if cand_names:
        return "candidates"
    return "own" if not use_retriever else "ask"


@dataclass
class EngineStats:
    wall_s: float = 0.0  # inside run()
    model_s: float = 0.0  # inside backend / embedder / planner calls
    turns: int = 0  # system turns simulated
    dialogues: int = 0
    calls: Counter = field(default_factory=Counter)  # (step, role, method) -> backend calls
    model_s_by_role: Counter = field(default_factory=Counter)

    @property
    def outside_share(self) -> float:
        return 1.0 - self.model_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.wall_s if self.wall_s > 0 else 0.0


@dataclass
class _Dlg:
    target: SimTarget
    sim: Any
    user_open: str = ""
    history: list[Turn] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)
    preference: str = ""
    open_failures: int = 0
    rejected: set[str] = field(default_factory=set)  # movies the user turned down (not offered again)
    done: bool = False


@dataclass
class _Draft:
    """One dialogue's turn in the making: each step of Alg. 1 fills in its part, later steps read
    the earlier ones', and the last turns it into a :class:`TurnRecord`."""

    dlg: _Dlg
    history: list[Turn]  # s_t, as every expert sees it
    failures: Counter = field(default_factory=Counter)  # unparseable answers, by role
    strategy: str | None = None  # h_t: one of the 14 (Planner), a PC-CRS explanation, or None
    strategy_index: int | None = None
    strategy_prob: float | None = None
    strategy_entropy: float | None = None
    preference: str = ""  # C^1_t ("" without a reasoner or when it gave nothing)
    retrieval: Any = None  # C^2_t: the Retriever's candidates (None without retrieval)
    inquiry: bool = False  # a preference-elicitation strategy (Table I)
    abstain: bool = False  # no item this turn: the Actor asks
    chosen: str | None = None
    chooser_probs: list[float] = field(default_factory=list)
    item_name: str | None = None
    facts: list[str] = field(default_factory=list)
    offered: list[str] = field(default_factory=list)  # titles the Actor may pick from
    reply: str = ""  # a_t
    refinements: int = 0
    history_after: list[Turn] = field(default_factory=list)  # s_t + a_t
    user: Any = None  # the simulator's SimResponse
    reward: RewardResult | None = None

    @classmethod
    def start(cls, d: _Dlg, step: int) -> _Draft:
        t = cls(d, list(d.history))
        if step == 0:
            t.count_failures("simulator", d.open_failures)  # the user's opening message
        return t

    def count_failures(self, role: str, n: int) -> None:
        if n:
            self.failures[role] += n

    def set_strategy(self, name: str, index: int, prob: float, entropy: float) -> None:
        self.strategy, self.strategy_index, self.strategy_prob, self.strategy_entropy = name, index, prob, entropy

    def trace(self) -> dict:
        """What the turn's experts produced, before the user answers."""
        return {
            "strategy": self.strategy,
            "strategy_prob": self.strategy_prob,
            "preference": self.preference,
            "retrieved": list(self.retrieval.item_ids) if self.retrieval is not None else [],
            "facts": self.facts,
        }

    def to_record(self, step: int, stop_reason: str | None) -> TurnRecord:
        r, u, w = self.retrieval, self.user, self.reward
        return TurnRecord(
            turn=step,
            history_before=self.history,
            strategy=self.strategy,
            strategy_index=self.strategy_index,
            strategy_prob=self.strategy_prob,
            strategy_entropy=self.strategy_entropy,
            preference=self.preference,
            retrieved=list(r.item_ids) if r else [],
            retrieval_scores=list(r.scores) if r else [],
            ranking=list(r.ranking) if r else [],
            chosen_item=self.chosen,
            chooser_probs=self.chooser_probs,
            reply=self.reply,
            refinements=self.refinements,
            mentioned_item=u.item_id,
            user_reply=u.text,
            user_action=u.action,
            covers_target=u.covers_target,
            p_accept=u.p_accept,
            accepted=bool(u.accepted),
            reward=w.reward,
            rating=w.rating,
            stop=bool(w.stop),
            done=stop_reason is not None,
            stop_reason=stop_reason,
            parse_failures=dict(self.failures),
            facts=self.facts,
        )


class DialogueEngine:
    """Runs dialogues for one system configuration.

    Args:
        system: a :class:`rso_lib.dialogue.systems.SystemConfig` (which experts are on).
        llms: backends by role: ``actor``, ``reasoner``, ``chooser`` (others optional; missing
            ``reasoner`` / ``chooser`` fall back to ``actor``).
        retriever: a :class:`rso_lib.experts.retriever.FactRetriever` (None: no retrieval).
        planner: object with ``act(histories, greedy, generator) -> list[PlannerChoice]``
            (``rso_lib.experts.planner.Planner``); required when ``system.strategy_mode ==
            "planner"``.
        simulator: :class:`AgendaSimulator`, :class:`LLMSimulator` or any object with
            ``new_state(target)``, ``open(states, seed)``, ``respond(states, histories, candidates,
            seed)``.
        rewarder: :class:`rso_lib.experts.rewarder.Rewarder` (LLM judge),
            :class:`rso_lib.dialogue.simulators.SimulatorReward`, or None (no reward; no stop rule).
        max_turns: most system turns per dialogue (default 10, the paper's).
        seed: base seed (default 0).
        chooser_mode: :class:`ItemChooser` mode (default ``"letters"``).
        actor_sampling / reasoner_sampling: decoding settings (defaults of the experts).
        stop_on_reward: end a dialogue when Eq. 9's stop rule fires (default True; acceptance
            always ends it).
        allow_no_recommendation: the chooser may answer "none of these yet" (default True).
        inquiry_item: a preference-elicitation strategy's turn still gets the chosen item and its
            facts, which the Actor may mention (default True, the authors' ``env.py``); False:
            such turns carry no item.
    """

    def __init__(
        self,
        system,
        llms: dict[str, ChatLLM],
        retriever=None,
        planner=None,
        simulator=None,
        rewarder=None,
        max_turns: int = 10,
        seed: int = 0,
        chooser_mode: str = "letters",
        actor_sampling: Sampling | None = None,
        reasoner_sampling: Sampling | None = None,
        stop_on_reward: bool = True,
        allow_no_recommendation: bool = True,
        inquiry_item: bool = True,
    ):
        if simulator is None:
            raise ValueError("DialogueEngine: a user simulator is required")
        if system.strategy_mode == "planner" and planner is None:
            raise ValueError(f"system {system.name}: strategy_mode 'planner' needs a planner")
        if system.use_retriever and retriever is None:
            raise ValueError(f"system {system.name}: use_retriever needs a retriever")
        if "actor" not in llms:
            raise ValueError("DialogueEngine: llms must have an 'actor' backend")
        self.system, self.retriever, self.planner = system, retriever, planner
        self.simulator, self.rewarder = simulator, rewarder
        self.max_turns, self.seed, self.stop_on_reward = max_turns, seed, stop_on_reward
        self.inquiry_item = inquiry_item
        self.stats = EngineStats()
        self._step_idx = 0
        self.current_trace: list[dict] = []
        t = lambda role, key=None: _TimedLLM(llms.get(key or role, llms["actor"]), role, self)  # noqa: E731
        self.llms = {r: t(r) for r in llms}
        self.reasoner = PreferenceReasoner(
            t("reasoner"), **({"sampling": reasoner_sampling} if reasoner_sampling else {})
        )
        self.chooser = ItemChooser(t("chooser"), mode=chooser_mode, allow_none=allow_no_recommendation)
        self.actor = Actor(t("actor"), **({"sampling": actor_sampling} if actor_sampling else {}))
        self._explainer, self._checker = t("explainer", "actor"), t("self_check", "actor")
        # the simulator's and judge's own backends are timed and logged too
        for obj, attr, role in (
            (simulator, "llm", "simulator"),
            (simulator, "paraphrase_llm", "simulator"),
            (rewarder, "llm", "rewarder"),
        ):
            if obj is not None and getattr(obj, attr, None) is not None:
                setattr(obj, attr, _TimedLLM(getattr(obj, attr), role, self))

    # -- bookkeeping --------------------------------------------------------------------------
    def _model(self, role: str, method: str, fn: Callable, *args, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            dt = time.perf_counter() - t0
            self.stats.model_s += dt
            self.stats.model_s_by_role[role] += dt
            self.stats.calls[(self._step_idx, role, method)] += 1

    def _seed(self, step: int, role: str) -> int:
        return (self.seed * 1_000_003 + step * 1009 + _ROLE_SEED.get(role, 0)) % (2**31 - 1)

    def reset_stats(self) -> None:
        self.stats = EngineStats()

    # -- public -------------------------------------------------------------------------------
    def run(
        self,
        targets: Sequence[SimTarget],
        transcript_path: str | Path | None = None,
        sample_strategy: bool = True,
        on_turn: Callable[[SimTarget, TurnRecord], None] | None = None,
    ) -> list[Episode]:
        """Simulate one dialogue per target, all in lockstep; returns Episodes in target order.

        Args:
            targets: simulated users (unique ``dialog_id``).
            transcript_path: JSONL transcript to append to; dialogues already finished there (by
                this system) are not rerun but read back. None: no transcript.
            sample_strategy: sample the Planner's strategy (RL, default) or take the argmax.
            on_turn: called after every turn (interactive chat, progress displays).
        """
        ids = [t.dialog_id for t in targets]
        if len(set(ids)) != len(ids):
            raise ValueError("DialogueEngine.run: duplicate dialog_id in targets")
        path = Path(transcript_path) if transcript_path else None
        finished: dict[str, Episode] = {}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            finished = finished_episodes(path, self.system.name, targets)
        todo = [t for t in targets if t.dialog_id not in finished]
        self._clear_prefix_caches()  # a run's numbers depend on its own calls only
        try:
            new = {e.dialog_id: e for e in self._run_lockstep(todo, path, sample_strategy, on_turn)} if todo else {}
        finally:
            self._clear_prefix_caches()  # the dialogues have ended: their stored prompts go
        return [finished.get(i) or new[i] for i in ids]

    def _clear_prefix_caches(self) -> None:
        """Empty the prompt-prefix stores of every backend this engine calls (through wrappers)."""
        clear_prefix_caches(*self.llms.values(), *(getattr(o, "llm", None) for o in (self.simulator, self.rewarder)))

    # -- the loop -----------------------------------------------------------------------------
    def _run_lockstep(self, targets, path, sample_strategy, on_turn) -> list[Episode]:
        gen = None
        if self.system.strategy_mode == "planner":
            import torch

            gen = torch.Generator().manual_seed(self.seed)
        t_start = time.perf_counter()
        self._step_idx = -1  # the users' opening messages are logged as step -1
        rng = np.random.default_rng(self.seed)
        dl = [_Dlg(t, self.simulator.new_state(t)) for t in targets]
        opens = self.simulator.open([d.sim for d in dl], seed=self._seed(0, "open"))
        for d, o in zip(dl, opens):
            d.user_open, d.open_failures = o.text, o.parse_failures
            d.history = [Turn(SEEKER, o.text)]
        step = 0
        while True:
            active = [d for d in dl if not d.done]
            if not active:
                break
            self._step_idx = step
            recs = self._step(active, step, sample_strategy, gen, rng)
            if path is not None:
                append_rows(
                    path, [record_to_row(self.system.name, d.target, r, d.user_open) for d, r in zip(active, recs)]
                )
            if on_turn is not None:
                for d, r in zip(active, recs):
                    on_turn(d.target, r)
            step += 1
        self.stats.wall_s += time.perf_counter() - t_start
        self.stats.dialogues += len(dl)
        eps = []
        for d in dl:
            pf: Counter = Counter()
            for r in d.turns:
                pf.update(r.parse_failures)
            acc = [r for r in d.turns if r.accepted]
            eps.append(
                Episode(
                    d.target.dialog_id,
                    d.target,
                    self.system.name,
                    d.user_open,
                    d.turns,
                    bool(acc),
                    acc[0].mentioned_item if acc else None,
                    d.turns[-1].stop_reason,
                    dict(pf),
                )
            )
        return eps

    def _step(self, active: list[_Dlg], step: int, sample_strategy: bool, gen, rng) -> list[TurnRecord]:
        """One turn of Alg. 1 for every active dialogue. Each step below asks its expert ONCE for
        all the dialogues (one batched call) and writes its answers into their drafts."""
        turn = [_Draft.start(d, step) for d in active]
        self._plan(turn, sample_strategy, gen, rng)  # (1) macro strategy h_t (Planner, Eq. 2)
        self._infer_preference(turn, step)  # (2) C^1_t = Pref_Reasoner(s_t) (Eq. 3)
        self._retrieve(turn)  # C^2_t = Retriever(s_t, C^1_t; G) (Eq. 4)
        self._choose(turn, step)  # which retrieved movie, if any, this turn offers
        self._explain(turn)  # PC-CRS only: its explanation strategy, after the item
        self._act(turn, step)  # a_t = Actor(h_t; C^1_t, C^2_t) (Eq. 5)
        self.current_trace = [t.trace() for t in turn]  # before the user answers (interactive chat)
        self._simulate(turn, step)  # (3) the user's reply: s_{t+1}
        self._reward(turn, step)  # r_t = Rewarder(s_{t+1}) (Eq. 9)
        recs = [self._record(t, step) for t in turn]
        self.stats.turns += len(turn)
        return recs

    def _items(self) -> dict:
        return self.retriever.items if self.retriever is not None else {}

    def _plan(self, turn: list[_Draft], sample_strategy: bool, gen, rng) -> None:
        """Eq. 2: the Planner's strategy (sampled for RL, else argmax); ``random``: uniform over
        the 14 (a control, not a paper row); other modes leave the strategy empty here."""
        if self.system.strategy_mode == "planner":
            histories = [t.history for t in turn]
            picks = self._model(
                "planner", "act", self.planner.act, histories, greedy=not sample_strategy, generator=gen
            )
            for t, c in zip(turn, picks):
                t.set_strategy(c.strategy, int(c.index), float(c.prob), float(c.entropy))
        elif self.system.strategy_mode == "random":
            for t, j in zip(turn, rng.integers(0, NUM_STRATEGIES, size=len(turn))):
                t.set_strategy(STRATEGIES[j], int(j), 1 / NUM_STRATEGIES, math.log(NUM_STRATEGIES))

    def _infer_preference(self, turn: list[_Draft], step: int) -> None:
        """Eq. 3: the Preference Reasoner updates each dialogue's running preference summary (an
        empty answer keeps the previous one for later turns; this turn's experts get it empty)."""
        if not self.system.use_reasoner:
            return
        prefs, fails = self.reasoner.infer(
            [t.history for t in turn], [t.dlg.preference for t in turn], seed=self._seed(step, "reasoner")
        )
        for t, p, f in zip(turn, prefs, fails):
            t.count_failures("reasoner", f)
            t.preference = p
            t.dlg.preference = p or t.dlg.preference

    def _retrieve(self, turn: list[_Draft]) -> None:
        """Eq. 4: candidates from the knowledge base (one embed batch + one search), never a movie
        the user has turned down."""
        if self.system.use_retriever:
            found = self._model(
                "retriever",
                "retrieve",
                self.retriever.retrieve,
                [t.history for t in turn],
                [t.preference for t in turn],
                [t.dlg.rejected for t in turn],
            )
            for t, r in zip(turn, found):
                t.retrieval = r

    def _choose(self, turn: list[_Draft], step: int) -> None:
        """The chooser picks the candidate to recommend; it may answer "none of these yet"
        (allow_no_recommendation). A preference-elicitation strategy (Table I) asks rather than
        recommends: with inquiry_item (the authors' env.py) the Actor still gets the chosen item
        and its facts and may mention it; without, those turns skip the chooser."""
        for t in turn:
            t.inquiry = t.strategy in INQUIRY_STRATEGIES
            t.abstain = t.inquiry and not self.inquiry_item
        if self.system.use_retriever and self.system.use_chooser:
            rows = [t for t in turn if not t.abstain]
            picks = self.chooser.choose(
                [t.history for t in rows],
                [t.preference for t in rows],
                [[self.retriever.items[j] for j in t.retrieval.item_ids] for t in rows],
                seed=self._seed(step, "chooser"),
            )
            for t, c in zip(rows, picks):
                t.chosen, t.chooser_probs, t.abstain = c.item_id, c.probs, c.abstained
                t.count_failures("chooser", c.parse_failure)
        items = self._items()
        for t in turn:
            t.item_name = items[t.chosen].name if t.chosen else None

    def _explain(self, turn: list[_Draft]) -> None:
        """PC-CRS: the explanation strategy for the chosen item, by the system's own LLM."""
        if self.system.strategy_mode != "explanation":
            return
        names, probs = choose_explanation_strategy(
            self._explainer, [t.history for t in turn], [t.item_name for t in turn]
        )
        for t, s, row in zip(turn, names, probs):
            t.strategy, t.strategy_prob = s, float(row.max())
            t.strategy_entropy = float(-(row * np.log(np.clip(row, 1e-12, 1))).sum())

    def _act(self, turn: list[_Draft], step: int) -> None:
        """Eq. 5: the Actor's reply. It gets the chosen item's knowledge-base facts only when the
        system grounds its replies (use_facts); without a chooser, the candidate titles (InterCRS,
        w/o Fact Retriever keeps titles); without retrieval, the LLM's own knowledge. PC-CRS then
        checks each reply against the facts and rewrites the unsupported ones."""
        items = self._items()
        for t in turn:
            t.facts = [items[t.chosen].facts()] if t.chosen and self.system.use_facts else []
            t.offered = self._offered(t, items)
        replies, empty = self.actor.reply(
            [t.history for t in turn],
            [_describe(t.strategy) for t in turn],
            [t.preference for t in turn],
            [t.facts for t in turn],
            [t.item_name for t in turn],
            [t.offered for t in turn],
            seed=self._seed(step, "actor"),
            modes=[_actor_mode(t.abstain, t.inquiry, t.chosen, t.offered, self.system.use_retriever) for t in turn],
        )
        for t, r, e in zip(turn, replies, empty):
            t.reply = r
            t.count_failures("actor", e)
        if self.system.self_check_rounds > 0:
            replies, refined = self_check_and_refine(
                self._checker,
                [t.history for t in turn],
                replies,
                [t.facts for t in turn],
                [t.item_name for t in turn],
                rounds=self.system.self_check_rounds,
                sampling=self.actor.sampling,
                seed=self._seed(step, "refine"),
            )
            for t, r, k in zip(turn, replies, refined):
                t.reply, t.refinements = r, int(k)

    @staticmethod
    def _offered(t: _Draft, items: dict) -> list[str]:
        """The titles the Actor may choose from: an inquiry turn's chosen item is offered, not
        imposed (the strategy decides); with no item chosen (no chooser, or its answer named no
        candidate) and no abstention, every retrieved title."""
        if t.inquiry and t.chosen:
            return [t.item_name]
        if t.retrieval is not None and t.chosen is None and not t.abstain:
            return [items[j].name for j in t.retrieval.item_ids]
        return []

    def _simulate(self, turn: list[_Draft], step: int) -> None:
        """The simulated user answers; it prefers the chosen item, then the other candidates."""
        for t in turn:
            strategy = t.strategy if t.strategy in DESCRIPTIONS else None  # Turn.strategy: the 14 only
            t.history_after = t.history + [Turn(RECOMMENDER, t.reply, strategy)]
        prefer = [
            ([t.chosen] if t.chosen else []) + (list(t.retrieval.item_ids) if t.retrieval is not None else [])
            for t in turn
        ]
        answers = self.simulator.respond(
            [t.dlg.sim for t in turn], [t.history_after for t in turn], prefer, seed=self._seed(step, "simulator")
        )
        for t, u in zip(turn, answers):
            t.user = u
            t.count_failures("simulator", u.parse_failures)

    def _reward(self, turn: list[_Draft], step: int) -> None:
        """Eq. 9 on the state s_{t+1} (through the user's answer). A state in which no movie has
        been named yet never passes tau (rso_lib.experts.rewarder.should_stop)."""
        named = [t.user.item_id is not None or any(r.mentioned_item for r in t.dlg.turns) for t in turn]
        if self.rewarder is None:
            rewards = [RewardResult(None, None, False)] * len(turn)
        elif getattr(self.rewarder, "uses_simulator", False):
            rewards = self.rewarder.score_from_sim([t.user for t in turn], named)
        else:
            states = [t.history_after + [Turn(SEEKER, t.user.text)] for t in turn]
            rewards = self.rewarder.score(states, recommended=named, seed=self._seed(step, "rewarder"))
        for t, w in zip(turn, rewards):
            t.reward = w
            t.count_failures("rewarder", w.parse_failures)
            t.count_failures("rewarder_fallback", int(getattr(w, "fallback", False)))  # every sample unparseable

    def _stop_reason(self, t: _Draft, step: int) -> str | None:
        """Why the dialogue ends after this turn (None: it goes on)."""
        if t.user.accepted:
            return "accepted"
        if t.user.end:
            return "user_quit"
        if t.reward.stop and self.stop_on_reward:
            return "reward"
        if step + 1 >= self.max_turns:
            return "max_turns"
        return None

    def _record(self, t: _Draft, step: int) -> TurnRecord:
        """The turn's record; the dialogue's state moves on to s_{t+1}."""
        reason = self._stop_reason(t, step)
        rec = t.to_record(step, reason)
        d = t.dlg
        if t.user.action == "reject" and t.user.item_id:
            d.rejected.add(t.user.item_id)
        d.turns.append(rec)
        d.history = t.history_after + [Turn(SEEKER, t.user.text)]
        d.done = rec.done
        return rec


def _describe(strategy: str | None) -> str | None:
    """The Actor's description of a strategy: one of the 14 (Table I) or a PC-CRS explanation."""
    if strategy in DESCRIPTIONS:
        return DESCRIPTIONS[strategy]
    return EXPLANATION_STRATEGIES.get(strategy) if strategy else None


__all__ = ["DialogueEngine", "EngineStats", "EXPLANATION_NAMES"]
