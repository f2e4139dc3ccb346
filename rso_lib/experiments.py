"""Running experiments: build systems from notebook parameters, run them through the dialogue
engine (reusing finished transcripts), and hand the dialogues to :mod:`rso_lib.eval` to score --
what notebooks 03-09 call. ``eval`` only scores transcripts; this layer decides what runs.

One transcript per (dataset, system run): ``runs/<profile>/transcripts/<dataset>/<name>.jsonl``,
with a sidecar ``<name>.config.json`` holding everything that decides its content (system, LLM
specs, planner weights' hash, engine settings, seed). A later notebook asking for the same run
finds the transcript and the engine skips the finished dialogues (so 06 and 07 reuse 04's runs
for free); if the config differs, the stale transcript is moved aside and the run starts over --
a transcript is never silently reused under another config.

Runs are named by :class:`RunSpec`; in params they are plain strings (``"RSO"``) or dicts
(``{"name": "PROMPT_ONLY@qwen0.5b", "system": "PROMPT_ONLY", "label": "PromptCRS (Qwen2.5-0.5B)",
"llm": {"backend": "transformers", "model": "Qwen/Qwen2.5-0.5B-Instruct"}}``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from rso_lib.dialogue.config import EngineConfig
from rso_lib.eval.evaluate import EvalConfig, SystemEval, evaluate_system
from rso_lib.eval.judges import JudgeConfig
from rso_lib.eval.similarity import RetrieverRanker
from rso_lib.eval.transcripts import EvalDialogue, to_eval_dialogue
from rso_lib.paths import run_dir

# table labels and the paper's row names of the engine's presets
DISPLAY = {
    "RSO": "RSO",
    "PROMPT_ONLY": "PromptCRS",
    "INTERCRS": "InterCRS",
    "PCCRS": "PC-CRS",
    "NO_RETRIEVER": "w/o Fact Retriever",
    "NO_PLANNER": "w/o Planner",
    "NO_REASONER": "w/o Preference Reasoner",
    "UNICRS": "UniCRS",
    "BARCOR": "BARCOR",
}
PAPER_ROW = {
    "RSO": "RSO",
    "PROMPT_ONLY": "QwenCRS",
    "INTERCRS": "InterCRS",
    "PCCRS": "PCCRS",
    "NO_RETRIEVER": "w/o Fact Retriever",
    "NO_PLANNER": "w/o Planner",
    "NO_REASONER": "w/o Preference Reasoner",
    "UNICRS": "UniCRS",
    "BARCOR": "BARCOR",
}
# the roles that make up "the system" (swapped when a run names its own backbone); the user
# simulator, the rewarder and the judge stay the same for every system, as in the paper
SYSTEM_ROLES = ("actor", "reasoner", "chooser")


@dataclass(frozen=True)
class RunSpec:
    """One row of a table: a system preset, optionally on its own backbone or planner.

    Attributes:
        name: transcript name (file stem and the transcript's ``system`` field); unique per table.
        system: preset key of ``rso_lib.dialogue.systems.SYSTEMS``.
        label: row label in tables and figures (default: :data:`DISPLAY`).
        llm: LLM spec for the system's roles (:data:`SYSTEM_ROLES`); None = the default spec.
        planner: ``"sft"`` | ``"rl"`` | ``"untrained"`` | a directory (planner systems only;
            None = the run's default).
        paper_row: the paper's row name for the paper columns (default :data:`PAPER_ROW`).
        rl_seed: which RL run's Planner (a value of ``RL_SEEDS``; None = the first) when the
            planner is ``"rl"`` (:meth:`RunContext.planner_for`).
    """

    name: str
    system: str
    label: str | None = None
    llm: dict | None = None
    planner: str | None = None
    paper_row: str | None = None
    rl_seed: int | None = None

    @property
    def display(self) -> str:
        return self.label or DISPLAY.get(self.system, self.name)

    @property
    def paper(self) -> str:
        return self.paper_row or PAPER_ROW.get(self.system, self.display)


def parse_specs(items: Sequence[str | dict]) -> list[RunSpec]:
    """Params -> RunSpecs: a string is a preset name; a dict gives RunSpec fields (unknown keys
    fail). Names must be unique."""
    out = []
    for it in items:
        if isinstance(it, str):
            out.append(RunSpec(name=it.upper(), system=it.upper()))
        elif isinstance(it, dict):
            unknown = set(it) - set(RunSpec.__dataclass_fields__)
            if unknown:
                raise ValueError(
                    f"run spec {it!r}: unknown key(s) {sorted(unknown)}; allowed: "
                    f"{', '.join(RunSpec.__dataclass_fields__)}"
                )
            d = dict(it)
            d.setdefault("system", d.get("name", "").split("@")[0])
            d.setdefault("name", d["system"])
            out.append(RunSpec(**d))
        else:
            raise TypeError(f"a run spec is a preset name or a dict, got {type(it).__name__}")
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique, got {names}")
    return out


def rl_seed_list(rl_seeds: Sequence[int], seed: int) -> list[int]:
    """The RL seeds of a run: the ``RL_SEEDS`` parameter, or ``[SEED]`` when it is empty (one RL
    run, as before the parameter existed). Raises ValueError naming ``RL_SEEDS`` on anything but
    distinct integers >= 0."""
    seeds = list(rl_seeds) or [seed]
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad or len(set(seeds)) != len(seeds):
        raise ValueError(f"RL_SEEDS = {list(rl_seeds)!r}: distinct integers >= 0 (empty: [SEED])")
    return seeds


def rl_checkpoint_name(system: str = "RSO", dataset: str = "inspired", seed: int | None = None) -> str:
    """Where notebook 03 saves the RL Planner trained for one system on one dataset's users:
    ``rl`` (RSO, INSPIRED), ``rl-redial``, ``rl-no_reasoner``, ``rl-no_reasoner-redial`` ... under
    ``runs/<profile>/checkpoints/`` (the authors tune one Planner per system and dataset). The
    first of ``RL_SEEDS`` is ``seed=None`` and keeps that name (so a single-seed run's checkpoints
    stay where they were); every other seed adds ``-seed<seed>`` (``rl-seed1``, ``rl-redial-seed1``)."""
    parts = (
        ["rl"]
        + ([system.lower()] if system.upper() != "RSO" else [])
        + ([dataset] if dataset != "inspired" else [])
        + ([f"seed{seed}"] if seed is not None else [])
    )
    return "-".join(parts)


def resolve_planner(
    which: str, profile: str, system: str = "RSO", dataset: str = "inspired", seed: int | None = None
) -> Path | None:
    """``"sft"`` -> the Planner of notebook 02; ``"rl"`` -> the RL Planner of notebook 03 for this
    system and dataset, else the closest one trained (same system on INSPIRED, RSO on this dataset,
    RSO on INSPIRED: see :func:`rl_checkpoint_name`); ``"untrained"`` -> None; else a path or a
    checkpoint name under ``runs/<profile>/checkpoints``. ``seed``: an RL seed other than the
    first (None); the closest one is looked for among that seed's runs only, never another
    seed's (that would report no spread where there is some); other choices ignore it."""
    if which == "untrained":
        return None
    ck = run_dir(profile) / "checkpoints"
    if which == "rl":
        names = [
            rl_checkpoint_name(system, dataset, seed),
            rl_checkpoint_name(system, seed=seed),
            rl_checkpoint_name("RSO", dataset, seed),
            rl_checkpoint_name(seed=seed),
        ]
        bases = [ck / n for n in dict.fromkeys(names)]
    elif which == "sft" or (ck / which).is_dir():
        bases = [ck / which]
    else:
        bases = [Path(which)]
    for base in bases:
        for cand in (base, base / "planner"):
            if (cand / "planner.json").is_file():
                return cand
    raise FileNotFoundError(
        f"no saved Planner under {bases[-1]} (looked for planner.json there and in planner/): run notebooks/02_sft"
        f"{' and 03_rl' if which == 'rl' else ''} with PROFILE={profile!r}"
        f"{f' and {seed} in RL_SEEDS' if which == 'rl' and seed is not None else ''} first, or set PLANNER to 'untrained'"
    )


def _hash_dir(d: Path | None, meta: str = "planner.json") -> str | None:
    if d is None:
        return None
    h = hashlib.sha256()
    for f in sorted(d.glob("*.safetensors")) + [d / meta]:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class RunContext:
    """What every run of one notebook shares: profile, data, models, engine settings.

    Attributes:
        profile: run profile (``smoke`` | ``paper`` | ...).
        data_dir: the data directory (resolved).
        llm_cfg: ``rso_lib.llm.role_llms`` config (``{"default": spec, role: spec, "cache": ..}``).
        engine: the engine's settings for every run (simulator, reward, max_turns, top_k,
            decoding, ...: :class:`rso_lib.dialogue.config.EngineConfig`).
        planner: default planner for planner systems (``"rl"``, ``"sft"``, ``"untrained"``, path).
        kb_source: the ``KB_SOURCE`` parameter: a source for both datasets (``"redial"``:
            id2info.json, the default; ``"inspired"``: movie_database.tsv) or a mapping
            ``{dataset: source}`` (:func:`rso_lib.data.kb.kb_source_map`). Read per dataset with
            :meth:`kb_for` / :meth:`retriever`.
        seed: engine seed.
        sample_strategy: sample the Planner's strategy (True) or take the argmax (False, default
            at evaluation).
        target_genres: which listed genres are the target (``"all"`` | ``"first"``, see
            :func:`rso_lib.data.targets.apply_genre_rule`).
        rl_seeds: the ``RL_SEEDS`` parameter: the seeds notebook 03 trained an RL Planner with
            (empty: ``[seed]``, one run); :attr:`rl_seed_list` resolves it.
    """

    profile: str
    data_dir: Path
    llm_cfg: dict
    engine: EngineConfig = field(default_factory=EngineConfig)
    planner: str = "rl"
    kb_source: str | dict = "redial"
    seed: int = 0
    sample_strategy: bool = False
    target_genres: str = "all"
    rl_seeds: tuple[int, ...] = ()
    _kbs: dict = field(default_factory=dict)  # source -> KnowledgeBase (one object per file)
    _retrievers: dict = field(default_factory=dict)  # source -> FactRetriever over that KB
    _planners: dict = field(default_factory=dict)
    _targets: dict = field(default_factory=dict)
    left_out: dict = field(default_factory=dict)  # dataset -> targets no catalogue item can satisfy

    @classmethod
    def from_params(cls, params: dict) -> RunContext:
        """The context of an evaluation notebook, from its parameters (pass ``globals()``: only
        UPPER_CASE names are read). ``PROFILE``, ``DATA_DIR``, ``SEED``, ``LLM``, ``PLANNER``,
        ``LLM_CACHE``, ``KB_SOURCE``, ``SAMPLE_STRATEGY``, ``GENRE_RULE``, ``RL_SEEDS`` set the context; every
        engine parameter the notebook declares (``MAX_TURNS``, ``SIMULATOR``, ``REWARD``, ...: see
        :class:`rso_lib.dialogue.config.EngineConfig`) sets the engine of every run, the others
        keep the engine's defaults. A bad engine value raises ``ValueError`` naming it."""
        p = {k: v for k, v in params.items() if k.isupper()}
        return make_context(
            p["PROFILE"],
            p.get("DATA_DIR", ""),
            p.get("SEED", 0),
            p["LLM"],
            planner=p.get("PLANNER", "rl"),
            engine=EngineConfig.from_params(p),
            llm_cache=p.get("LLM_CACHE", True),
            kb_source=p.get("KB_SOURCE", "redial"),
            sample_strategy=p.get("SAMPLE_STRATEGY", True),
            target_genres=p.get("GENRE_RULE", "all"),
            rl_seeds=p.get("RL_SEEDS", ()),
        )

    @property
    def rl_seed_list(self) -> list[int]:
        """The RL seeds whose Planners exist: ``RL_SEEDS``, or ``[seed]`` (the first is the Planner
        every ``"rl"`` run uses unless a spec names another: :meth:`planner_for`)."""
        return rl_seed_list(self.rl_seeds, self.seed)

    def seed_specs(self, spec: RunSpec) -> list[RunSpec]:
        """The runs of ``spec`` with the RL Planner of every seed but the first (which ``spec``
        itself uses): named ``<name>@seed<s>``, same system, users and engine seed, so that only
        the Planner differs. Empty for a spec whose Planner is not ``"rl"``, or for one seed."""
        if (spec.planner or self.planner) != "rl":
            return []
        return [
            replace(spec, name=f"{spec.name}@seed{s}", rl_seed=s, label=f"{spec.display} (RL seed {s})")
            for s in self.rl_seed_list[1:]
        ]

    def kb_source_for(self, dataset: str) -> str:
        """The knowledge-base source of ``dataset`` (ValueError naming ``KB_SOURCE`` if invalid)."""
        from rso_lib.data.kb import kb_source_map

        return kb_source_map(self.kb_source)[dataset]

    def kb_for(self, dataset: str):
        """The dataset's knowledge base: its catalogue, facts and target coverage (loaded once per
        source; a missing file raises the DataError that says how to fetch it)."""
        src = self.kb_source_for(dataset)
        if src not in self._kbs:
            from rso_lib.data.kb import load_kb

            self._kbs[src] = load_kb(self.data_dir, source=src)
        return self._kbs[src]

    def kb_provenance(self) -> dict:
        """``kb_source`` (each dataset's source) and ``kb_files`` (path, items and SHA256 of each
        file loaded so far) for a results file's provenance: INSPIRED's database is fetched
        without a pinned checksum, so the hash says which copy a table came from."""
        from rso_lib.data.fetch import sha256_file
        from rso_lib.data.kb import kb_source_map

        files = {
            src: {"path": kb.path, "items": len(kb), "sha256": sha256_file(kb.path) if kb.path else None}
            for src, kb in sorted(self._kbs.items())
        }
        return {"kb_source": kb_source_map(self.kb_source), "kb_files": files}

    def targets(self, dataset: str, n: int):
        """The first ``n`` reachable simulation targets of the dataset's test split (file order);
        ``n <= 0`` or more than there are -> all of them (with the ReDial catalogue: INSPIRED 79 of
        99, ReDial 198 of 198)."""
        if dataset not in self._targets:
            from rso_lib.data.targets import apply_genre_rule, load_sim_targets, split_reachable

            # a user whose genres no catalogue item covers can never be satisfied: leave them out
            # and count them (reported in every table's provenance as targets_left_out)
            ts = apply_genre_rule(load_sim_targets(self.data_dir, dataset, split="test"), self.target_genres)
            kept, dropped = split_reachable(ts, self.kb_for(dataset))
            self._targets[dataset], self.left_out[dataset] = kept, len(dropped)
            if dropped:
                print(
                    f"[eval] {dataset}: {len(dropped)} test users left out: no {self.kb_source_for(dataset)} item covers "
                    f"their target genres ({len(kept)} kept)"
                )
        ts = self._targets[dataset]
        return list(ts) if n <= 0 or n >= len(ts) else ts[:n]

    def retriever(self, dataset: str):
        """The Fact Retriever over the dataset's knowledge base (one per source; its index on disk
        is keyed by the embedder and every item's text, so a changed file builds a new one)."""
        src = self.kb_source_for(dataset)
        if src not in self._retrievers:
            from rso_lib.experts.retriever import FactRetriever
            from rso_lib.llm import load_embedder
            from rso_lib.llm.embedded import cache_root

            name = self.engine.embedder_name
            self._retrievers[src] = FactRetriever(
                self.kb_for(dataset),
                load_embedder(name),
                embedder_name=name,
                # the index is keyed by the embedder and every item's text: built once per
                # machine (~100 s for MiniLM on 2 cores), shared by profiles and output roots
                cache_dir=cache_root(),
                top_k=self.engine.top_k,
                rank_n=self.engine.rank_n,
            )
        return self._retrievers[src]

    def planner_for(self, spec: RunSpec, dataset: str = "inspired", seed: int | None = None):
        """(Planner, its directory) of a planner run on a dataset (loaded once per directory): the
        one place that maps a run to its Planner. ``seed`` (default: ``spec.rl_seed``) picks the
        RL run of that seed (a value of :attr:`rl_seed_list`; the first, or None, is the
        checkpoint a single-seed run has); a Planner that is not ``"rl"`` has no seed."""
        which = spec.planner or self.planner
        seed = spec.rl_seed if seed is None else seed
        if seed is not None and which == "rl" and seed not in self.rl_seed_list:
            raise ValueError(f"{spec.name}: RL seed {seed} is not one of RL_SEEDS {self.rl_seed_list}")
        tag = None if seed is None or seed == self.rl_seed_list[0] else seed
        d = resolve_planner(which, self.profile, spec.system, dataset, seed=tag)
        if d not in self._planners:
            from rso_lib.experts.planner import Planner

            p = Planner.from_config(seed=self.seed) if d is None else Planner.load(d)
            p.eval()
            self._planners[d] = p
        return self._planners[d], d

    def llms_for(self, spec: RunSpec) -> dict:
        from rso_lib.llm import build_llm, role_llms

        llms = dict(role_llms(self.llm_cfg))
        if spec.llm:
            own = build_llm(spec.llm)
            for r in SYSTEM_ROLES:
                llms[r] = own
        return llms


def _run_config(
    ctx: RunContext,
    spec: RunSpec,
    dataset: str,
    planner_dir: Path | None,
    uses_planner: bool,
    plm_dir: Path | None = None,
) -> dict:
    """Everything that decides a transcript's content (labels do not)."""
    return {
        "plm": _hash_dir(plm_dir, "plm.json") if plm_dir is not None else None,
        "name": spec.name,
        "system": spec.system,
        "llm": spec.llm,
        "dataset": dataset,
        "seed": ctx.seed,
        "kb_source": ctx.kb_source_for(dataset),
        "llm_cfg": {k: v for k, v in ctx.llm_cfg.items() if k != "cache"},
        "engine": ctx.engine.as_dict(),
        "sample_strategy": ctx.sample_strategy,
        "target_genres": ctx.target_genres,
        "planner": (_hash_dir(planner_dir) or "untrained") if uses_planner else None,  # weights, not names
    }


def _same_config(old: dict | None, cfg: dict) -> bool:
    """Whether a transcript's sidecar ``old`` describes the run ``cfg``. A sidecar written before
    the engine's settings were one :class:`EngineConfig` lists only the engine parameters its
    notebook declared; the others were the engine's defaults, which EngineConfig's defaults are,
    so they are filled in before comparing (such transcripts are reused, not rerun)."""
    if old is None:
        return False
    if isinstance(old.get("engine"), dict):
        old = {**old, "engine": {**json.loads(json.dumps(EngineConfig().as_dict())), **old["engine"]}}
    return old == json.loads(json.dumps(cfg, default=str))


def transcript_path(profile: str, dataset: str, name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in name)
    return run_dir(profile) / "transcripts" / dataset / f"{safe}.jsonl"


def run_one(ctx: RunContext, spec: RunSpec, dataset: str, n_dialogues: int, log=print) -> tuple[list, Path, dict]:
    """Run (or resume) one system on one dataset; returns (episodes, transcript path, info)."""
    from rso_lib.dialogue.systems import build_system, get_system

    system = replace(get_system(spec.system), name=spec.name)
    uses_planner = system.strategy_mode == "planner"
    planner, pdir = ctx.planner_for(spec, dataset) if uses_planner else (None, None)
    plm = None
    if system.plm is not None:  # UniCRS / BARCOR: the model notebook 02_plm_baselines trained
        from rso_lib.baselines.plm_system import plm_dir

        plm = plm_dir(ctx.profile, system.plm, dataset)
        if not (plm / "plm.json").is_file():
            raise FileNotFoundError(
                f"{spec.name} on {dataset}: no trained model at {plm}; run notebooks/"
                f"02_plm_baselines with PROFILE={ctx.profile!r} first"
            )
    path = transcript_path(ctx.profile, dataset, spec.name)
    cfg = _run_config(ctx, spec, dataset, pdir, uses_planner, plm)
    side = path.with_suffix(".config.json")
    if path.exists():
        old = json.loads(side.read_text()) if side.exists() else None
        if not _same_config(old, cfg):
            stale = path.with_suffix(f".stale-{int(time.time())}.jsonl")
            os.replace(path, stale)
            log(f"[eval] {path.name}: config changed since it was written; moved aside to {stale.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    side.write_text(json.dumps(cfg, indent=1, sort_keys=True, default=str) + "\n")
    eng = build_system(
        system,
        ctx.engine,
        kb=ctx.kb_for(dataset),
        llms=ctx.llms_for(spec),
        planner=planner,
        retriever=ctx.retriever(dataset) if system.use_retriever and system.plm is None else None,
        seed=ctx.seed,
        plm=plm,
    )
    t0 = time.perf_counter()
    eps = eng.run(ctx.targets(dataset, n_dialogues), transcript_path=path, sample_strategy=ctx.sample_strategy)
    info = {
        "wall_s": round(time.perf_counter() - t0, 1),
        "new_dialogues": eng.stats.dialogues,
        "turns": eng.stats.turns,
        "model_s_by_role": {k: round(v, 1) for k, v in sorted(eng.stats.model_s_by_role.items())},
        "planner": str(pdir) if pdir else ("untrained" if uses_planner else None),
    }
    log(f"[eval] {dataset}/{spec.name}: {len(eps)} dialogues ({info['new_dialogues']} new) in {info['wall_s']} s")
    return eps, path, info


def run_and_evaluate(
    ctx: RunContext,
    specs: Sequence[RunSpec],
    datasets: Sequence[str],
    n_dialogues: int,
    eval_cfg: EvalConfig | None = None,
    judge: Any = "role",
    n_boot: int = 1000,
    log=print,
) -> tuple[list[SystemEval], dict[tuple[str, str], list[EvalDialogue]], dict]:
    """Run every spec on every dataset and evaluate it.

    Args:
        ctx: shared run settings.
        specs: the systems (rows).
        datasets: ``"inspired"`` and/or ``"redial"``.
        n_dialogues: dialogues per system and dataset.
        eval_cfg: the evaluation rules and how to judge WI/PRS/Cred (:func:`eval_config_from_params`;
            None: the defaults).
        judge: a ChatLLM, ``"role"`` (the ``judge`` role of ``ctx.llm_cfg``) or None (no judge).
        n_boot: bootstrap resamples for the CIs.

    Returns:
        (evaluations in dataset x spec order, their EvalDialogues by (dataset, name), run info
        by "dataset/name" for provenance).
    """
    eval_cfg = eval_cfg or EvalConfig()  # the module's defaults, built per call (no shared instance)
    if judge == "role":
        from rso_lib.llm import role_llms

        judge = role_llms(ctx.llm_cfg)["judge"]
    evals, dialogues, info = [], {}, {}
    for ds in datasets:
        # the judged item and the catalogue ranking of prompt-only systems use the dataset's
        # retriever index (built on first use only)
        ranker = RetrieverRanker(lambda ds=ds: ctx.retriever(ds))
        for spec in specs:
            eps, path, inf = run_one(ctx, spec, ds, n_dialogues, log=log)
            dls = [to_eval_dialogue(e, system=spec.display, dataset=ds) for e in eps]
            t0 = time.perf_counter()
            ev = evaluate_system(
                dls,
                ctx.kb_for(ds),
                judge,
                eval_cfg,
                seed=ctx.seed,
                n_boot=n_boot,
                system=spec.display,
                dataset=ds,
                ranker=ranker,
            )
            ev.per_dialogue.insert(2, "paper_row", spec.paper)
            ev.per_dialogue.insert(3, "preset", spec.system)
            ev.per_dialogue.insert(4, "seed", ctx.seed)  # claims pair users by (dialog_id, seed)
            inf["judge_s"] = round(time.perf_counter() - t0, 1)
            inf["transcript"] = str(path.relative_to(run_dir(ctx.profile)))
            for n in ev.notes:
                log(f"[eval] {ds}/{spec.name}: {n}")
            evals.append(ev)
            dialogues[(ds, spec.name)] = dls
            info[f"{ds}/{spec.name}"] = inf
    return evals, dialogues, info


def per_dialogue_table(evals: Sequence[SystemEval]) -> pd.DataFrame:
    """Every evaluated dialogue of ``evals`` in one table (``system, dataset, paper_row, preset,
    seed, dialog_id`` + the per-dialogue metric columns): what the claims notebook reads back."""
    return pd.concat([e.per_dialogue for e in evals], ignore_index=True) if evals else pd.DataFrame()


def evals_by_preset(evals: Sequence[SystemEval]) -> dict[tuple[str, str], SystemEval]:
    """``(dataset, preset) -> SystemEval`` (Fig. 5 by module looks runs up by preset)."""
    return {(e.dataset, str(e.per_dialogue["preset"].iloc[0])): e for e in evals if len(e.per_dialogue)}


def strategy_turns(dialogues: Sequence[EvalDialogue], stage: str) -> pd.DataFrame:
    """One row per system turn with a strategy: ``stage, dialog_id, turn_index, strategy``
    (input of :func:`rso_lib.eval.tables.strategy_shares`, Fig. 3)."""
    rows = [(stage, d.dialog_id, k, t.strategy) for d in dialogues for k, t in enumerate(d.turns) if t.strategy]
    return pd.DataFrame(rows, columns=["stage", "dialog_id", "turn_index", "strategy"])


def run_provenance(ctx: RunContext, specs: Sequence[RunSpec], eval_cfg: EvalConfig, info: dict, **extra) -> dict:
    """The ``provenance`` extras of a table: profile, data, backends and model ids per role and
    per run, planner weights, evaluation rules and judge settings, engine settings, per-run timing."""
    from rso_lib.llm import describe, role_llms
    from rso_lib.results import provenance

    roles = describe(role_llms(ctx.llm_cfg))
    runs = {
        s.name: {
            "system": s.system,
            "label": s.display,
            "paper_row": s.paper,
            "backbone": s.llm or ctx.llm_cfg.get("default", {"backend": "embedded"}),
        }
        for s in specs
    }
    return provenance(
        ctx.seed,
        profile=ctx.profile,
        data_dir=str(ctx.data_dir),
        **ctx.kb_provenance(),
        target_genres=ctx.target_genres,
        llm_roles=roles,
        llm_cfg=ctx.llm_cfg,
        runs=runs,
        engine=ctx.engine.as_dict(),
        planner=ctx.planner,
        evaluation=asdict(eval_cfg),
        run_info=info,
        targets_left_out=dict(ctx.left_out),
        **extra,
    )


def make_context(
    profile: str,
    data_dir_param: str,
    seed: int,
    llm: dict,
    planner: str = "rl",
    engine: EngineConfig | None = None,
    llm_cache: bool = True,
    kb_source: str | dict = "redial",
    sample_strategy: bool = True,
    target_genres: str = "all",
    rl_seeds: Sequence[int] = (),
) -> RunContext:
    """A :class:`RunContext` from notebook parameters.

    Args:
        profile, data_dir_param, seed: the notebook's PROFILE, DATA_DIR ("" -> $RSO_DATA_DIR), SEED.
        llm: ``role_llms`` config without ``cache`` (``{"default": spec, "<role>": spec}``).
        planner: default Planner (``"rl"`` | ``"sft"`` | ``"untrained"`` | path).
        engine: the engine's settings (None: :class:`EngineConfig`'s defaults).
        llm_cache: cache deterministic LLM requests in ``runs/<profile>/cache/llm.sqlite`` (so the
            judge does not redo work when a later notebook re-evaluates the same dialogues).
        kb_source: ``KB_SOURCE``: one source for both datasets or ``{dataset: source}``.
        sample_strategy: sample the Planner's strategy (the paper's policy) or take the argmax.
        target_genres: ``GENRE_RULE``, ``"all"`` | ``"first"``.
        rl_seeds: ``RL_SEEDS``: the seeds of notebook 03's RL runs (empty: ``[seed]``).
    """
    from rso_lib.paths import data_dir

    cfg = dict(llm)
    if "cache" in cfg:
        raise ValueError("give the LLM cache by llm_cache=True/False, not in the LLM config")
    if llm_cache:
        cfg["cache"] = str(run_dir(profile) / "cache" / "llm.sqlite")
    return RunContext(
        profile=profile,
        data_dir=data_dir(data_dir_param),
        llm_cfg=cfg,
        engine=engine if engine is not None else EngineConfig(),
        planner=planner,
        kb_source=kb_source,
        seed=seed,
        sample_strategy=sample_strategy,
        target_genres=target_genres,
        rl_seeds=tuple(rl_seed_list(rl_seeds, seed)),
    )


def run_dialogues(
    ctx: RunContext, specs: Sequence[RunSpec], datasets: Sequence[str], n_dialogues: int, log=print
) -> tuple[dict[tuple[str, str], list[EvalDialogue]], dict]:
    """Run (or resume) dialogues without judging them (Fig. 3 needs only the strategies).
    Returns EvalDialogues by (dataset, name) and run info by "dataset/name"."""
    out, info = {}, {}
    for ds in datasets:
        for spec in specs:
            eps, path, inf = run_one(ctx, spec, ds, n_dialogues, log=log)
            inf["transcript"] = str(path.relative_to(run_dir(ctx.profile)))
            out[(ds, spec.name)] = [to_eval_dialogue(e, system=spec.display, dataset=ds) for e in eps]
            info[f"{ds}/{spec.name}"] = inf
    return out, info


def scale_specs(backbones: Sequence[dict], default_llm: dict, rso_label: str) -> list[RunSpec]:
    """Fig. 4 rows: RSO on the default (small) backbone, then the prompt-only CRS on each backbone.

    Args:
        backbones: ``[{"label": "Qwen2.5-72B", "llm": spec}, ...]``; a backbone whose spec equals
            ``default_llm`` reuses the plain ``PROMPT_ONLY`` run (and its transcript, e.g. 04's).
        default_llm: the default LLM spec (``LLM["default"]``).
        rso_label: the small backbone's name for the RSO row label.
    """
    specs = [RunSpec(name="RSO", system="RSO", label=f"RSO ({rso_label})", paper_row=f"RSO ({rso_label})")]
    for b in backbones:
        unknown = set(b) - {"label", "llm"}
        if unknown or "label" not in b or "llm" not in b:
            raise ValueError(f"a backbone is {{'label': str, 'llm': spec}}, got {b!r}")
        same = dict(b["llm"]) == dict(default_llm)
        name = "PROMPT_ONLY" if same else f"PROMPT_ONLY@{b['label']}"
        label = f"PromptCRS ({b['label']})"
        specs.append(
            RunSpec(name=name, system="PROMPT_ONLY", label=label, paper_row=label, llm=None if same else dict(b["llm"]))
        )
    return parse_specs([asdict(s) for s in specs])


#: evaluation notebook parameter -> EvalConfig field (the judge's own settings are JUDGE_*)
EVAL_PARAMS = {
    "JUDGE_ITEM": "judge_item",
    "CRED_NO_ITEM": "cred_no_item",
    "POST_EVIDENCE": "post_evidence",
    "PRS_MIN_GAP": "prs_min_gap",
    "PRS_INTENTIONS": "prs_intentions",
    "RECALL_RANKING": "recall_ranking",
    "DIST2": "dist2",
}


def eval_config_from_params(params: dict) -> EvalConfig:
    """The :class:`EvalConfig` of an evaluation notebook (pass ``globals()``): ``JUDGE_MODE``,
    ``JUDGE_SAMPLES``, ``JUDGE_MAX_TOKENS`` (reasoned mode) and ``SEED`` make the judge's
    settings; :data:`EVAL_PARAMS` the rules. A parameter the notebook does not declare keeps the
    default."""
    p = {k: v for k, v in params.items() if k.isupper()}
    jkw = {"seed": p.get("SEED", 0)}
    for key, fld in (("JUDGE_MODE", "mode"), ("JUDGE_SAMPLES", "samples"), ("JUDGE_MAX_TOKENS", "reasoned_max_tokens")):
        if key in p:
            jkw[fld] = p[key]
    return EvalConfig(judge=JudgeConfig(**jkw), **{f: p[k] for k, f in EVAL_PARAMS.items() if k in p})
