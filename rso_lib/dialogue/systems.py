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

:func:`build_system` assembles an engine from a system's name and an
:class:`~rso_lib.dialogue.config.EngineConfig` (the engine's settings) plus the run's objects
(knowledge base, LLMs, Planner); what the notebooks call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rso_lib.dialogue.config import EngineConfig
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
    config: EngineConfig | None = None,
    *,
    kb,
    llm_cfg: dict | None = None,
    llms: dict | None = None,
    planner: Any = None,
    embedder: Any = None,
    retriever: Any = None,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    plm: Any = None,
):
    """Assemble a :class:`DialogueEngine` for one system (what the notebooks call).

    Args:
        name: a :data:`SYSTEMS` key (``"RSO"``, ``"PROMPT_ONLY"``, ...) or a SystemConfig.
        config: the engine's settings (simulator, reward, max_turns, top_k, decoding, ...; see
            :class:`rso_lib.dialogue.config.EngineConfig`); None: its defaults.
        kb: the knowledge base (``rso_lib.data.kb.load_kb(...)``), the retrieval catalogue and the
            simulators' ground truth.
        llm_cfg: ``rso_lib.llm.role_llms`` config ({"default": spec, "<role>": spec, "cache": ..});
            ignored when ``llms`` (role -> ChatLLM) is given.
        planner: a Planner (or path to a saved one) for systems with ``strategy_mode="planner"``.
        embedder / retriever: reuse a loaded embedder (of ``config.embedder_name``) or a built
            retriever.
        cache_dir: retriever index cache (default the user cache, ``$RSO_CACHE_DIR`` or ``~/.cache/rso``).
        seed: the engine's seed (every sampled call and the Planner's samples derive from it).
        plm: for UNICRS / BARCOR: the trained model or its saved directory
            (:func:`rso_lib.baselines.plm_system.plm_parts`); it replaces ``retriever`` and the Actor.
    """
    from rso_lib.dialogue.engine import DialogueEngine

    cfg = config if config is not None else EngineConfig()
    system = name if isinstance(name, SystemConfig) else get_system(name)
    if llms is None:
        from rso_lib.llm import role_llms

        llms = role_llms(llm_cfg or {})
    plm_actor = None
    if system.plm is not None:
        from rso_lib.baselines.plm_system import plm_parts

        retriever, plm_actor = plm_parts(plm, kb, system.plm, rank_n=cfg.rank_n, max_new_tokens=cfg.actor_max_tokens)
    if system.use_retriever and retriever is None:
        retriever = _retriever(cfg, kb, embedder, cache_dir)
    if system.strategy_mode == "planner" and isinstance(planner, (str, Path)):
        from rso_lib.experts.planner import Planner

        planner = Planner.load(planner)
    engine = DialogueEngine(
        system,
        llms,
        retriever=retriever if system.use_retriever else None,
        planner=planner if system.strategy_mode == "planner" else None,
        simulator=_simulator(cfg, kb, llms.get("simulator", llms["actor"])),
        rewarder=_rewarder(cfg, llms.get("rewarder", llms["actor"])),
        max_turns=cfg.max_turns,
        seed=seed,
        chooser_mode=cfg.chooser_mode,
        actor_sampling=Sampling(temperature=cfg.actor_temperature, top_p=0.9, max_tokens=cfg.actor_max_tokens),
        reasoner_sampling=Sampling(temperature=0.0, max_tokens=cfg.reasoner_max_tokens),
        stop_on_reward=cfg.stop_on_reward,
        allow_no_recommendation=cfg.allow_no_recommendation,
        inquiry_item=cfg.inquiry_item,
    )
    if plm_actor is not None:  # the PLM's generator replaces the LLM Actor (timed like it)
        engine.actor = plm_actor.timed(engine)
    return engine


def _retriever(cfg: EngineConfig, kb, embedder, cache_dir):
    """The Fact Retriever over ``kb`` (its index cached on disk, keyed by embedder and catalogue)."""
    from rso_lib.experts.retriever import FactRetriever

    if embedder is None:
        from rso_lib.llm import load_embedder

        embedder = load_embedder(cfg.embedder_name)
    if cache_dir is None:  # content-addressed (embedder + catalogue): shared by profiles and runs
        from rso_lib.llm.embedded import cache_root

        cache_dir = cache_root()
    return FactRetriever(
        kb, embedder, embedder_name=cfg.embedder_name, cache_dir=cache_dir, top_k=cfg.top_k, rank_n=cfg.rank_n
    )


def _simulator(cfg: EngineConfig, kb, sim_llm):
    """The simulated user ``cfg.simulator`` names."""
    from rso_lib.dialogue.simulators import AgendaSimulator, LLMSimulator

    user_s = Sampling(temperature=cfg.user_temperature, top_p=0.9, max_tokens=cfg.user_max_tokens)
    if cfg.simulator == "agenda":
        return AgendaSimulator(
            kb,
            paraphrase_llm=sim_llm if cfg.paraphrase else None,
            paraphrase_sampling=replace(user_s, temperature=0.0),
        )
    return LLMSimulator(
        sim_llm,
        kb,
        require_kb_cover=cfg.require_kb_cover,
        sampling=user_s,
        opening=cfg.user_opening,
        ask_first=cfg.user_asks_first,
    )


def _rewarder(cfg: EngineConfig, rewarder_llm):
    """The turn reward ``cfg.reward`` names: the LLM Rewarder (Eq. 9) or the simulator's outcome."""
    from rso_lib.dialogue.simulators import SimulatorReward
    from rso_lib.experts.rewarder import Rewarder

    if cfg.reward == "judge":
        return Rewarder(
            rewarder_llm,
            mode=cfg.reward_mode,
            samples=cfg.reward_samples,
            stop_threshold=cfg.stop_threshold,
            values=cfg.acceptance_values,
        )
    return SimulatorReward(stop_threshold=cfg.stop_threshold, values=cfg.acceptance_values)
