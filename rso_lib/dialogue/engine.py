"""The lockstep dialogue engine (paper Alg. 1, one turn = :meth:`DialogueEngine._step`).

N dialogues advance together. At each step the engine gathers every active dialogue's request for
one role and sends it to that role's backend as ONE batched call, in this order::

    planner -> reasoner -> retriever (one embed batch + one faiss search) -> chooser -> actor
    [-> PC-CRS self-check / refine] -> simulator -> rewarder

then drops the finished dialogues (user accepted, Eq. 9 stop rule, or ``max_turns``). Each turn is
appended to a JSONL transcript (:mod:`rso_lib.dialogue.transcript`); a rerun on the same
transcript skips the dialogues already finished there (a partly written dialogue is dropped and
run again from its start).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from rso_lib.data.records import RECOMMENDER, SEEKER, SimTarget, Turn
from rso_lib.dialogue.transcript import (
    Episode,
    TurnRecord,
    append_rows,
    episode_from_rows,
    read_rows_for_resume,
    record_to_row,
    rewrite_rows,
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

    def __init__(self, inner: ChatLLM, role: str, engine: "DialogueEngine"):
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
        by_id = {t.dialog_id: t for t in targets}
        finished: dict[str, Episode] = {}
        path = Path(transcript_path) if transcript_path else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                rows = read_rows_for_resume(path)  # an invalid transcript is moved aside, never used
                other = {r["system"] for r in rows} - {self.system.name}
                if other:
                    raise ValueError(
                        f"{path}: transcript holds system(s) {sorted(other)}, not {self.system.name}; "
                        "use one transcript per system"
                    )
                groups: dict[str, list[dict]] = {}
                for r in rows:
                    groups.setdefault(r["dialog_id"], []).append(r)
                keep = {d: rs for d, rs in groups.items() if rs[-1]["done"]}
                if sum(map(len, keep.values())) != len(rows):  # drop partly written dialogues
                    rewrite_rows(path, [r for rs in keep.values() for r in rs])
                finished = {d: episode_from_rows(rs, by_id[d]) for d, rs in keep.items() if d in by_id}
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
        """One turn (Alg. 1) for every active dialogue, one batched call per role."""
        sys_ = self.system
        n = len(active)
        H = [list(d.history) for d in active]
        pf = [Counter() for _ in range(n)]
        if step == 0:
            for c, d in zip(pf, active):
                if d.open_failures:
                    c["simulator"] += d.open_failures

        # 1. Planner (Eq. 2): strategy per dialogue
        strat: list[str | None] = [None] * n
        sidx: list[int | None] = [None] * n
        sprob: list[float | None] = [None] * n
        sent: list[float | None] = [None] * n
        if sys_.strategy_mode == "planner":
            ch = self._model("planner", "act", self.planner.act, H, greedy=not sample_strategy, generator=gen)
            for i, c in enumerate(ch):
                strat[i], sidx[i], sprob[i], sent[i] = c.strategy, int(c.index), float(c.prob), float(c.entropy)
        elif sys_.strategy_mode == "random":  # uniform over the 14 (a control, not a paper row)
            for i, j in enumerate(rng.integers(0, NUM_STRATEGIES, size=n)):
                strat[i], sidx[i], sprob[i], sent[i] = (
                    STRATEGIES[j],
                    int(j),
                    1 / NUM_STRATEGIES,
                    math.log(NUM_STRATEGIES),
                )

        # 2. Preference Reasoner (Eq. 3)
        if sys_.use_reasoner:
            prefs, fails = self.reasoner.infer(H, [d.preference for d in active], seed=self._seed(step, "reasoner"))
            for c, f in zip(pf, fails):
                if f:
                    c["reasoner"] += f
            for d, p in zip(active, prefs):
                d.preference = p or d.preference
        else:
            prefs = [""] * n

        # 3. Fact Retriever (Eq. 4)
        rets = (
            self._model("retriever", "retrieve", self.retriever.retrieve, H, prefs, [d.rejected for d in active])
            if sys_.use_retriever
            else [None] * n
        )

        # 4. Chooser: which candidate to recommend, if any; it may answer "none of these yet"
        #    (allow_no_recommendation). A preference-elicitation strategy (Table I) asks rather
        #    than recommends: with inquiry_item (the authors' env.py) the Actor still gets the
        #    chosen item and its facts and may mention it; without, those turns skip the chooser.
        chosen: list[str | None] = [None] * n
        cprobs: list[list[float]] = [[] for _ in range(n)]
        inquiry = [s in INQUIRY_STRATEGIES for s in strat]
        abstain = [q and not self.inquiry_item for q in inquiry]
        if sys_.use_retriever and sys_.use_chooser:
            rows = [i for i in range(n) if not abstain[i]]
            cands = [[self.retriever.items[j] for j in rets[i].item_ids] for i in rows]
            picks = self.chooser.choose(
                [H[i] for i in rows], [prefs[i] for i in rows], cands, seed=self._seed(step, "chooser")
            )
            for i, c in zip(rows, picks):
                chosen[i], cprobs[i] = c.item_id, c.probs
                abstain[i] = c.abstained
                if c.parse_failure:
                    pf[i]["chooser"] += c.parse_failure
        items = self.retriever.items if self.retriever is not None else {}
        names = [items[c].name if c else None for c in chosen]

        # 4b. PC-CRS: explanation strategy chosen by the system's own LLM
        if sys_.strategy_mode == "explanation":
            en, eprobs = choose_explanation_strategy(self._explainer, H, names)
            for i, (s, row) in enumerate(zip(en, eprobs)):
                strat[i], sprob[i] = s, float(row.max())
                sent[i] = float(-(row * np.log(np.clip(row, 1e-12, 1))).sum())

        # 5. Actor (Eq. 5): the chosen item's knowledge-base facts only when the system grounds
        #    its replies (use_facts); without a chooser, the candidate titles (InterCRS,
        #    w/o Fact Retriever keeps titles); without retrieval, the LLM's own knowledge.
        facts = [[items[c].facts()] if c and sys_.use_facts else [] for c in chosen]
        cand_names = [
            [items[j].name for j in r.item_ids] if (r is not None and c is None and not a) else []
            for r, c, a in zip(rets, chosen, abstain)
        ]
        # an inquiry turn with an item: the item is offered, not imposed (the strategy decides)
        for i in range(n):
            if inquiry[i] and chosen[i]:
                cand_names[i] = [names[i]]
        mode = [
            _actor_mode(a, q, c, cn, sys_.use_retriever) for a, q, c, cn in zip(abstain, inquiry, chosen, cand_names)
        ]
        desc = [
            DESCRIPTIONS.get(s) if s in DESCRIPTIONS else EXPLANATION_STRATEGIES.get(s) if s else None for s in strat
        ]
        replies, empty = self.actor.reply(
            H, desc, prefs, facts, names, cand_names, seed=self._seed(step, "actor"), modes=mode
        )
        for c, e in zip(pf, empty):
            if e:
                c["actor"] += e
        refined = [0] * n
        if sys_.self_check_rounds > 0:
            replies, refined = self_check_and_refine(
                self._checker,
                H,
                replies,
                facts,
                names,
                rounds=sys_.self_check_rounds,
                sampling=self.actor.sampling,
                seed=self._seed(step, "refine"),
            )

        # what the turn's experts produced, before the user answers (interactive chat shows it)
        self.current_trace = [
            {
                "strategy": strat[i],
                "strategy_prob": sprob[i],
                "preference": prefs[i],
                "retrieved": list(rets[i].item_ids) if rets[i] is not None else [],
                "facts": facts[i],
            }
            for i in range(n)
        ]

        # 6. Simulated user
        turn_strat = [s if s in DESCRIPTIONS else None for s in strat]  # Turn.strategy: the 14 only
        H_after = [h + [Turn(RECOMMENDER, r, s)] for h, r, s in zip(H, replies, turn_strat)]
        prefer = [([c] if c else []) + (list(r.item_ids) if r is not None else []) for c, r in zip(chosen, rets)]
        resp = self.simulator.respond([d.sim for d in active], H_after, prefer, seed=self._seed(step, "simulator"))
        for c, r in zip(pf, resp):
            if r.parse_failures:
                c["simulator"] += r.parse_failures

        # 7. Rewarder (Eq. 9) on the state s_{t+1} (through the user's answer). A state in which
        #    no movie has been named yet never passes tau (rso_lib.experts.rewarder.should_stop).
        named = [r.item_id is not None or any(t.mentioned_item for t in d.turns) for d, r in zip(active, resp)]
        if self.rewarder is None:
            rr = [RewardResult(None, None, False)] * n
        elif getattr(self.rewarder, "uses_simulator", False):
            rr = self.rewarder.score_from_sim(resp, named)
        else:
            states = [h + [Turn(SEEKER, r.text)] for h, r in zip(H_after, resp)]
            rr = self.rewarder.score(states, recommended=named, seed=self._seed(step, "rewarder"))
        for c, r in zip(pf, rr):
            if r.parse_failures:
                c["rewarder"] += r.parse_failures
            if getattr(r, "fallback", False):
                c["rewarder_fallback"] += 1  # every sample unparseable: rated by a scoring pass

        recs = []
        for i, d in enumerate(active):
            r, u, w = rets[i], resp[i], rr[i]
            stop = bool(w.stop)
            if u.accepted:
                reason = "accepted"
            elif u.end:
                reason = "user_quit"
            elif stop and self.stop_on_reward:
                reason = "reward"
            elif step + 1 >= self.max_turns:
                reason = "max_turns"
            else:
                reason = None
            rec = TurnRecord(
                turn=step,
                history_before=H[i],
                strategy=strat[i],
                strategy_index=sidx[i],
                strategy_prob=sprob[i],
                strategy_entropy=sent[i],
                preference=prefs[i],
                retrieved=list(r.item_ids) if r else [],
                retrieval_scores=list(r.scores) if r else [],
                ranking=list(r.ranking) if r else [],
                chosen_item=chosen[i],
                chooser_probs=cprobs[i],
                reply=replies[i],
                refinements=int(refined[i]),
                mentioned_item=u.item_id,
                user_reply=u.text,
                user_action=u.action,
                covers_target=u.covers_target,
                p_accept=u.p_accept,
                accepted=bool(u.accepted),
                reward=w.reward,
                rating=w.rating,
                stop=stop,
                done=reason is not None,
                stop_reason=reason,
                parse_failures=dict(pf[i]),
                facts=facts[i],
            )
            if u.action == "reject" and u.item_id:
                d.rejected.add(u.item_id)
            d.turns.append(rec)
            d.history = H_after[i] + [Turn(SEEKER, u.text)]
            d.done = rec.done
            recs.append(rec)
        self.stats.turns += n
        return recs


__all__ = ["DialogueEngine", "EngineStats", "EXPLANATION_NAMES"]
