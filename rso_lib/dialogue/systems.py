"""Systems = configurations of the one dialogue engine (paper Tables III-V, Fig. 4-5).

==============  =========  ========  =========  =====  =======  ==========  ===============================
name            strategy   reasoner  retriever  facts  chooser  self-check  paper row
==============  =========  ========  =========  =====  =======  ==========  ===============================
RSO             planner    yes       yes        yes    yes      0           RSO (ours)
PROMPT_ONLY     none       no        no         no     no       0           QwenCRS / LlamaCRS (per backbone)
INTERCRS        none       no        yes        no     no       0           InterCRS (candidate titles, free chat)
PCCRS           explain.   no        yes        yes    yes      2           PC-CRS
NO_RETRIEVER    planner    yes       yes        no     yes      0           RSO w/o Fact Retriever (Fig. 5a)
NO_PLANNER      none       yes       yes        yes    yes      0           RSO w/o Planner (Fig. 5b)
NO_REASONER     planner    no        yes        yes    yes      0           RSO w/o Preference Reasoner (Fig. 5c)
UNICRS          none       no        own rank   no     no       0           UniCRS (trained PLM, rso_lib.baselines)
BARCOR          none       no        own rank   no     no       0           BARCOR (trained PLM, rso_lib.baselines)
==============  =========  ========  =========  =====  =======  ==========  ===============================

* PROMPT_ONLY: the backbone LLM alone, in context (the paper's QwenCRS / LlamaCRS: no external
  facts, no candidates); it recommends from its own knowledge, or asks, as it sees fit.
* INTERCRS: retrieval + free chat: the Actor sees the candidate titles (no facts) and picks (or
  not) in its own words; no strategies.
* PCCRS: the system's LLM picks one of PC-CRS's six explanation strategies, writes the reply from
  the chosen item's facts, and a self-check ("is every claim supported by the facts?") triggers
  up to two rewrites.
* NO_RETRIEVER: as the authors' ablation, the candidate titles stay and their facts go.
* UNICRS / BARCOR (``plm`` set): a trained model of :mod:`rso_lib.baselines` replaces the Fact
  Retriever (its own item ranking; Rec-SR and Recall@k come from it) and the Actor (its generator
  writes the reply, the top-ranked item fills the ``<movie>`` slot); ``build_system(..., plm=...)``
  takes the model or its saved directory.
* Every system may reply without recommending: the chooser can answer "none of these yet"
  (``ALLOW_NO_RECOMMENDATION``); the Planner's preference-elicitation strategies (Table I:
  opinion / experience inquiry, rephrase preference, preference confirmation) are offered the
  chosen item without being told to name it (``INQUIRY_ITEM``, the authors' ``env.py``).

:func:`build_system` assembles an engine from names and params (what the notebooks call).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rso_lib.llm.protocol import Sampling


@dataclass(frozen=True)
class SystemConfig:
    """Which experts a system uses.

    Attributes:
        name: the row name in tables and the ``system`` field of transcripts.
        strategy_mode: ``"planner"`` (RSO's learned Planner), ``"none"``, ``"explanation"``
            (PC-CRS), ``"random"`` (uniform over the 14, a control).
        use_reasoner: run the Preference Reasoner (Eq. 3).
        use_retriever: run the Fact Retriever's entity retrieval (Eq. 4, first half).
        use_facts: give the Actor the knowledge-base facts of the item (Eq. 4, KG lookup).
        use_chooser: pick one candidate for the Actor (False: Actor sees all candidate titles).
        self_check_rounds: PC-CRS self-check / refine rounds (0 = off).
        plm: ``"unicrs"`` | ``"barcor"``: a trained PLM baseline ranks and replies (None = LLM
            experts).
    """

    name: str
    strategy_mode: str = "planner"
    use_reasoner: bool = True
    use_retriever: bool = True
    use_facts: bool = True
    use_chooser: bool = True
    self_check_rounds: int = 0
    plm: str | None = None

    def __post_init__(self):
        if self.strategy_mode not in ("planner", "none", "explanation", "random"):
            raise ValueError(f"SystemConfig {self.name}: unknown strategy_mode {self.strategy_mode!r}")
        if self.use_chooser and not self.use_retriever:
            raise ValueError(f"SystemConfig {self.name}: the chooser needs the retriever")
        if self.use_facts and not self.use_retriever:
            raise ValueError(f"SystemConfig {self.name}: facts need the retriever")
        if self.plm is not None and (
            self.plm not in ("unicrs", "barcor")
            or self.strategy_mode != "none"
            or self.use_reasoner
            or self.use_chooser
            or not self.use_retriever
        ):
            raise ValueError(
                f"SystemConfig {self.name}: plm {self.plm!r} needs unicrs|barcor, no strategy, "
                "no reasoner, no chooser, and use_retriever (its own ranking)"
            )

    def capabilities(self) -> dict[str, bool]:
        """Paper Table III's four columns, read off the configuration."""
        return {
            "Learnable": self.strategy_mode == "planner" or self.plm is not None,
            "Preference Reasoning": self.use_reasoner,
            "Fact Grounding": self.use_facts,
            "Strategy Optimization": self.strategy_mode == "planner",
        }


RSO = SystemConfig("RSO")
PROMPT_ONLY = SystemConfig(
    "PROMPT_ONLY", strategy_mode="none", use_reasoner=False, use_retriever=False, use_facts=False, use_chooser=False
)
INTERCRS = SystemConfig("INTERCRS", strategy_mode="none", use_reasoner=False, use_facts=False, use_chooser=False)
PCCRS = SystemConfig("PCCRS", strategy_mode="explanation", use_reasoner=False, self_check_rounds=2)
NO_RETRIEVER = SystemConfig("NO_RETRIEVER", use_facts=False)
NO_PLANNER = SystemConfig("NO_PLANNER", strategy_mode="none")
NO_REASONER = SystemConfig("NO_REASONER", use_reasoner=False)
_PLM = dict(strategy_mode="none", use_reasoner=False, use_facts=False, use_chooser=False)
UNICRS = SystemConfig("UNICRS", plm="unicrs", **_PLM)
BARCOR = SystemConfig("BARCOR", plm="barcor", **_PLM)

SYSTEMS: dict[str, SystemConfig] = {
    s.name: s for s in (RSO, PROMPT_ONLY, INTERCRS, PCCRS, NO_RETRIEVER, NO_PLANNER, NO_REASONER, UNICRS, BARCOR)
}


def get_system(name: str) -> SystemConfig:
    key = name.strip().upper().replace("-", "_")
    if key not in SYSTEMS:
        raise KeyError(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}")
    return SYSTEMS[key]


def build_system(
    name: str | SystemConfig,
    *,
    kb,
    llm_cfg: dict | None = None,
    llms: dict | None = None,
    planner: Any = None,
    simulator: str = "agenda",
    reward: str = "judge",
    reward_mode: str = "expected",
    reward_samples: int = 10,
    stop_threshold: float = 0.7,
    stop_on_reward: bool = True,
    max_turns: int = 10,
    top_k: int = 5,
    rank_n: int = 50,
    chooser_mode: str = "letters",
    actor_max_tokens: int = 64,
    actor_temperature: float = 0.7,
    user_max_tokens: int = 48,
    user_temperature: float = 0.7,
    reasoner_max_tokens: int = 48,
    require_kb_cover: bool = True,
    allow_no_recommendation: bool = True,
    acceptance_values: dict | None = None,
    user_opening: str = "Hello.",
    user_asks_first: bool = True,
    inquiry_item: bool = True,
    paraphrase: bool = False,
    embedder: Any = None,
    embedder_name: str = "all-MiniLM-L6-v2",
    retriever: Any = None,
    cache_dir: str | Path | None = None,
    profile: str = "smoke",
    seed: int = 0,
    plm: Any = None,
):
    """Assemble a :class:`DialogueEngine` for one system (what the notebooks call).

    Args:
        name: a :data:`SYSTEMS` key (``"RSO"``, ``"PROMPT_ONLY"``, ...) or a SystemConfig.
        kb: the knowledge base (``rso_lib.data.kb.load_kb(...)``), the retrieval catalogue and the
            simulators' ground truth.
        llm_cfg: ``rso_lib.llm.role_llms`` config ({"default": spec, "<role>": spec, "cache": ..});
            ignored when ``llms`` (role -> ChatLLM) is given.
        planner: a Planner (or path to a saved one) for systems with ``strategy_mode="planner"``.
        simulator: ``"agenda"`` (default) or ``"llm"``.
        reward: ``"judge"`` (Eq. 9 LLM rewarder) or ``"simulator"`` (grounded simulator outcome).
        reward_mode / reward_samples / stop_threshold: Rewarder settings (Eq. 9).
        stop_on_reward: end dialogues on Eq. 9's stop rule (acceptance always ends them).
        max_turns: most system turns (paper 10).
        top_k / rank_n: retrieved candidates / recorded ranking length.
        chooser_mode: ``letters`` | ``titles`` | ``generate``.
        actor_max_tokens / actor_temperature / user_max_tokens / user_temperature / reasoner_max_tokens:
            decoding (the authors: temperature 0.7 while training the Planner, 0 when evaluating).
        require_kb_cover: LLM simulator may accept only movies covering the targets.
        allow_no_recommendation: the chooser may answer "none of these yet" (no item this turn).
        acceptance_values: the Rewarder's level -> value map (None: the authors',
            :data:`rso_lib.experts.rewarder.ACCEPTANCE_LEVELS`), for both ``reward`` kinds.
        user_opening / user_asks_first: LLM simulator: its first message ("" -> written by the
            LLM) and whether it asks about a newly named movie before deciding.
        inquiry_item: preference-elicitation turns still get the chosen item (authors' env.py).
        paraphrase: agenda simulator rewords its templates with the simulator LLM.
        embedder / embedder_name / retriever: reuse a loaded embedder or a built retriever.
        cache_dir: retriever index cache (default the user cache, ``$RSO_CACHE_DIR`` or ``~/.cache/rso``).
        profile, seed: run profile and seed.
        plm: for UNICRS / BARCOR: the trained model or its saved directory
            (:func:`rso_lib.baselines.plm_system.plm_parts`); it replaces ``retriever`` and the Actor.
    """
    from rso_lib.dialogue.engine import DialogueEngine
    from rso_lib.dialogue.simulators import AgendaSimulator, LLMSimulator, SimulatorReward
    from rso_lib.experts.rewarder import Rewarder

    system = name if isinstance(name, SystemConfig) else get_system(name)
    if llms is None:
        from rso_lib.llm import role_llms

        llms = role_llms(llm_cfg or {})
    plm_actor = None
    if system.plm is not None:
        from rso_lib.baselines.plm_system import plm_parts

        retriever, plm_actor = plm_parts(plm, kb, system.plm, rank_n=rank_n, max_new_tokens=actor_max_tokens)
    if system.use_retriever and retriever is None:
        from rso_lib.experts.retriever import FactRetriever

        if embedder is None:
            from rso_lib.llm import load_embedder

            embedder = load_embedder(embedder_name)
        if cache_dir is None:  # content-addressed (embedder + catalogue): shared by profiles and runs
            from rso_lib.llm.embedded import cache_root

            cache_dir = cache_root()
        retriever = FactRetriever(
            kb, embedder, embedder_name=embedder_name, cache_dir=cache_dir, top_k=top_k, rank_n=rank_n
        )
    if system.strategy_mode == "planner" and isinstance(planner, (str, Path)):
        from rso_lib.experts.planner import Planner

        planner = Planner.load(planner)
    sim_llm = llms.get("simulator", llms["actor"])
    user_s = Sampling(temperature=user_temperature, top_p=0.9, max_tokens=user_max_tokens)
    if simulator == "agenda":
        sim = AgendaSimulator(
            kb, paraphrase_llm=sim_llm if paraphrase else None, paraphrase_sampling=replace(user_s, temperature=0.0)
        )
    elif simulator == "llm":
        sim = LLMSimulator(
            sim_llm,
            kb,
            require_kb_cover=require_kb_cover,
            sampling=user_s,
            opening=user_opening,
            ask_first=user_asks_first,
        )
    else:
        raise ValueError(f"unknown simulator {simulator!r} (agenda | llm)")
    if reward == "judge":
        rew = Rewarder(
            llms.get("rewarder", llms["actor"]),
            mode=reward_mode,
            samples=reward_samples,
            stop_threshold=stop_threshold,
            values=acceptance_values,
        )
    elif reward == "simulator":
        rew = SimulatorReward(stop_threshold=stop_threshold, values=acceptance_values)
    else:
        raise ValueError(f"unknown reward {reward!r} (judge | simulator)")
    engine = DialogueEngine(
        system,
        llms,
        retriever=retriever if system.use_retriever else None,
        planner=planner if system.strategy_mode == "planner" else None,
        simulator=sim,
        rewarder=rew,
        max_turns=max_turns,
        seed=seed,
        chooser_mode=chooser_mode,
        actor_sampling=Sampling(temperature=actor_temperature, top_p=0.9, max_tokens=actor_max_tokens),
        reasoner_sampling=Sampling(temperature=0.0, max_tokens=reasoner_max_tokens),
        stop_on_reward=stop_on_reward,
        allow_no_recommendation=allow_no_recommendation,
        inquiry_item=inquiry_item,
    )
    if plm_actor is not None:  # the PLM's generator replaces the LLM Actor (timed like it)
        engine.actor = plm_actor.timed(engine)
    return engine


#: Notebook parameter name -> :func:`build_system` argument (what ``build_system_from_params`` maps).
PARAM_KEYS: dict[str, str] = {
    "LLM": "llm_cfg",
    "SIMULATOR": "simulator",
    "REWARD": "reward",
    "REWARD_MODE": "reward_mode",
    "REWARD_SAMPLES": "reward_samples",
    "STOP_THRESHOLD": "stop_threshold",
    "STOP_ON_REWARD": "stop_on_reward",
    "MAX_TURNS": "max_turns",
    "TOP_K": "top_k",
    "RANK_N": "rank_n",
    "CHOOSER_MODE": "chooser_mode",
    "ACTOR_MAX_TOKENS": "actor_max_tokens",
    "ACTOR_TEMPERATURE": "actor_temperature",
    "USER_MAX_TOKENS": "user_max_tokens",
    "USER_TEMPERATURE": "user_temperature",
    "REASONER_MAX_TOKENS": "reasoner_max_tokens",
    "REQUIRE_KB_COVER": "require_kb_cover",
    "ALLOW_NO_RECOMMENDATION": "allow_no_recommendation",
    "ACCEPTANCE_VALUES": "acceptance_values",
    "USER_OPENING": "user_opening",
    "USER_ASKS_FIRST": "user_asks_first",
    "INQUIRY_ITEM": "inquiry_item",
    "PARAPHRASE": "paraphrase",
    "EMBEDDER": "embedder_name",
    "PROFILE": "profile",
    "SEED": "seed",
}


def build_system_from_params(name: str | SystemConfig, params: dict, *, kb, **kw):
    """:func:`build_system` from notebook parameters (UPPER_CASE names of :data:`PARAM_KEYS`).
    Keys not in :data:`PARAM_KEYS` are ignored (notebooks hold other parameters too); ``kw``
    (``planner``, ``llms``, ``embedder``, ``retriever``...) is passed through and wins."""
    args = {PARAM_KEYS[k]: v for k, v in params.items() if k in PARAM_KEYS}
    args.update(kw)
    return build_system(name, kb=kb, **args)
