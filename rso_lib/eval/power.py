"""Power and sample size for the claims table: how many simulated users a claim needs.

Callable before a run (planning, from a guessed standard deviation or two success rates) and after
one (from the run's own paired differences)::

    from rso_lib.eval import power
    power.n_unpaired(effect=3.879 - 3.677, sd=0.8)            # users per system, unpaired
    power.n_two_proportions(0.980, 0.960)                     # users per system, two success rates
    power.n_paired(effect=0.2, sd_diff=0.6)                    # users, paired (sd of x_i - y_i)
    power.mde_paired(sd_diff=0.6, n=79)                        # smallest effect 79 users detect

    python -m rso_lib.eval.power                               # the paper's effects, unpaired

All formulas are the normal approximation for a two-sided test at level ``alpha`` with power
``power`` (defaults 0.05 and 0.8): ``z = z_{1 - alpha/2} + z_{power}``. Pairing helps by the
within-user correlation ``rho``: ``sd_diff^2 = sd_x^2 + sd_y^2 - 2 rho sd_x sd_y``.
"""

from __future__ import annotations

import argparse
import math
from statistics import NormalDist

ALPHA, POWER = 0.05, 0.8
#: An sd at or below this is "no variation seen" (float noise of a constant difference).
SD_EPS = 1e-9


def _z(alpha: float, power: float) -> float:
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must lie in (0, 1), got alpha={alpha}, power={power}")
    nd = NormalDist()
    return nd.inv_cdf(1 - alpha / 2) + nd.inv_cdf(power)


def mde_paired(sd_diff: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable effect of a paired comparison: the true mean difference that ``n`` users
    detect with probability ``power`` when the per-user differences have sd ``sd_diff``.
    NaN when ``n < 2`` or the sd is unknown (NaN) or 0 (no variation seen: nothing to plan from)."""
    if n < 2 or not sd_diff > SD_EPS:
        return math.nan
    return _z(alpha, power) * sd_diff / math.sqrt(n)


def n_paired(effect: float, sd_diff: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Users needed to detect a true mean difference ``effect`` with paired differences of sd
    ``sd_diff`` (``ceil((z sd_diff / effect)^2)``; a binary metric's ``sd_diff^2`` is the
    discordance rate minus ``effect^2``). NaN when the effect is 0 / NaN or the sd is not > 0."""
    if not (abs(effect) > 0 and sd_diff > SD_EPS):
        return math.nan
    return float(math.ceil((_z(alpha, power) * sd_diff / abs(effect)) ** 2))


def n_unpaired(effect: float, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Users per system for two independent means with a common per-user sd
    (``ceil(2 (z sd / effect)^2)``): the planning number before any paired data exists."""
    if not (abs(effect) > 0 and sd > 0):
        return math.nan
    return float(math.ceil(2 * (_z(alpha, power) * sd / abs(effect)) ** 2))


def n_two_proportions(p1: float, p2: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Users per system for two independent success rates (Bernoulli variances, unpooled:
    ``ceil(z^2 (p1 q1 + p2 q2) / (p1 - p2)^2)``)."""
    for p in (p1, p2):
        if not 0 <= p <= 1:
            raise ValueError(f"a success rate must lie in [0, 1], got {p}")
    if p1 == p2:
        return math.nan
    var = p1 * (1 - p1) + p2 * (1 - p2)
    return float(math.ceil(_z(alpha, power) ** 2 * var / (p1 - p2) ** 2))


def sd_diff_from_rho(sd_x: float, sd_y: float, rho: float) -> float:
    """The sd of paired differences from the two sds and the within-user correlation ``rho``."""
    if not -1 <= rho <= 1:
        raise ValueError(f"rho must lie in [-1, 1], got {rho}")
    return math.sqrt(max(sd_x**2 + sd_y**2 - 2 * rho * sd_x * sd_y, 0.0))


#: Planning sds of per-dialogue scores for the continuous metrics (1-5 judge scales): the issue's
#: working assumption, not a measurement; a run's own sds replace them in the claims table.
PLANNING_SD = {"WI": 0.8, "Cred": 1.0, "PRS": 0.3}
BINARY = ("Conv-SR", "Accept-SR", "Rec-SR", "Recall@1", "Recall@5")


def n_for_paper_effect(metric: str, a: float, b: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Users per system (unpaired planning) to detect the paper's difference ``a`` vs ``b`` on
    ``metric``: two proportions for a success rate, :data:`PLANNING_SD` for a judge score."""
    if metric in BINARY:
        return n_two_proportions(a, b, alpha, power)
    return n_unpaired(a - b, PLANNING_SD[metric], alpha, power)


def paper_plan(alpha: float = ALPHA, power: float = POWER):
    """One row per dataset and Table IV/V claim metric: RSO's number, the closest baseline the
    paper prints (LlamaCRS included), the gap and the users per system an unpaired design needs."""
    import pandas as pd

    from rso_lib.eval import paper_numbers as P

    rows = []
    for ds in P.DATASETS:
        for metric, table in (("WI", P.TABLE_IV), ("PRS", P.TABLE_IV), ("Cred", P.TABLE_IV), ("Conv-SR", P.TABLE_IV),
                              ("Rec-SR", P.TABLE_V), ("Recall@1", P.TABLE_V), ("Recall@5", P.TABLE_V)):  # fmt: skip
            rso = table[ds]["RSO"][metric]
            others = {s: v[metric] for s, v in table[ds].items() if s != "RSO"}
            closest = min(others, key=lambda s: abs(rso - others[s]))
            rows.append(
                {
                    "dataset": ds,
                    "metric": metric,
                    "RSO": rso,
                    "closest": closest,
                    "closest_value": others[closest],
                    "gap": round(rso - others[closest], 4),
                    "sd": "Bernoulli" if metric in BINARY else PLANNING_SD[metric],
                    "n_per_system": n_for_paper_effect(metric, rso, others[closest], alpha, power),
                }
            )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m rso_lib.eval.power",
        description="Users per system each paper claim needs (unpaired planning, normal approximation).",
    )
    ap.add_argument("--alpha", type=float, default=ALPHA)
    ap.add_argument("--power", type=float, default=POWER)
    a = ap.parse_args(argv)
    df = paper_plan(a.alpha, a.power)
    print(f"two-sided alpha = {a.alpha}, power = {a.power}; planning sd: {PLANNING_SD} (binary: Bernoulli)\n")
    print(df.to_markdown(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
