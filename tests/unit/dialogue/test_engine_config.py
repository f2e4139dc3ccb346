"""EngineConfig: the one place the engine's settings live (rso_lib/dialogue/config.py).

What must hold: every field is documented and has one notebook parameter; a bad value fails with
the parameter's name; ``run.py --check`` applies the same rules (no second table of them); every
params profile's engine parameters build a config and come back out unchanged; and an engine built
from a config has exactly the config's settings (a field that is not wired into ``build_system``
fails here).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rso_lib import run
from rso_lib.data.records import Item
from rso_lib.dialogue.config import EngineConfig
from rso_lib.dialogue.simulators import AgendaSimulator, LLMSimulator, SimulatorReward
from rso_lib.dialogue.systems import build_system
from rso_lib.experiments import RunContext, make_context
from rso_lib.experts.rewarder import ACCEPTANCE_LEVELS, Rewarder
from rso_lib.llm.scripted import ScriptedLLM

FIELDS = {f.name: f for f in dataclasses.fields(EngineConfig)}
PARAMS = EngineConfig.param_fields()


def test_every_field_is_documented_typed_and_has_its_own_parameter():
    assert len(PARAMS) == len(FIELDS), "two fields share a notebook parameter"
    for name, f in PARAMS.items():
        assert name.isupper() and name.isidentifier(), name
        assert len(f.metadata.get("doc", "")) > 20, f"EngineConfig.{f.name}: no doc in its metadata"
        assert f.default is not dataclasses.MISSING, f.name
        # the default passes its own checks (a range or choice typed wrong would fail here)
        assert EngineConfig.check_param(name, f.default) is None, f.name
    assert PARAMS["EMBEDDER"].name == "embedder_name" and PARAMS["MAX_TURNS"].name == "max_turns"


@pytest.mark.parametrize(
    "param,value,needle",
    [
        ("MAX_TURNS", 0, "MAX_TURNS = 0: outside [1, inf]"),
        ("TOP_K", 26, "TOP_K = 26: outside [1, 25]"),
        ("STOP_THRESHOLD", 1.5, "STOP_THRESHOLD = 1.5: outside [0, 1]"),
        ("ACTOR_TEMPERATURE", -0.1, "ACTOR_TEMPERATURE = -0.1: outside [0, 2]"),
        ("SIMULATOR", "human", "SIMULATOR = 'human': one of 'agenda', 'llm'"),
        ("CHOOSER_MODE", "vote", "CHOOSER_MODE = 'vote': one of 'letters', 'titles', 'generate'"),
        ("REWARD_SAMPLES", "10", "REWARD_SAMPLES = '10': expected an integer"),
        ("STOP_ON_REWARD", 1, "STOP_ON_REWARD = 1: expected a bool"),
        ("MAX_TURNS", True, "MAX_TURNS = True: expected an integer"),
        ("ACCEPTANCE_VALUES", [0.6], "ACCEPTANCE_VALUES = [0.6]: expected a mapping or None"),
        ("EMBEDDER", 3, "EMBEDDER = 3: expected a string"),
        ("ACCEPTANCE_VALUES", {"accepted": 1.0}, "needs exactly the levels"),
        (
            "ACCEPTANCE_VALUES",
            {**ACCEPTANCE_LEVELS, "accepted": 1.5},
            "ACCEPTANCE_VALUES['accepted']: a number in [0, 1]",
        ),
    ],
)
def test_a_bad_value_names_the_parameter(param, value, needle):
    with pytest.raises(ValueError) as e:
        EngineConfig.from_params({"MAX_TURNS": 2, param: value})
    assert needle in str(e.value)
    # run.py --check says the same, before any notebook runs
    assert needle in (run.check_value(param, value, None) or "")


def test_a_bad_field_or_override_names_it():
    with pytest.raises(ValueError, match=r"EngineConfig\.top_k: outside \[1, 25\]"):
        EngineConfig(top_k=0)
    with pytest.raises(ValueError, match=r"no field\(s\) \['max_turn'\]"):
        EngineConfig.from_params({}, max_turn=3)
    with pytest.raises(ValueError, match=r"EngineConfig\.reward: one of 'judge', 'simulator'"):
        EngineConfig.from_params({"REWARD": "judge"}, reward="critic")


def _out_of_range(f: dataclasses.Field):
    """A value of the right type that the field's metadata forbids (None: it forbids none)."""
    if "choices" in f.metadata:
        return "not-one-of-them"
    lo, hi = f.metadata.get("bounds", (None, None))
    step = 1 if isinstance(f.default, int) else 0.5
    return lo - step if lo is not None else (hi + step if hi is not None else None)


@pytest.mark.parametrize("param", sorted(PARAMS))
def test_run_check_uses_the_field_metadata_for_every_engine_parameter(param):
    f = PARAMS[param]
    assert run.check_value(param, f.default, f.default) is None
    bad = _out_of_range(f)
    if bad is not None:
        why = run.check_value(param, bad, f.default)
        assert why and why.startswith(f"{param} = {bad!r}:"), why
    # no second copy of an engine parameter's rule in run.py
    assert param not in run.RANGES and param not in run.CHOICES


PROFILES = ("smoke", "cpu", "paper", "vllm-cpu")


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profiles_engine_parameters_round_trip(profile):
    """Every notebook's engine parameters (its declared defaults with the profile on top) build a
    config, and the config gives them back; the undeclared ones keep the engine's defaults."""
    todo = run.plan(run.load_params(run.profile_files(profile)), run.notebooks())
    seen = 0
    for nb, given in todo.items():
        params = {**run.declared_parameters(nb), **given}
        engine_params = {k: v for k, v in params.items() if k in PARAMS}
        cfg = EngineConfig.from_params(params)
        back = cfg.as_params()
        assert {k: back[k] for k in engine_params} == engine_params, nb.stem
        assert all(back[k] == PARAMS[k].default for k in PARAMS if k not in engine_params), nb.stem
        assert EngineConfig.from_params(back) == cfg
        seen += bool(engine_params)
    assert seen >= 7  # 03_rl, 03_validity, 04-07, 04_validity_transcripts, 08_chat declare some


# --------------------------------------------------------------------------------------------
# build_system: the engine has the config's settings
# --------------------------------------------------------------------------------------------

ITEMS = [
    Item(str(i), t, 2000 + i, g, d)
    for i, (t, g, d) in enumerate(
        [
            ("Alien", ["horror", "sci-fi"], "A space crew is hunted by an alien."),
            ("Notting Hill", ["comedy", "romance"], "A bookseller falls in love with an actress."),
            ("Heat", ["crime", "action"], "A detective hunts a thief crew."),
            ("Toy Story", ["animation", "comedy"], "Toys come to life."),
            ("The Conjuring", ["horror", "mystery"], "Investigators help a haunted family."),
            ("Up", ["animation", "family"], "An old man flies his house with balloons."),
        ]
    )
]


class WordHash:
    """Deterministic stand-in for a sentence embedder (hashed bag of words)."""

    def encode(self, texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False):
        out = np.zeros((len(texts), 32), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, sum(map(ord, w)) % 32] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


#: field -> how to read it off a built engine (None: the field does not apply to that engine)
READ = {
    "simulator": lambda e: "llm" if isinstance(e.simulator, LLMSimulator) else "agenda",
    "require_kb_cover": lambda e: getattr(e.simulator, "require_kb_cover", None),
    "user_opening": lambda e: getattr(e.simulator, "opening", None),
    "user_asks_first": lambda e: getattr(e.simulator, "ask_first", None),
    "paraphrase": lambda e: (
        e.simulator.paraphrase_llm is not None if isinstance(e.simulator, AgendaSimulator) else None
    ),
    "user_max_tokens": lambda e: _user_sampling(e).max_tokens,
    "user_temperature": lambda e: _user_sampling(e).temperature if isinstance(e.simulator, LLMSimulator) else None,
    "reward": lambda e: {Rewarder: "judge", SimulatorReward: "simulator"}[type(e.rewarder)],
    "reward_mode": lambda e: getattr(e.rewarder, "mode", None),
    "reward_samples": lambda e: getattr(e.rewarder, "samples", None),
    "acceptance_values": lambda e: e.rewarder.values,
    "stop_threshold": lambda e: e.rewarder.stop_threshold,
    "stop_on_reward": lambda e: e.stop_on_reward,
    "max_turns": lambda e: e.max_turns,
    "top_k": lambda e: e.retriever.top_k,
    "rank_n": lambda e: e.retriever.rank_n,
    "chooser_mode": lambda e: e.chooser.mode,
    "allow_no_recommendation": lambda e: e.chooser.allow_none,
    "inquiry_item": lambda e: e.inquiry_item,
    "embedder_name": lambda e: e.retriever.embedder_name,
    "actor_max_tokens": lambda e: e.actor.sampling.max_tokens,
    "actor_temperature": lambda e: e.actor.sampling.temperature,
    "reasoner_max_tokens": lambda e: e.reasoner.sampling.max_tokens,
}


def _user_sampling(e):
    return e.simulator.sampling if isinstance(e.simulator, LLMSimulator) else e.simulator.paraphrase_sampling


LEVELS = {"no_recommendation": 0.5, "not_interested": 0.3, "rejected": 0.1, "interested": 0.7, "accepted": 0.9}
# every field away from its default, across two engines (LLM user + judge; agenda user + simulator reward)
LLM_USER = EngineConfig(
    simulator="llm",
    require_kb_cover=False,
    user_opening="Hi there.",
    user_asks_first=False,
    user_max_tokens=17,
    user_temperature=0.3,
    reward="judge",
    reward_mode="sampled",
    reward_samples=4,
    acceptance_values=LEVELS,
    stop_threshold=0.85,
    stop_on_reward=False,
    max_turns=4,
    top_k=2,
    rank_n=4,
    chooser_mode="titles",
    allow_no_recommendation=False,
    inquiry_item=False,
    embedder_name="word-hash",
    actor_max_tokens=19,
    actor_temperature=0.0,
    reasoner_max_tokens=21,
)
AGENDA_USER = dataclasses.replace(
    EngineConfig(), paraphrase=True, user_max_tokens=13, reward="simulator", stop_threshold=0.9, chooser_mode="generate"
)


@pytest.mark.parametrize("cfg", [LLM_USER, AGENDA_USER, EngineConfig()], ids=["llm-user", "agenda-user", "defaults"])
def test_build_system_gives_an_engine_with_the_configs_settings(cfg, tmp_path):
    llms = {"actor": ScriptedLLM(["Hello."])}
    eng = build_system(
        "RSO", cfg, kb=ITEMS, llms=llms, planner=object(), embedder=WordHash(), cache_dir=tmp_path, seed=5
    )
    assert set(READ) == set(FIELDS), "a field has no reading here: wire it into build_system and add it"
    got = {name: READ[name](eng) for name in FIELDS}
    want = {name: getattr(cfg, name) for name in FIELDS}
    want["acceptance_values"] = dict(ACCEPTANCE_LEVELS) if cfg.acceptance_values is None else cfg.acceptance_values
    want["rank_n"] = min(cfg.rank_n, len(ITEMS))  # the retriever ranks at most the whole catalogue
    if cfg.reward != "judge":
        want["reward_mode"] = want["reward_samples"] = None
    if cfg.simulator == "agenda":
        want.update(require_kb_cover=None, user_opening=None, user_asks_first=None, user_temperature=None)
    else:
        want["paraphrase"] = None
    assert got == want
    assert eng.seed == 5


def test_the_two_configs_above_leave_no_field_at_its_default():
    untouched = [
        n for n, f in FIELDS.items() if getattr(LLM_USER, n) == f.default and getattr(AGENDA_USER, n) == f.default
    ]
    assert not untouched, f"not checked away from the default: {untouched}"


# --------------------------------------------------------------------------------------------
# RunContext holds one
# --------------------------------------------------------------------------------------------


def test_a_run_context_reads_the_engine_parameters_and_rejects_bad_ones(tmp_path):
    params = {
        "PROFILE": "p",
        "DATA_DIR": str(tmp_path),
        "SEED": 3,
        "LLM": {"default": {"backend": "embedded"}},
        "LLM_CACHE": False,
        "MAX_TURNS": 2,
        "SIMULATOR": "llm",
        "STOP_ON_REWARD": False,
        "N_DIALOGUES": 99,
        "JUDGE_MODE": "score",
        "not_a_param": 1,
    }
    ctx = RunContext.from_params(params)
    assert ctx.engine == EngineConfig(max_turns=2, simulator="llm", stop_on_reward=False)
    assert ctx.seed == 3 and ctx.llm_cfg == {"default": {"backend": "embedded"}}
    with pytest.raises(ValueError, match=r"TOP_K = 0: outside \[1, 25\]"):
        RunContext.from_params({**params, "TOP_K": 0})
    assert make_context("p", str(tmp_path), 0, {"default": {}}, llm_cache=False).engine == EngineConfig()


def test_a_transcript_written_before_engine_config_is_still_recognised(tmp_path):
    """Sidecars written before this change list only the engine parameters the notebook declared
    (the rest were the engine's defaults): the same run must still match them, a changed one not."""
    import json

    from rso_lib.experiments import RunSpec, _run_config, _same_config

    nb = next(n for n in run.notebooks() if n.stem == "04_eval_tables")
    params = {**run.declared_parameters(nb), "DATA_DIR": str(tmp_path), "LLM_CACHE": False}
    ctx = RunContext.from_params(params)
    cfg = json.loads(json.dumps(_run_config(ctx, RunSpec("PROMPT_ONLY", "PROMPT_ONLY"), "inspired", None, False)))
    declared = {PARAMS[k].name: v for k, v in params.items() if k in PARAMS}
    assert len(declared) < len(FIELDS)  # the notebook leaves some settings at their defaults
    old = {**cfg, "engine": declared}
    assert _same_config(old, cfg)
    assert not _same_config({**cfg, "engine": {**declared, "max_turns": declared["max_turns"] + 1}}, cfg)
    # a setting the old sidecar left out was the default: a run that changes it is another run
    ctx.engine = dataclasses.replace(ctx.engine, rank_n=7)
    changed = json.loads(json.dumps(_run_config(ctx, RunSpec("PROMPT_ONLY", "PROMPT_ONLY"), "inspired", None, False)))
    assert "rank_n" not in declared and not _same_config(old, changed)
    assert not _same_config(None, cfg)
