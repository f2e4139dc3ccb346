"""The dialogue engine's settings, in one place: :class:`EngineConfig`.

Every setting of the engine (the user simulator, the Rewarder and its stop rule, dialogue length,
retrieval, decoding, the protocol choices where the paper is silent) is one field here, with its
type, its default, what it is and where the value comes from (the paper where it speaks, else the
authors' code ``ym689/RSO``, else PC-CRS). Each field's notebook parameter is its name upper-cased
(``max_turns`` -> ``MAX_TURNS``) unless its metadata names another (``param``); ranges and choices
sit in the field's metadata too, so that

* :meth:`EngineConfig.from_params` builds the configuration from a notebook's parameters
  (``globals()``) and rejects a bad value naming the parameter;
* ``python -m rso_lib.run --check`` validates the params files with the same rules
  (:meth:`EngineConfig.check_param`), before any notebook runs;
* :func:`rso_lib.dialogue.systems.build_system` reads it to assemble an engine.

The defaults are the engine's own (what a notebook that does not declare a parameter gets); the
params profiles (``params/*.yaml``) and the notebooks' parameter cells set the rest. This module
imports nothing heavy: ``run.py --check`` reads it without loading a model.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Bounds = tuple[float | None, float | None]


def _setting(
    default: Any,
    doc: str,
    *,
    choices: tuple[str, ...] | None = None,
    bounds: Bounds | None = None,
    param: str | None = None,
    check: Callable[[Any], str | None] | None = None,
):
    """A field of :class:`EngineConfig`: ``doc`` says what it is and why this default;
    ``choices`` / ``bounds`` (inclusive, None = unbounded) are what a value may be; ``param`` is
    the notebook parameter when it is not the field's name upper-cased; ``check`` says what else
    is wrong with a value (None: nothing)."""
    meta: dict[str, Any] = {"doc": doc}
    if choices is not None:
        meta["choices"] = choices
    if bounds is not None:
        meta["bounds"] = bounds
    if param is not None:
        meta["param"] = param
    if check is not None:
        meta["check"] = check
    return field(default=default, metadata=meta)


def _acceptance_scale(values: Any) -> str | None:
    """What the Rewarder would reject in an acceptance scale (five named levels, each in [0, 1])."""
    from rso_lib.experts.rewarder import acceptance_values  # numpy only: run.py --check stays light

    try:
        acceptance_values(values)
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class EngineConfig:
    """How the dialogue engine runs: one value per setting, each documented below.

    Build it from notebook parameters with :meth:`from_params` (``EngineConfig.from_params(
    globals())``), or directly (``EngineConfig(max_turns=3, reward="simulator")``); a bad value
    raises ``ValueError`` naming the parameter. Run objects (knowledge base, LLMs, Planner,
    retriever, seed) are not settings: :func:`rso_lib.dialogue.systems.build_system` takes them
    beside the configuration.
    """

    # -- the simulated user ------------------------------------------------------------------
    simulator: str = _setting(
        "agenda",
        "User simulator: 'agenda' (grounded, rule-based, deterministic; KDD'20 agenda users) | "
        "'llm' (persona role-play by an LLM, the paper's and PC-CRS's protocol).",
        choices=("agenda", "llm"),
    )
    require_kb_cover: bool = _setting(
        True,
        "LLM simulator: accept only a movie whose knowledge-base genres cover the user's targets "
        "(the paper lets the LLM user decide: the paper profile sets False).",
    )
    user_opening: str = _setting(
        "Hello.",
        "LLM simulator's first message (the authors' and PC-CRS's fixed 'Hello.'); '' -> the LLM writes it.",
    )
    user_asks_first: bool = _setting(
        True,
        "LLM simulator asks about a newly named movie before deciding on it (authors, PC-CRS).",
    )
    paraphrase: bool = _setting(
        False,
        "Agenda simulator rewords its template sentences with the simulator LLM (off: the "
        "templates, deterministic and free).",
    )
    user_max_tokens: int = _setting(
        48,
        "Simulated user's reply length in new tokens (authors: 64 for every reply; a user turn is a sentence or two).",
        bounds=(1, None),
    )
    user_temperature: float = _setting(
        0.7,
        "Simulated user's sampling temperature (authors: 0.7 while training the Planner, 0 when evaluating).",
        bounds=(0, 2),
    )
    # -- the Rewarder (Eq. 9) and when a dialogue ends ----------------------------------------
    reward: str = _setting(
        "judge",
        "Turn reward: 'judge' (the LLM Rewarder of Eq. 9, the paper) | 'simulator' (the "
        "simulated user's own grounded outcome, no LLM).",
        choices=("judge", "simulator"),
    )
    reward_mode: str = _setting(
        "expected",
        "LLM Rewarder: 'expected' (one option-scoring pass, the expected value over the levels) | "
        "'sampled' (the paper: mean of reward_samples sampled judgements).",
        choices=("expected", "sampled"),
    )
    reward_samples: int = _setting(
        10,
        "Judgements averaged per turn in 'sampled' mode (paper: 10).",
        bounds=(1, None),
    )
    acceptance_values: dict[str, float] | None = _setting(
        None,
        "Acceptance level -> reward value, for both reward kinds (None: the authors' critic scale, "
        "rso_lib.experts.rewarder.ACCEPTANCE_LEVELS).",
        check=_acceptance_scale,
    )
    stop_threshold: float = _setting(
        0.7,
        "tau of Eq. 9: a turn reward above it ends the dialogue and counts for Conv-SR (authors: "
        "0.7; the profiles use 0.8, which an 'interested' user alone does not pass).",
        bounds=(0, 1),
    )
    stop_on_reward: bool = _setting(
        True,
        "End a dialogue when Eq. 9's stop rule fires (RL, as the authors); False: only acceptance "
        "or max_turns end it (the evaluation profiles).",
    )
    max_turns: int = _setting(10, "Most system turns per dialogue (paper: 10).", bounds=(1, None))
    # -- retrieval and choosing an item ------------------------------------------------------
    top_k: int = _setting(
        5,
        "Candidates the Fact Retriever hands on per turn (authors: 3; 5 so that Recall@5 is "
        "defined). At most 25: the chooser labels candidates with letters.",
        bounds=(1, 25),
    )
    rank_n: int = _setting(
        50,
        "Length of the catalogue ranking recorded per turn, for Recall@k (k <= rank_n).",
        bounds=(1, None),
    )
    chooser_mode: str = _setting(
        "letters",
        "How the chooser picks a candidate: 'letters' (one scoring pass over single-token letters, "
        "no length bias) | 'titles' (scores the titles) | 'generate' (free text, matched).",
        choices=("letters", "titles", "generate"),
    )
    allow_no_recommendation: bool = _setting(
        True,
        "The chooser may answer 'none of these yet' (no item this turn), as a system that asks before it recommends.",
    )
    inquiry_item: bool = _setting(
        True,
        "Preference-elicitation strategies are offered the chosen item without being told to "
        "name it (the authors' env.py).",
    )
    embedder_name: str = _setting(
        "all-MiniLM-L6-v2",
        "Sentence embedder of the Fact Retriever's index (the embedded MiniLM; the authors embed "
        "descriptions with their own encoder).",
        param="EMBEDDER",
    )
    # -- decoding ----------------------------------------------------------------------------
    actor_max_tokens: int = _setting(
        64,
        "System reply length in new tokens (authors: max_new_tokens 64).",
        bounds=(1, None),
    )
    actor_temperature: float = _setting(
        0.7,
        "Actor sampling temperature (authors: 0.7 while training the Planner, 0 when evaluating).",
        bounds=(0, 2),
    )
    reasoner_max_tokens: int = _setting(
        48,
        "Preference Reasoner summary length in new tokens (decoded greedily; authors: 64).",
        bounds=(1, None),
    )

    def __post_init__(self):
        for f in dataclasses.fields(self):
            why = _problem(f, getattr(self, f.name))
            if why:
                raise ValueError(f"EngineConfig.{f.name}: {why}")

    # -- notebook parameters -----------------------------------------------------------------
    @classmethod
    def param_fields(cls) -> dict[str, dataclasses.Field]:
        """Notebook parameter name -> its field (``MAX_TURNS`` -> ``max_turns``, ``EMBEDDER`` ->
        ``embedder_name``)."""
        return {f.metadata.get("param", f.name.upper()): f for f in dataclasses.fields(cls)}

    @classmethod
    def check_param(cls, name: str, value: Any) -> str | None:
        """Why ``value`` is not allowed for the engine parameter ``name`` (``"MAX_TURNS = 0:
        outside [1, inf]"``), or None when it is, or when ``name`` is no engine parameter."""
        f = cls.param_fields().get(name)
        why = _problem(f, value) if f is not None else None
        return f"{name} = {value!r}: {why}" if why else None

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **overrides: Any) -> EngineConfig:
        """The configuration a notebook's parameters give (pass ``globals()``): every engine
        parameter it declares (UPPER_CASE, see :meth:`param_fields`) sets its field, the rest keep
        their defaults; other names are ignored (a notebook holds other parameters too).
        ``overrides`` (field names) win over the parameters: what a notebook fixes for itself.

        Raises ``ValueError`` naming the parameter (or field) and what it may be."""
        fields = cls.param_fields()
        errors = [why for name, value in params.items() if name in fields and (why := cls.check_param(name, value))]
        if errors:
            raise ValueError("bad engine parameter(s): " + "; ".join(errors))
        names = {f.name for f in fields.values()}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"EngineConfig has no field(s) {unknown}; fields: {', '.join(sorted(names))}")
        kw = {f.name: params[name] for name, f in fields.items() if name in params}
        return cls(**{**kw, **overrides})

    def as_params(self) -> dict[str, Any]:
        """The notebook parameters that give this configuration (inverse of :meth:`from_params`)."""
        return {name: getattr(self, f.name) for name, f in self.param_fields().items()}

    def as_dict(self) -> dict[str, Any]:
        """Field name -> value (what transcripts' config sidecars and provenance record)."""
        return dataclasses.asdict(self)


def _accepts(tp: Any, value: Any) -> bool:
    """Whether ``value`` has the field type ``tp`` (an int is a float; a bool is no number)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_accepts(t, value) for t in typing.get_args(tp))
    tp = typing.get_origin(tp) or tp
    if tp is type(None):
        return value is None
    if tp in (int, float) and isinstance(value, bool):
        return False
    if tp is float:
        return isinstance(value, (int, float))
    return isinstance(value, tp)


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(EngineConfig)


_TYPE_WORDS = {bool: "a bool", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}


def _type_word(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_word(t) for t in typing.get_args(tp))
    tp = typing.get_origin(tp) or tp
    return "None" if tp is type(None) else _TYPE_WORDS.get(tp, getattr(tp, "__name__", str(tp)))


def _problem(f: dataclasses.Field, value: Any) -> str | None:
    """What is wrong with ``value`` for field ``f`` (type, choices, bounds), or None."""
    tp = _field_types()[f.name]
    if not _accepts(tp, value):
        return f"expected {_type_word(tp)} (like the default {f.default!r})"
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        return f"one of {', '.join(map(repr, choices))}"
    lo, hi = f.metadata.get("bounds", (None, None))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return f"outside [{lo}, {'inf' if hi is None else hi}]"
    return f.metadata["check"](value) if "check" in f.metadata else None
