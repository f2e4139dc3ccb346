"""Simulated users: the same persona + target genres (:class:`SimTarget`), two simulators.

* :class:`AgendaSimulator` (Zhang & Balog, KDD 2020, the paper's ref. [20]): a deterministic state
  machine for **smoke runs and unit tests** (not the paper's user). It opens by asking for a movie
  of its first target genre, answers the recommender's questions by disclosing its other target
  genres, asks for details about a recommended movie, and **accepts iff the recommended movie's
  genres in the knowledge base cover its targets** (after one detail question by default, as the
  agenda's "inquire, then accept" step). Its words come from templates, optionally reworded by an
  LLM (``paraphrase_llm``); the decision never depends on the LLM.
* :class:`LLMSimulator` (the RSO / PC-CRS protocol, the cpu and paper profiles): an LLM role-plays
  the persona and target genres, opens with "Hello.", never sees a knowledge-base fact (the
  recommender is its only source of information), asks about a newly recommended movie before
  deciding, then decides ask / accept / reject from its own target and what it was told. With
  small models free-form accept/reject is noise, so the *decision* is taken by option scoring and
  then verbalised by the LLM; ``require_kb_cover=True`` adds a knowledge-base genre gate to
  acceptance (off in the paper profile).

Both detect which movie the system's reply recommends with :class:`TitleMatcher` (the chosen and
retrieved candidates first, then any catalogue title), so an Actor that never names its movie has
not recommended anything.

:class:`SimulatorReward` turns the simulated user's action into the turn reward on the
Rewarder's acceptance scale (``REWARD: simulator``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from rso_lib.data.records import Item, SimTarget, Turn
from rso_lib.experts.prompts import (
    USER_DECISIONS,
    paraphrase_prompt,
    simulator_decision_prompt,
    simulator_open_prompt,
    simulator_reply_prompt,
)
from rso_lib.experts.reasoner import clean_reply
from rso_lib.experts.rewarder import RewardResult, acceptance_values, should_stop
from rso_lib.llm.protocol import ChatLLM, Sampling


def _norm_tokens(s: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).split()


def _pick(options: Sequence[str], *key) -> str:
    """A deterministic, seed-free choice among template variants (stable across Python runs,
    unlike ``hash``)."""
    h = int(hashlib.md5("|".join(map(str, key)).encode()).hexdigest()[:8], 16)
    return options[h % len(options)]


def covers(item: Item, genres: Sequence[str]) -> bool:
    """An item is a valid target iff its genres include every target genre (PC-CRS, RSO); an
    empty target is covered by nothing (it would make every movie a hit)."""
    have = {g.lower() for g in item.genres}
    return bool(genres) and all(g.lower() in have for g in genres)


class TitleMatcher:
    """Find the movie a reply names. Titles are compared on lower-case alphanumeric tokens; the
    preferred ids (chosen item, retrieved candidates) are checked first, then the whole catalogue,
    where one-word titles shorter than 5 letters ("It", "Up", "Her") are ignored to avoid
    false hits on ordinary words. The longest match wins; a year in the text breaks ties."""

    def __init__(self, items: Iterable[Item], max_len: int = 12):
        self.items: dict[str, Item] = {it.item_id: it for it in items}
        self.max_len = max_len
        self._by_title: dict[tuple[str, ...], list[str]] = {}
        for iid in sorted(self.items):
            toks = tuple(_norm_tokens(self.items[iid].title))
            if not toks or len(toks) > max_len or (len(toks) == 1 and len(toks[0]) < 5):
                continue
            self._by_title.setdefault(toks, []).append(iid)

    def find(self, text: str, prefer: Sequence[str] = ()) -> str | None:
        toks = _norm_tokens(text)
        joined = " " + " ".join(toks) + " "
        hits = []  # candidates first: any title length allowed, order = preference order
        for iid in prefer:
            it = self.items.get(iid)
            t = " ".join(_norm_tokens(it.title)) if it else ""
            if t and f" {t} " in joined:
                hits.append((len(t), iid))
        if hits:
            longest = max(n for n, _ in hits)
            return self._year_pick(list(dict.fromkeys(i for n, i in hits if n == longest)), text)
        found: list[tuple[int, str]] = []
        for n in range(min(self.max_len, len(toks)), 0, -1):
            for i in range(len(toks) - n + 1):
                ids = self._by_title.get(tuple(toks[i : i + n]))
                if ids:
                    found.append((n, self._year_pick(ids, text)))
            if found:
                return found[0][1]
        return None

    def _year_pick(self, ids: list[str], text: str) -> str:
        for iid in ids:
            y = self.items[iid].year
            if y and str(y) in text:
                return iid
        return ids[0]


@dataclass
class SimState:
    """Per-dialogue simulator state (the agenda's memory)."""

    target: SimTarget
    disclosed: list[str] = field(default_factory=list)  # target genres said so far
    inquired: set[str] = field(default_factory=set)  # items asked about
    rejected: set[str] = field(default_factory=set)
    pending: str | None = None  # LLM user: the movie it asked about and has not decided on yet


@dataclass
class SimResponse:
    """The simulated user's answer to one system reply."""

    text: str
    action: str  # open | inquire | accept | reject | disclose | request | chat | quit
    item_id: str | None = None  # the movie the reply recommended (None: none named)
    accepted: bool = False
    end: bool = False  # the user ends the dialogue (accepted or quit)
    p_accept: float | None = None  # LLM simulator: option-scored acceptance probability
    covers_target: bool | None = None  # the named movie's KB genres cover the targets
    parse_failures: int = 0


def _genre_phrase(genres: Sequence[str]) -> str:
    g = list(genres)
    if not g:
        return "good"
    return g[0] if len(g) == 1 else ", ".join(g[:-1]) + " and " + g[-1]


class AgendaSimulator:
    """Deterministic agenda-based user (see module docstring).

    Args:
        items: the knowledge base (``KnowledgeBase`` or iterable of Items) whose genres decide.
        inquire_before_accept: ask one detail question about a fitting movie before accepting it
            (default True, the agenda's inquire step).
        paraphrase_llm: optional LLM that rewords the template utterances (one batched call per
            step); an empty rewording keeps the template and counts a parse failure.
    """

    name = "agenda"

    def __init__(
        self,
        items: Iterable[Item],
        inquire_before_accept: bool = True,
        paraphrase_llm: ChatLLM | None = None,
        paraphrase_sampling: Sampling = Sampling(temperature=0.0, max_tokens=48),
    ):
        self.matcher = TitleMatcher(items)
        self.items = self.matcher.items
        self.inquire_before_accept = inquire_before_accept
        self.paraphrase_llm, self.paraphrase_sampling = paraphrase_llm, paraphrase_sampling

    def new_state(self, target: SimTarget) -> SimState:
        return SimState(target)

    def open(self, states: Sequence[SimState], seed: int | None = None) -> list[SimResponse]:
        out = []
        for st in states:
            g = st.target.target_genres
            if g:
                st.disclosed.append(g[0])
                text = _pick(
                    [
                        "Hi! Can you recommend a good {g} movie?",
                        "Hello, I'm in the mood for a {g} movie.",
                        "Hey, I want to watch a {g} film tonight. Any ideas?",
                    ],
                    st.target.dialog_id,
                ).format(g=g[0])
            else:
                text = "Hi! Can you recommend a movie for tonight?"
            out.append(SimResponse(text, "open"))
        return self._paraphrase(out, seed)

    def respond(
        self,
        states: Sequence[SimState],
        histories: Sequence[Sequence[Turn]],
        candidates: Sequence[Sequence[str]],
        seed: int | None = None,
    ) -> list[SimResponse]:
        """``histories[i]`` ends with the system's reply; ``candidates[i]`` = chosen item id first,
        then the retrieved ids (preferred when matching titles)."""
        out = [self._respond_one(st, h, c) for st, h, c in zip(states, histories, candidates)]
        return self._paraphrase(out, seed)

    def _respond_one(self, st: SimState, history: Sequence[Turn], cands: Sequence[str]) -> SimResponse:
        reply = history[-1].text if history else ""
        key = (st.target.dialog_id, len(history))
        targets = st.target.target_genres
        iid = self.matcher.find(reply, cands)
        if iid is not None:
            item = self.items[iid]
            ok = covers(item, targets)
            if ok and (iid in st.inquired or not self.inquire_before_accept):
                return SimResponse(
                    _pick(
                        [
                            "That sounds great, I'll watch {t}!",
                            "Perfect, {t} it is. Thanks!",
                            "I like it! I'll go with {t}.",
                        ],
                        *key,
                    ).format(t=item.title),
                    "accept",
                    iid,
                    accepted=True,
                    end=True,
                    covers_target=True,
                )
            if ok:
                st.inquired.add(iid)
                return SimResponse(
                    _pick(
                        [
                            "{t} sounds interesting. What is it about?",
                            "Who is in {t}?",
                            "Tell me more about {t}, please.",
                        ],
                        *key,
                    ).format(t=item.title),
                    "inquire",
                    iid,
                    covers_target=True,
                )
            st.rejected.add(iid)
            st.disclosed = list(targets)  # a rejection states everything the user wants
            return SimResponse(
                _pick(
                    [
                        "I don't think {t} is for me. I'd like something {g}.",
                        "Hmm, {t} isn't what I'm after. I want a {g} movie.",
                    ],
                    *key,
                ).format(t=item.title, g=_genre_phrase(targets)),
                "reject",
                iid,
                covers_target=False,
            )
        if "?" in reply:
            todo = [g for g in targets if g not in st.disclosed]
            if todo:
                st.disclosed.extend(todo[:2])  # disclose at most two more genres per answer
                return SimResponse(
                    _pick(
                        ["I really like {g} movies.", "I'd enjoy something {g}.", "Mostly {g}, I think."], *key
                    ).format(g=_genre_phrase(todo[:2])),
                    "disclose",
                )
            return SimResponse(
                _pick(
                    [
                        "As I said, something {g}. Do you have a title in mind?",
                        "Anything {g} would do. What do you suggest?",
                    ],
                    *key,
                ).format(g=_genre_phrase(targets)),
                "request",
            )
        return SimResponse(
            _pick(["Could you suggest a specific {g} movie?", "Do you have a {g} movie to recommend?"], *key).format(
                g=_genre_phrase(st.disclosed or targets)
            ),
            "request",
        )

    def _paraphrase(self, out: list[SimResponse], seed: int | None) -> list[SimResponse]:
        if self.paraphrase_llm is None or not out:
            return out
        s = (
            self.paraphrase_sampling
            if seed is None or self.paraphrase_sampling.temperature == 0
            else replace(self.paraphrase_sampling, seed=seed)
        )
        new = self.paraphrase_llm.chat([paraphrase_prompt(r.text) for r in out], s)
        for r, n in zip(out, new):
            text = clean_reply(n[0])
            if text:
                r.text = text
            else:
                r.parse_failures += 1
        return out


_OWN_LABEL = re.compile(r"^\s*(?:you|seeker|user)\s*:\s*", re.IGNORECASE)
_OTHER_LABEL = re.compile(r"\b(?:recommender|assistant)\s*:", re.IGNORECASE)


def user_text(raw: str) -> str:
    """The simulated user's own words in a generation: its own speaker label dropped, and cut
    where it starts writing the recommender's part (the authors' ``env.py`` cuts at
    "Recommender:" too). "" when nothing of its own is left (a parse failure for the caller)."""
    t = _OWN_LABEL.sub("", clean_reply(raw))
    m = _OTHER_LABEL.search(t)
    return (t[: m.start()] if m else t).strip()


class LLMSimulator:
    """LLM role-play user (RSO / PC-CRS protocol; see the module docstring).

    What it follows, from the authors' ``seeker_simulator.py`` / ``env.py`` and PC-CRS's seeker:

    * it opens with ``opening`` ("Hello.", as both do; "" lets the LLM write its opening);
    * it sees its persona, its target genres and the conversation, never a knowledge-base fact:
      the recommender is its only source of information about a movie;
    * on a newly named movie it asks about it first (``ask_first``: "ask for detailed information
      about each recommended movie"); after that, each turn it decides by option scoring over
      ``ask`` / ``accept`` / ``reject`` on the movie under discussion (the one the reply names,
      else the one it asked about), from its own persona and genres and what it was told;
    * ``require_kb_cover`` (a grounding gate for small models, off in the paper profile): an
      ``accept`` of a movie whose KB genres do not cover the targets becomes ``reject``;
    * accepting ends the dialogue (PC-CRS's seeker ends it with "[END]"); otherwise the dialogue
      ends on the Rewarder's stop rule or at ``max_turns`` (the engine), as in the authors' code.

    Args:
        llm: the ``simulator`` role's backend.
        items: the knowledge base (title matching and the optional coverage gate only).
        require_kb_cover: see above (default True).
        sampling: decoding for the verbalisation (temperature 0.7, 48 tokens, seeded per step).
        opening: the first user message ("" -> written by the LLM).
        ask_first: ask about a newly named movie before deciding (default True).
    """

    name = "llm"

    def __init__(
        self,
        llm: ChatLLM,
        items: Iterable[Item],
        require_kb_cover: bool = True,
        sampling: Sampling = Sampling(temperature=0.7, top_p=0.9, max_tokens=48),
        opening: str = "Hello.",
        ask_first: bool = True,
    ):
        self.llm = llm
        self.matcher = TitleMatcher(items)
        self.items = self.matcher.items
        self.require_kb_cover, self.sampling = require_kb_cover, sampling
        self.opening, self.ask_first = opening, ask_first

    def new_state(self, target: SimTarget) -> SimState:
        return SimState(target)

    def _s(self, seed):
        return self.sampling if seed is None or self.sampling.temperature == 0 else replace(self.sampling, seed=seed)

    def open(self, states: Sequence[SimState], seed: int | None = None) -> list[SimResponse]:
        if not states:
            return []
        if self.opening:
            return [SimResponse(self.opening, "open") for _ in states]
        out = self.llm.chat(
            [simulator_open_prompt(st.target.persona.description, st.target.target_genres) for st in states],
            self._s(seed),
        )
        res = []
        for o in out:
            t = user_text(o[0])
            res.append(SimResponse(t or "Hello.", "open", parse_failures=int(not t)))
        return res

    def _under_discussion(self, st: SimState, history: Sequence[Turn], cands: Sequence[str]) -> tuple[str | None, bool]:
        """(the movie the user is considering, whether the reply named it)."""
        named = self.matcher.find(history[-1].text if history else "", cands)
        if named is not None and named not in st.rejected:
            return named, True
        pending = st.pending
        return (pending, False) if pending and pending not in st.rejected else (named, named is not None)

    def _decide(self, states, histories, about, fresh) -> tuple[list[str | None], list[float | None]]:
        """Option-scored decisions (one batched call) for the dialogues with a movie to decide on."""
        decisions: list[str | None] = [None] * len(states)
        p_acc: list[float | None] = [None] * len(states)
        rows = []
        for i, iid in enumerate(about):
            if iid is None:
                continue
            if self.ask_first and fresh[i]:
                decisions[i] = "ask"  # first time this movie comes up: ask about it
            else:
                rows.append(i)
        if rows:
            batch = [
                simulator_decision_prompt(
                    states[i].target.persona.description,
                    states[i].target.target_genres,
                    histories[i],
                    self.items[about[i]].title,
                )
                for i in rows
            ]
            probs = np.asarray(self.llm.score_options(batch, list(USER_DECISIONS)))  # [R, 3]
            for i, p in zip(rows, probs):
                d = USER_DECISIONS[int(np.argmax(p))]
                if (
                    d == "accept"
                    and self.require_kb_cover
                    and not covers(self.items[about[i]], states[i].target.target_genres)
                ):
                    d = "reject"
                decisions[i], p_acc[i] = d, float(p[USER_DECISIONS.index("accept")])
        return decisions, p_acc

    def respond(
        self,
        states: Sequence[SimState],
        histories: Sequence[Sequence[Turn]],
        candidates: Sequence[Sequence[str]],
        seed: int | None = None,
    ) -> list[SimResponse]:
        if not states:
            return []
        about, fresh = [], []
        for st, h, c in zip(states, histories, candidates):
            iid, _ = self._under_discussion(st, h, c)
            about.append(iid)
            fresh.append(iid is not None and iid not in st.inquired)
        decisions, p_acc = self._decide(states, histories, about, fresh)
        prompts = [
            simulator_reply_prompt(
                st.target.persona.description, st.target.target_genres, h, d, self.items[iid].title if iid else None
            )
            for st, h, d, iid in zip(states, histories, decisions, about)
        ]
        texts = self.llm.chat(prompts, self._s(seed))
        res = []
        for st, o, d, iid, p in zip(states, texts, decisions, about, p_acc):
            t = user_text(o[0])
            # a verbalisation that does not say the decision taken (empty, or an "ask" with no
            # question in it: small models echo the recommender instead) is replaced by the
            # decision said plainly, and counted, so the transcript and the record agree
            fail = int(not t or (d == "ask" and "?" not in t))
            if fail:
                title = self.items[iid].title if iid else "it"
                t = {
                    "accept": "OK, I'll watch it.",
                    "reject": "No, that's not for me.",
                    "ask": f"What is {title} about?",
                }.get(d or "", t or "Tell me more.")
            if d == "ask":
                st.inquired.add(iid)
                st.pending = iid
            elif d in ("accept", "reject"):
                st.pending = None
                if d == "reject":
                    st.rejected.add(iid)
            res.append(
                SimResponse(
                    t,
                    {"ask": "inquire"}.get(d, d) if d else "chat",
                    iid,
                    accepted=d == "accept",
                    end=d == "accept",
                    p_accept=p,
                    covers_target=covers(self.items[iid], st.target.target_genres) if iid else None,
                    parse_failures=fail,
                )
            )
        return res


@dataclass
class SimulatorReward:
    """``REWARD: simulator``: the turn reward read off the simulated user's own action, on the
    same acceptance scale as the LLM Rewarder (:data:`rso_lib.experts.rewarder.ACCEPTANCE_LEVELS`),
    instead of asking a judge (a 135M judge cannot tell the levels apart): accept -> accepted,
    asking about the named movie -> interested, turning it down -> rejected; a turn that names no
    movie -> no recommendation if none has been named in the dialogue yet, else not interested
    (the user is being steered elsewhere). The stop rule is the Rewarder's
    (:func:`rso_lib.experts.rewarder.should_stop`: no recommendation never passes tau)."""

    stop_threshold: float = 0.7
    values: dict | None = None
    uses_simulator = True

    def __post_init__(self):
        self.values = acceptance_values(self.values)

    @staticmethod
    def level(response: SimResponse, recommended: bool) -> str:
        if response.accepted:
            return "accepted"
        if response.item_id is not None and response.action == "reject":
            return "rejected"
        if response.item_id is not None:
            return "interested"
        return "not_interested" if recommended else "no_recommendation"

    def score_from_sim(self, responses: Sequence[SimResponse], recommended: Sequence[bool]) -> list[RewardResult]:
        """``recommended[i]``: a movie has been named in dialogue i (this turn or before)."""
        out = []
        for r, rec in zip(responses, recommended):
            lv = self.level(r, rec)
            rew = self.values[lv]
            out.append(RewardResult(rew, None, should_stop(rew, self.stop_threshold, rec), levels={lv: 1}))
        return out
