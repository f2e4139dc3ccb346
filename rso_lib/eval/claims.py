"""Does our run support the paper? One row per claim the paper makes, each tested on the users
both sides were evaluated on, with a correction for the number of claims.

**Claims are declared before the data** (:data:`CLAIMS`, and :func:`scale_claims` for Fig. 4,
whose rows the ``07_scale`` parameters name): each names its metric, its kind ("better" or "not
worse"), the claim's system and its comparator(s).

**One claim, one test** (statistics in :mod:`rso_lib.eval.paired`): for each comparator, the users
both systems have a value for (paired by dialogue id, and seed when the table has one), the
per-user difference ``RSO - comparator``, a paired 95% bootstrap CI and a two-sided p-value
against the claim's null difference ``delta0`` (0 for "better", ``-margin`` for "not worse").
A "best" claim (Table IV/V) tests RSO against every declared baseline that ran, with Holm over that
family; RSO *beats* a baseline when its Holm-adjusted p < alpha with a positive effect, *loses*
with a negative one, else *ties*. The claim's p-value (``p_claim``) is the largest adjusted p
among the baselines when RSO is ahead of all of them (supported needs every one), else the
smallest adjusted p among those ahead of RSO (contradicted needs one).

**Across the table**, the claim p-values are adjusted once more (Holm or Benjamini-Hochberg,
parameter) over the claims that can get a verdict; ``p_adj`` < alpha gives **supported** (effect
in the claim's direction) or **contradicted** (the other way), else **inconclusive**. Before any
test: **not run** (a side has no run), **too few dialogues** (a comparison has fewer than
``min_paired_n`` paired users), **judge not valid at this scale** (the run's validity card,
``results/<p>/validity.csv``, has a failing check on the claim's metric). The statistics are still
printed for the last two; they are left out of the table's correction.

**Flags**: a comparator whose every value sits at the metric's floor or ceiling. A "not worse"
claim against a comparator at the floor holds trivially, so its verdict stays inconclusive.

**Power** (:mod:`rso_lib.eval.power`): from the run's own sd of the paired differences, the
minimum detectable effect at this n (``mde``) and the users needed to detect the paper's effect
(``n_needed``; for "not worse", to show the margin when the true difference is 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rso_lib.eval import paired as S
from rso_lib.eval import paper_numbers as P
from rso_lib.eval import power as W
from rso_lib.eval.tables import PER_DIALOGUE

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
TOO_FEW, NOT_VALID, NOT_RUN = "too few dialogues", "judge not valid at this scale", "not run"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, TOO_FEW, NOT_VALID, NOT_RUN)
BETTER, NOT_WORSE = "better", "not_worse"

#: Non-inferiority margins of "not worse" claims (Fig. 4): 5% of each metric's scale. A parameter
#: of 09_claims (MARGINS); these are its defaults.
MARGINS = {"WI": 0.2, "Cred": 0.2, "PRS": 0.05, "Conv-SR": 0.05, "Rec-SR": 0.05, "Recall@1": 0.05, "Recall@5": 0.05}
#: The range each per-dialogue value can take (judge scales 1-5; Cred 0 for a dialogue with
#: nothing to rate under the protocol's rule; rates 0/1), for the floor / ceiling flag.
BOUNDS = {
    "WI": (1.0, 5.0),
    "Cred": (0.0, 5.0),
    "PRS": (0.0, 1.0),
    "Conv-SR": (0.0, 1.0),
    "Accept-SR": (0.0, 1.0),
    "Rec-SR": (0.0, 1.0),
    "Recall@1": (0.0, 1.0),
    "Recall@5": (0.0, 1.0),
}
BASELINES = ("UniCRS", "BARCOR", "QwenCRS", "LlamaCRS", "InterCRS", "PCCRS")
VALIDITY_COLUMNS = ("check", "role", "metric", "model", "value", "threshold", "passed", "n", "parse_failures", "detail")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, declared before the data."""

    text: str
    source: str  # "Table IV", "Fig. 5", ...
    metric: str  # a key of PER_DIALOGUE (or "entropy" / "strategies_used" for Fig. 3)
    comparators: tuple[str, ...]  # paper rows RSO is compared with
    kind: str = BETTER  # BETTER or NOT_WORSE
    system: str = "RSO"  # the claim's system (its paper row)
    table: str = "main"  # which per-dialogue table: "main" (04 + 06) or "scale" (07)


def _declare() -> tuple[Claim, ...]:
    out = [
        Claim(f"RSO has the best {m} (Table IV)", "Table IV", m, BASELINES) for m in ("WI", "PRS", "Cred", "Conv-SR")
    ]
    out.append(Claim("RSO has the best Recall@1 (Table V)", "Table V", "Recall@1", BASELINES))
    for module, (metric, ablated) in {
        "Fact Retriever": ("Cred", "w/o Fact Retriever"),
        "Planner": ("Conv-SR", "w/o Planner"),
        "Preference Reasoner": ("Conv-SR", "w/o Preference Reasoner"),
    }.items():
        out.append(Claim(f"the {module} raises {metric} (Fig. 5)", "Fig. 5", metric, (ablated,)))
    return tuple(out)


#: Every claim of Tables IV-V and Fig. 5, declared before any data is read.
CLAIMS: tuple[Claim, ...] = _declare()
FIG5_MODULE = {
    "w/o Fact Retriever": "Fact Retriever",
    "w/o Planner": "Planner",
    "w/o Preference Reasoner": "Preference Reasoner",
}
COLUMNS = [
    "claim",
    "source",
    "dataset",
    "metric",
    "kind",
    "margin",
    "comparators",
    "binding",
    "beats",
    "ties",
    "loses",
    "paper_rso",
    "paper_other",
    "ours_rso",
    "ours_other",
    "n_paired",
    "n_dropped",
    "effect",
    "effect_lo",
    "effect_hi",
    "test",
    "p_raw",
    "p_claim",
    "p_adj",
    "mde",
    "paper_effect",
    "n_needed",
    "flags",
    "verdict",
]


def scale_claims(labels: Sequence[str], rso: str) -> list[Claim]:
    """Fig. 4: RSO on its small backbone matches or beats each larger prompt-only row of the
    ``07_scale`` runs on Recall@1, Recall@5 and Cred (the rows are named by 07's parameters)."""
    return [
        Claim(
            f"RSO matches or beats larger prompt-only CRSs on {m} (Fig. 4)", "Fig. 4", m, (o,), NOT_WORSE, rso, "scale"
        )
        for o in labels
        if o != rso
        for m in ("Recall@1", "Recall@5", "Cred")
    ]


# ------------------------------------------------------------------------------------- validity
def read_validity(path: Path) -> dict[str, list[str]] | None:
    """The failing checks of a validity card by the metric they guard (``{metric: [check, ...]}``),
    or None when the file does not exist (no card: nothing is marked).

    The card (``results/<p>/validity.csv``, :mod:`rso_lib.eval.validity`) has the columns
    :data:`VALIDITY_COLUMNS`; ``passed`` is True/False; ``metric`` is a Table IV/V metric or empty
    (a check that guards no single metric). Raises ValueError naming the file and the line on a
    missing column or a ``passed`` that is not True/False."""
    path = Path(path)
    if not path.is_file():
        return None
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in VALIDITY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (want {', '.join(VALIDITY_COLUMNS)})")
    out: dict[str, list[str]] = {}
    for i, r in df.iterrows():
        passed = r["passed"].strip().lower()
        if passed not in ("true", "false"):
            raise ValueError(f"{path}, line {i + 2}: passed = {r['passed']!r}, want True or False")
        if passed == "false" and r["metric"].strip():
            out.setdefault(r["metric"].strip(), []).append(r["check"])
    return out


# ------------------------------------------------------------------------------------ one claim
@dataclass
class Settings:
    """How claims are tested (the 09_claims parameters)."""

    alpha: float = 0.05
    power: float = 0.8
    min_paired_n: int = 10
    correction: str = "holm"
    margins: dict = field(default_factory=lambda: dict(MARGINS))
    n_boot: int = 2000
    n_perm: int = 5000

    def __post_init__(self):
        if not (0 < self.alpha < 1 and 0 < self.power < 1):
            raise ValueError(f"ALPHA and POWER must lie in (0, 1), got {self.alpha}, {self.power}")
        if self.correction not in S.CORRECTIONS:
            raise ValueError(f"CORRECTION must be one of {S.CORRECTIONS}, got {self.correction!r}")
        if self.min_paired_n < 2:
            raise ValueError(f"MIN_PAIRED_N must be >= 2 (a paired sd needs two users), got {self.min_paired_n}")
        missing = sorted(set(MARGINS) - set(self.margins))
        bad = {k: v for k, v in self.margins.items() if not (isinstance(v, (int, float)) and v >= 0)}
        if missing or bad:
            raise ValueError(f"MARGINS: missing {missing or 'none'}, not a number >= 0: {bad or 'none'}")


class Runs:
    """The per-dialogue rows of one table, split once by (dataset, paper row)."""

    def __init__(self, df: pd.DataFrame):
        # RSO on INSPIRED is in both 04's and 06's tables (one reused transcript): keep the first
        keys = [c for c in ("dataset", "paper_row", "dialog_id", "seed") if c in df.columns]
        dup = df.duplicated(keys) if len(df) else np.zeros(0, bool)
        self.duplicates = int(dup.sum())
        df = df[~dup]
        self.df = df
        self.groups = {k: g for k, g in df.groupby(["dataset", "paper_row"], sort=False)} if len(df) else {}
        self.keys = {k: self._key(g) for k, g in self.groups.items()}
        self._cache: dict[tuple, pd.Series] = {}

    @staticmethod
    def _key(d: pd.DataFrame) -> np.ndarray:
        key = d["dialog_id"].astype(str)
        if "seed" in d.columns:
            key = key + "|" + d["seed"].astype(str)
        return key.to_numpy(dtype=str)

    def series(self, dataset: str, row: str, col: str) -> pd.Series | None:
        """One system's per-user values indexed by the pairing key (``dialog_id``, or
        ``dialog_id|seed`` when the table has a seed column), or None if it did not run."""
        d = self.groups.get((dataset, row))
        if d is None:
            return None
        if (dataset, row, col) not in self._cache:
            vals = pd.to_numeric(d[col], errors="coerce").to_numpy(dtype=float) if col in d.columns else np.nan
            self._cache[(dataset, row, col)] = pd.Series(vals, index=self.keys[(dataset, row)], dtype=float)
        return self._cache[(dataset, row, col)]

    def datasets(self) -> list[str]:
        return list(dict.fromkeys(self.df["dataset"])) if "dataset" in self.df and len(self.df) else []


@dataclass
class _Side:
    name: str
    pair: S.Paired
    cmp: S.Comparison
    bound: str | None
    paper_other: float | None
    adj: float = math.nan


def _paper(claim: Claim, dataset: str, row: str) -> float | None:
    if claim.source == "Fig. 5":
        return P.fig5_value(dataset, FIG5_MODULE[claim.comparators[0]], row == claim.system)
    return P.paper_value(claim.source.split()[-1], dataset, row, claim.metric)


def _classify(s: _Side, delta0: float, alpha: float) -> str:
    if not s.adj < alpha:
        return "ties"
    return "beats" if s.cmp.effect > delta0 else "loses"


def _claim_p(sides: list[_Side], delta0: float) -> float:
    """Supported needs every comparison ahead (largest adjusted p); contradicted needs one behind
    (smallest adjusted p among those behind)."""
    if all(s.cmp.effect > delta0 for s in sides):
        return max(s.adj for s in sides)
    behind = [s.adj for s in sides if s.cmp.effect < delta0]
    return min(behind) if behind else 1.0


def _power(claim: Claim, sides: list[_Side], paper_rso, st: Settings) -> tuple[float, float, float]:
    """(MDE at the binding comparison's n, the paper's effect, users needed for it: the most any
    comparator needs, each from its own paired sd)."""
    binding = min(sides, key=lambda s: s.cmp.effect if s.cmp.n else math.inf)
    mde = W.mde_paired(binding.cmp.sd_diff, binding.cmp.n, st.alpha, st.power)
    if claim.kind == NOT_WORSE:
        need = [W.n_paired(st.margins[claim.metric], s.cmp.sd_diff, st.alpha, st.power) for s in sides]
        return mde, math.nan, max(need) if need else math.nan
    effects = [
        paper_rso - s.paper_other if paper_rso is not None and s.paper_other is not None else math.nan for s in sides
    ]
    need = [W.n_paired(e, s.cmp.sd_diff, st.alpha, st.power) for e, s in zip(effects, sides)]
    closest = min((e for e in effects if e == e), default=math.nan)
    return mde, closest, max((n for n in need if n == n), default=math.nan)


def _flags(claim: Claim, sides: list[_Side], rso_bound: str | None) -> list[str]:
    out = [f"{s.name} at {s.bound}" for s in sides if s.bound]
    if rso_bound:
        out.append(f"{claim.system} at {rso_bound}")
    return out


def check_claim(
    claim: Claim, runs: Runs, dataset: str, rng: np.random.Generator, st: Settings, invalid: dict | None
) -> dict:
    """Test one declared claim on one dataset; returns its row (``p_adj`` and the final verdict
    are filled in by :func:`claims_table`, after the table-wide correction)."""
    col = PER_DIALOGUE[claim.metric]
    paper_rso = _paper(claim, dataset, claim.system)
    row = {c: None for c in COLUMNS}
    row.update(claim=claim.text, source=claim.source, dataset=dataset, metric=claim.metric, kind=claim.kind)
    row.update(comparators=", ".join(claim.comparators), paper_rso=paper_rso, flags="", verdict=NOT_RUN)
    margin = st.margins[claim.metric] if claim.kind == NOT_WORSE else 0.0
    row["margin"] = margin
    x = runs.series(dataset, claim.system, col)
    ran = {c: y for c in claim.comparators if (y := runs.series(dataset, c, col)) is not None}
    if x is None or not ran:
        row["binding"] = f"{claim.system} not run" if x is None else "no comparator run"
        return row
    delta0 = -margin
    sides = []
    for name, y in ran.items():
        p = S.pair(x, y)
        cmp = S.compare(p, rng, delta0, st.n_boot, st.n_perm)
        sides.append(_Side(name, p, cmp, S.at_bound(p.y, BOUNDS.get(claim.metric)), _paper(claim, dataset, name)))
    return _finish(row, claim, sides, x, ran, st, invalid, paper_rso, delta0)


def _finish(row, claim, sides, x, ran, st, invalid, paper_rso, delta0) -> dict:
    n_min = min(s.cmp.n for s in sides)
    family = S.holm([s.cmp.p for s in sides])
    for s, a in zip(sides, family):
        s.adj = float(a)
    binding = min(sides, key=lambda s: s.cmp.effect if s.cmp.n else math.inf)
    rso_all = np.concatenate([s.pair.x for s in sides])
    flags = _flags(claim, sides, S.at_bound(rso_all, BOUNDS.get(claim.metric)))
    mde, paper_effect, need = _power(claim, sides, paper_rso, st)
    groups = {"beats": [], "ties": [], "loses": []}
    for s in sides:
        if s.cmp.n:
            groups[_classify(s, delta0, st.alpha)].append(s.name)
    not_run = [c for c in claim.comparators if c not in ran]
    row.update({k: ", ".join(v) for k, v in groups.items()})
    row.update(
        binding=binding.name + (f" (not run: {', '.join(not_run)})" if not_run else ""),
        paper_other=binding.paper_other,
        ours_rso=binding.cmp.mean_x,
        ours_other=binding.cmp.mean_y,
        n_paired=n_min,
        n_dropped=sum(s.pair.dropped_x + s.pair.dropped_y for s in sides),
        effect=binding.cmp.effect,
        effect_lo=binding.cmp.lo,
        effect_hi=binding.cmp.hi,
        test=binding.cmp.test,
        p_raw=binding.cmp.p,
        mde=mde,
        paper_effect=paper_effect,
        n_needed=need,
        flags="; ".join(flags),
    )
    row["_direction"] = all(s.cmp.effect > delta0 for s in sides)
    if invalid and claim.metric in invalid:  # the card speaks first: no n makes a broken judge valid
        row["verdict"] = NOT_VALID
        row["flags"] = "; ".join(flags + [f"validity: {', '.join(invalid[claim.metric])} failed"])
        return row
    if n_min < st.min_paired_n:
        row["verdict"] = TOO_FEW
        return row
    row["p_claim"] = _claim_p(sides, delta0)
    if claim.kind == NOT_WORSE and any(s.bound == "floor" for s in sides):
        row["verdict"] = INCONCLUSIVE
        row["flags"] = "; ".join(flags + ["'not worse' than a floor comparator holds trivially"])
    else:
        row["verdict"] = None  # decided after the table-wide correction
    return row


# ------------------------------------------------------------------------------- Fig. 3 (turns)
#: The Fig. 3 claims by statistic (their text in the claims table)
FIG3_CLAIMS = {
    "entropy": "RL raises the entropy of the strategy distribution over SFT (Fig. 3)",
    "strategies_used": "RL raises the number of strategies used over SFT (Fig. 3)",
}


def _counts(turns: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Per-dialogue strategy counts (dialogues x strategies) of one stage."""
    t = turns.assign(dialog_id=turns["dialog_id"].astype(str))
    m = pd.crosstab(t["dialog_id"], t["strategy"])
    return list(m.index), m


def _stats(counts: np.ndarray) -> np.ndarray:
    """Entropy (nats) and number of strategies used of the pooled counts; counts may be
    (..., dialogues, strategies): the statistic of each resample."""
    tot = counts.sum(-2).astype(float)
    p = tot / np.maximum(tot.sum(-1, keepdims=True), 1)
    ent = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0.0)).sum(-1)
    return np.stack([ent, (tot > 0).sum(-1)], -1)


def strategy_stats(turns: pd.DataFrame) -> dict[str, float]:
    """The Fig. 3 statistics of one stage's turns, all dialogues pooled: ``entropy`` (nats) of the
    strategy distribution and ``strategies_used`` (what :func:`strategy_claims` compares)."""
    if not len(turns):
        return {"entropy": math.nan, "strategies_used": math.nan}
    ent, used = _stats(_counts(turns)[1].to_numpy())
    return {"entropy": float(ent), "strategies_used": float(used)}


def strategy_claims(turns: pd.DataFrame, before: str, after: str, rng: np.random.Generator, st: Settings) -> list[dict]:
    """Fig. 3 / Sec. V-B2: RL raises the entropy of the strategy distribution and the number of
    strategies used, over SFT. The statistic is a property of all turns pooled, so the test
    permutes whole dialogues: where both stages ran the same users, each user's two dialogues swap
    stages at random (paired); else dialogues are shuffled between stages. The CI resamples users
    (paired) or dialogues in each stage."""
    texts = dict(enumerate(FIG3_CLAIMS.values()))
    stages = {s: g for s, g in turns.groupby("stage", sort=False)}
    rows = []
    if before not in stages or after not in stages:
        for i, stat in enumerate(("entropy", "strategies_used")):
            rows.append(_fig3_row(texts[i], stat, after, before, verdict=NOT_RUN))
        return rows
    ids_a, ca = _counts(stages[after])
    ids_b, cb = _counts(stages[before])
    cols = sorted(set(ca.columns) | set(cb.columns))
    a, b = ca.reindex(columns=cols, fill_value=0).to_numpy(), cb.reindex(columns=cols, fill_value=0).to_numpy()
    paired = sorted(ids_a) == sorted(ids_b)
    if paired:
        b = cb.reindex(index=ids_a, columns=cols, fill_value=0).to_numpy()
    obs = _stats(a) - _stats(b)
    boot, perm = _fig3_resamples(a, b, paired, rng, st)
    lo, hi = np.quantile(boot, [0.025, 0.975], axis=0)
    p = (1 + (np.abs(perm) >= np.abs(obs) - 1e-9).sum(0)) / (1 + len(perm))
    n = min(len(a), len(b))
    for i, stat in enumerate(("entropy", "strategies_used")):
        r = _fig3_row(texts[i], stat, after, before, verdict=None)
        r.update(ours_rso=_stats(a)[i], ours_other=_stats(b)[i], effect=obs[i], effect_lo=lo[i], effect_hi=hi[i])
        r.update(
            n_paired=n,
            n_dropped=0,
            p_raw=p[i],
            p_claim=p[i],
            test="dialogue permutation" + (" (paired)" if paired else ""),
        )
        r["mde"] = W.mde_paired(float(np.std(boot[:, i], ddof=1)) * math.sqrt(n), n, st.alpha, st.power)
        r["_direction"] = obs[i] > 0
        if n < st.min_paired_n:
            r["verdict"], r["p_claim"] = TOO_FEW, None
        rows.append(r)
    return rows


def _fig3_resamples(a, b, paired, rng, st) -> tuple[np.ndarray, np.ndarray]:
    n_boot, n_perm = min(st.n_boot, 1000), min(st.n_perm, 1000)
    if paired:
        i = rng.integers(0, len(a), (n_boot, len(a)))
        boot = _stats(a[i]) - _stats(b[i])
        swap = rng.random((n_perm, len(a)))[..., None] < 0.5
        perm = _stats(np.where(swap, b, a)) - _stats(np.where(swap, a, b))
        return boot, perm
    boot = _stats(a[rng.integers(0, len(a), (n_boot, len(a)))]) - _stats(b[rng.integers(0, len(b), (n_boot, len(b)))])
    both = np.concatenate([a, b])
    order = np.argsort(rng.random((n_perm, len(both))), axis=1)
    shuffled = both[order]
    perm = _stats(shuffled[:, : len(a)]) - _stats(shuffled[:, len(a) :])
    return boot, perm


def _fig3_row(text, stat, after, before, verdict) -> dict:
    row = {c: None for c in COLUMNS}
    row.update(claim=text, source="Fig. 3", dataset="inspired", metric=stat, kind=BETTER, margin=0.0)
    row.update(comparators=before, binding=f"{after} vs {before}", flags="", verdict=verdict)
    return row


# ---------------------------------------------------------------------------------- the table
def claims_table(
    per_dialogue: pd.DataFrame,
    strategy_turns: pd.DataFrame | None = None,
    stages: tuple[str, str] = ("SFT only", "after RL"),
    scale: pd.DataFrame | None = None,
    scale_rso: str | None = None,
    validity: dict[str, list[str]] | None = None,
    settings: Settings | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Every declared claim the kit can check, one row each (see the module docstring).

    Args:
        per_dialogue: per-dialogue rows of the Tables IV-V and Fig. 5 runs (``dataset``,
            ``paper_row``, ``dialog_id``, optionally ``seed``, and the metric columns of
            :data:`rso_lib.eval.tables.PER_DIALOGUE`).
        strategy_turns: Fig. 3 turns (``stage, dialog_id, turn_index, strategy``), or None.
        stages: (before, after) stage names of ``strategy_turns``.
        scale: per-dialogue rows of the Fig. 4 runs (``paper_row`` = their labels), or None.
        scale_rso: the RSO row of ``scale`` (default: the first label starting with "RSO").
        validity: :func:`read_validity` of the run's card (None: no card, nothing marked).
        settings: alpha, power, minimum n, correction, margins, resamples.
        seed: seed of the bootstrap and permutation draws.

    Returns:
        the table (:data:`COLUMNS`); ``attrs["notes"]`` lists what a reader must know (dropped
        users, the validity card's absence, the correction).
    """
    st = settings or Settings()
    rng = np.random.default_rng(seed)
    main = Runs(per_dialogue)
    datasets = main.datasets()
    rows = [check_claim(c, main, ds, rng, st, validity) for c in CLAIMS for ds in datasets]
    if strategy_turns is not None and len(strategy_turns):
        rows += strategy_claims(strategy_turns, stages[0], stages[1], rng, st)
    if scale is not None and len(scale):
        labels = list(dict.fromkeys(scale["paper_row"]))
        rso = scale_rso or next((x for x in labels if str(x).startswith("RSO")), None)
        if rso is not None:
            sc = Runs(scale)
            sc_datasets = sc.datasets()
            rows += [check_claim(c, sc, ds, rng, st, validity) for c in scale_claims(labels, rso) for ds in sc_datasets]
    df = _correct(rows, st)
    df.attrs["notes"] = _notes(df, validity, st)
    if main.duplicates:
        df.attrs["notes"].append(f"{main.duplicates} repeated (dataset, system, dialogue) row(s) read once")
    return df


def _correct(rows: list[dict], st: Settings) -> pd.DataFrame:
    """The table-wide correction over the claims still open, then their verdicts."""
    open_ = [i for i, r in enumerate(rows) if r["verdict"] is None]
    adj = S.adjust([rows[i]["p_claim"] for i in open_], st.correction)
    for i, a in zip(open_, adj):
        r = rows[i]
        r["p_adj"] = float(a)
        if a < st.alpha:
            r["verdict"] = SUPPORTED if r["_direction"] else CONTRADICTED
        else:
            r["verdict"] = INCONCLUSIVE
    df = pd.DataFrame(rows, columns=COLUMNS)
    num = [c for c in ("margin", "paper_rso", "paper_other", "ours_rso", "ours_other", "effect", "effect_lo",
                       "effect_hi", "mde", "paper_effect") if c in df]  # fmt: skip
    df[num] = df[num].apply(pd.to_numeric, errors="coerce").round(4)
    for c in ("p_raw", "p_claim", "p_adj"):
        df[c] = pd.to_numeric(df[c], errors="coerce").round(5)
    for c in ("n_paired", "n_dropped", "n_needed"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    return df


def _notes(df: pd.DataFrame, validity, st: Settings) -> list[str]:
    name = {"holm": "Holm (family-wise error)", "bh": "Benjamini-Hochberg (false discovery rate)"}[st.correction]
    out = [
        f"alpha = {st.alpha}, power = {st.power}, minimum paired n = {st.min_paired_n}; "
        f"table-wide correction: {name} over {int(df['p_adj'].notna().sum())} claim(s); "
        "within a 'best' claim: Holm over its baselines",
    ]
    dropped = int(pd.to_numeric(df["n_dropped"], errors="coerce").fillna(0).sum())
    out.append(f"{dropped} user(s) left out of comparisons: a value on one side only")
    if validity is None:
        out.append("no validity card (results/<p>/validity.csv): no claim is marked 'judge not valid at this scale'")
    else:
        bad = ", ".join(f"{m} ({', '.join(c)})" for m, c in validity.items()) or "none"
        out.append(f"validity card read; failing checks by metric: {bad}")
    return out


def verdict_counts(claims: pd.DataFrame) -> dict[str, int]:
    """How many claims got each verdict (for the notebook's summary line and the README)."""
    return {k: int(v) for k, v in claims["verdict"].value_counts().items()}
