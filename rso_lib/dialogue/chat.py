"""Interactive chat: a person plays the user of any system and sees, each turn, the strategy the
Planner chose (with its probability), the inferred preference and the facts handed to the Actor.

    from rso_lib.dialogue.chat import chat
    chat(engine)                 # engine = build_system("RSO", ...)

Type ``/accept`` to accept the movie the system just named, ``/quit`` to stop. ``input_fn`` and
``print_fn`` are injectable (tests, notebook widgets).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rso_lib.data.records import Persona, SimTarget, Turn
from rso_lib.dialogue.simulators import SimResponse, SimState, TitleMatcher, covers


class HumanSimulator:
    """A "simulator" whose words come from a person."""

    name = "human"

    def __init__(self, items, input_fn: Callable[[str], str] = input, prompt: str = "you> "):
        self.matcher = TitleMatcher(items)
        self.items = self.matcher.items
        self.input_fn, self.prompt = input_fn, prompt

    def new_state(self, target: SimTarget) -> SimState:
        return SimState(target)

    def open(self, states: Sequence[SimState], seed=None) -> list[SimResponse]:
        return [SimResponse(self.input_fn(self.prompt).strip() or "Hi!", "open") for _ in states]

    def respond(self, states, histories: Sequence[Sequence[Turn]], candidates, seed=None) -> list[SimResponse]:
        out = []
        for st, h, c in zip(states, histories, candidates):
            iid = self.matcher.find(h[-1].text, c)
            text = self.input_fn(self.prompt).strip()
            cov = covers(self.items[iid], st.target.target_genres) if iid else None
            if text.lower().startswith("/accept"):
                if iid is None:  # nothing named: treat as a plain message
                    out.append(SimResponse("I'll take it.", "chat"))
                else:
                    out.append(
                        SimResponse(
                            f"I'll watch {self.items[iid].title}.",
                            "accept",
                            iid,
                            accepted=True,
                            end=True,
                            covers_target=cov,
                        )
                    )
            elif text.lower().startswith("/quit"):
                out.append(SimResponse("Bye.", "quit", iid, end=True, covers_target=cov))
            else:
                out.append(SimResponse(text or "...", "chat", iid, covers_target=cov))
        return out


def format_trace(tr: dict, items: dict | None = None) -> str:
    """The expert trace of one turn (strategy + probability, preference, retrieved items, facts)."""
    items = items or {}
    lines = []
    if tr.get("strategy"):
        p = f" (p={tr['strategy_prob']:.2f})" if tr.get("strategy_prob") is not None else ""
        lines.append(f"  [strategy] {tr['strategy']}{p}")
    if tr.get("preference"):
        lines.append(f"  [preference] {tr['preference']}")
    if tr.get("retrieved"):
        lines.append("  [retrieved] " + "; ".join(items[i].name if i in items else i for i in tr["retrieved"]))
    for f in tr.get("facts", []):
        lines.append(f"  [facts] {f[:200]}")
    return "\n".join(lines)


def chat(
    engine,
    input_fn: Callable[[str], str] = input,
    print_fn: Callable[[str], None] = print,
    target_genres: Sequence[str] = (),
    persona: str = "a person chatting with the system",
    sample_strategy: bool = False,
):
    """Play the user of ``engine``'s system. Returns the :class:`Episode`.

    The engine's simulator is swapped for a :class:`HumanSimulator` for the duration of the chat.
    ``target_genres`` only matter for the ``covers_target`` field and the grounded reward.
    """
    old = engine.simulator
    items = getattr(old, "items", None) or (engine.retriever.items if engine.retriever is not None else {})
    engine.simulator = HumanSimulator(items.values(), input_fn=input_fn)
    target = SimTarget("chat-0", "chat", "human", Persona("human", persona), list(target_genres))
    print_fn("Chat with the recommender. /accept accepts the movie it named, /quit stops.")

    # The person answers inside the simulator step, so show the turn's expert trace (kept by the
    # engine in ``engine.current_trace``) and the system reply before asking for input.
    human = engine.simulator
    orig_respond = human.respond

    def respond(states, histories, candidates, seed=None):
        for tr in engine.current_trace:
            print_fn(format_trace(tr, items))
        print_fn(f"system> {histories[0][-1].text}")
        return orig_respond(states, histories, candidates, seed)

    human.respond = respond
    try:
        ep = engine.run(
            [target],
            None,
            sample_strategy=sample_strategy,
            on_turn=lambda t, r: print_fn(f"  [reward] {r.reward:.2f}") if r.reward is not None else None,
        )
    finally:
        engine.simulator = old
    print_fn(f"(dialogue ended: {ep[0].stop_reason})")
    return ep[0]
