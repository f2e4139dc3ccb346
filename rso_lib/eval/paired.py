"""Paired comparisons of two systems evaluated on the same simulated users.

Every system of a run talks to the same users (the same targets, the same seed), so a comparison
is made on the per-user difference ``d_i = x_i - y_i`` (``x``: the claim's system, ``y``: its
comparator). Pairing removes the between-user variance both systems share, which is what makes
small differences detectable at the kit's sample sizes.

* :func:`pair` -- the users both sides have a value for (a user missing on either side is left out
  of the comparison, and counted).
* :func:`compare` -- effect, paired 95% bootstrap CI and a two-sided p-value against a null
  difference ``delta0`` (0 for "better", ``-margin`` for "not worse"): the exact McNemar test
  (binomial on the discordant pairs) for a binary metric at ``delta0 == 0``, Tango's score test for
  a binary metric against a margin, and a sign-flip permutation test for a continuous metric.
* :func:`holm` and :func:`benjamini_hochberg` -- adjusted p-values for a family of tests.
* :func:`at_bound` -- is a sample all at the floor or ceiling of its metric?

Only numpy and the standard library: nothing here runs a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

#: Exact sign-flip enumeration up to this many non-zero differences (2**n sign patterns).
EXACT_FLIP_MAX_N = 14
CORRECTIONS = ("holm", "bh")


@dataclass
class Paired:
    """The users both sides have a value for, in one order."""

    x: np.ndarray  # the claim's system (e.g. RSO)
    y: np.ndarray  # the comparator
    ids: list  # the pairing keys, one per pair
    dropped_x: int  # users with a value on the comparator's side only
    dropped_y: int  # users with a value on the system's side only

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def d(self) -> np.ndarray:
        return self.x - self.y


def pair(x: pd.Series, y: pd.Series) -> Paired:
    """Pair two per-user series indexed by the pairing key (dialogue id, or "id|seed").

    A user enters the comparison only if both sides have a finite value; the users left out on
    account of each side are counted (never dropped on one side only). Pairs come in key order.
    Raises ValueError on a duplicated key (a pairing must be one-to-one)."""
    kx, ky = np.asarray(x.index, dtype=str), np.asarray(y.index, dtype=str)
    for name, k in (("x", kx), ("y", ky)):
        u, c = np.unique(k, return_counts=True)
        if (c > 1).any():
            raise ValueError(f"pair: duplicated pairing key {str(u[c > 1][0])!r} on side {name}")
    vx = pd.to_numeric(x, errors="coerce").to_numpy(dtype=float)
    vy = pd.to_numeric(y, errors="coerce").to_numpy(dtype=float)
    keys, ix, iy = np.intersect1d(kx, ky, assume_unique=True, return_indices=True)
    xv, yv = vx[ix], vy[iy]
    okx, oky = ~np.isnan(xv), ~np.isnan(yv)
    ok = okx & oky
    return Paired(
        x=xv[ok],
        y=yv[ok],
        ids=list(keys[ok]),
        dropped_x=int((~okx & oky).sum()),
        dropped_y=int((okx & ~oky).sum()),
    )


def is_binary(*arrays: np.ndarray) -> bool:
    """True when every value is 0 or 1 (a success rate: Conv-SR, Accept-SR, Rec-SR, Recall@k)."""
    return all(np.isin(a, (0.0, 1.0)).all() for a in arrays)


def paired_bootstrap_ci(
    d: np.ndarray, rng: np.random.Generator, n_boot: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap CI of ``mean(d)``, users resampled (each user's pair stays together)."""
    if len(d) == 0:
        return (math.nan, math.nan)
    means = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def sign_flip_p(d: np.ndarray, delta0: float, rng: np.random.Generator, n_perm: int = 5000) -> float:
    """Two-sided sign-flip permutation p-value for H0: the paired differences are symmetric about
    ``delta0`` (so their mean is ``delta0``).

    The statistic is ``|sum(d - delta0)|``; under H0 each centred difference is equally likely to
    carry either sign. With at most :data:`EXACT_FLIP_MAX_N` non-zero centred differences every
    sign pattern is enumerated (exact); otherwise ``n_perm`` random patterns, with the observed
    pattern counted among them (``(1 + hits) / (1 + n_perm)``, never 0)."""
    c = np.asarray(d, dtype=float) - delta0
    c = c[np.abs(c) > 1e-12]
    if len(c) == 0:
        return 1.0
    obs = abs(c.sum()) - 1e-9
    if len(c) <= EXACT_FLIP_MAX_N:
        signs = 1 - 2 * ((np.arange(2 ** len(c))[:, None] >> np.arange(len(c))) & 1)
        return float((np.abs(signs @ c) >= obs).mean())
    signs = rng.choice((-1.0, 1.0), size=(n_perm, len(c)))
    hits = int((np.abs(signs @ c) >= obs).sum())
    return (1 + hits) / (1 + n_perm)


def mcnemar_exact_p(b: int, c: int) -> float:
    """Exact McNemar test, two-sided: under H0 (equal success rates) the ``b`` pairs where only
    the system succeeds are Binomial(b + c, 1/2) among the ``b + c`` discordant pairs. Returns
    ``min(1, 2 * P(B <= min(b, c)))``; 1.0 when no pair is discordant."""
    m = b + c
    if m == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2**m
    return min(1.0, 2 * tail)


def tango_p(b: int, c: int, n: int, delta0: float) -> float:
    """Tango's (1998) score test for paired proportions, two-sided, H0: ``p_b - p_c = delta0``
    (``b``: pairs where only the system succeeds, ``c``: only the comparator, ``n`` pairs).

    The variance of ``b - c`` is taken at the maximum-likelihood cell probabilities under H0:
    with ``q = p_c`` and ``p_b = q + delta0``, ``q`` solves ``2n q^2 + B q + C = 0`` with
    ``B = -b - c + (2n - b + c) delta0`` and ``C = -c delta0 (1 - delta0)``; then
    ``Z = (b - c - n delta0) / sqrt(n (2q + delta0 - delta0^2))``. Used for the non-inferiority
    margin of a binary metric, where McNemar (a test of equality) does not apply."""
    if n == 0:
        return 1.0
    a2, bq, cq = 2 * n, -b - c + (2 * n - b + c) * delta0, -c * delta0 * (1 - delta0)
    q = (-bq + math.sqrt(max(bq * bq - 4 * a2 * cq, 0.0))) / (2 * a2)
    var = n * (2 * q + delta0 - delta0 * delta0)
    num = b - c - n * delta0
    if var <= 1e-12:
        return 1.0 if abs(num) < 1e-12 else 0.0
    z = num / math.sqrt(var)
    return min(1.0, 2 * (1 - NormalDist().cdf(abs(z))))


@dataclass
class Comparison:
    """One paired comparison: the effect ``mean(x - y)``, its CI and a two-sided p-value."""

    n: int
    effect: float
    lo: float
    hi: float
    p: float
    test: str
    sd_diff: float  # sd of the per-user differences (what the power functions need)
    mean_x: float
    mean_y: float


def compare(
    p: Paired, rng: np.random.Generator, delta0: float = 0.0, n_boot: int = 2000, n_perm: int = 5000
) -> Comparison:
    """Effect, paired 95% bootstrap CI and two-sided p-value against ``mean(d) == delta0``.

    Binary metrics: exact McNemar at ``delta0 == 0``, Tango's score test otherwise; continuous
    metrics: the sign-flip permutation test. With no pair, every number is NaN."""
    if p.n == 0:
        return Comparison(0, *(math.nan,) * 4, "none", math.nan, math.nan, math.nan)
    d = p.d
    lo, hi = paired_bootstrap_ci(d, rng, n_boot)
    if is_binary(p.x, p.y):
        b, c = int(((p.x == 1) & (p.y == 0)).sum()), int(((p.x == 0) & (p.y == 1)).sum())
        if abs(delta0) < 1e-12:
            pv, test = mcnemar_exact_p(b, c), "exact McNemar"
        else:
            pv, test = tango_p(b, c, p.n, delta0), "Tango score (margin)"
    else:
        pv, test = sign_flip_p(d, delta0, rng, n_perm), "sign-flip permutation"
    sd = float(d.std(ddof=1)) if p.n > 1 else math.nan
    return Comparison(p.n, float(d.mean()), lo, hi, pv, test, sd, float(p.x.mean()), float(p.y.mean()))


def _sorted_finite(p: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p as floats, an all-NaN output, indices of the non-NaN p in ascending order)``: the
    family an adjustment runs over (NaN = a comparison that was not made)."""
    p = np.asarray(p, dtype=float)
    idx = np.flatnonzero(~np.isnan(p))
    return p, np.full(len(p), np.nan), idx[np.argsort(p[idx], kind="stable")]


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate). NaN entries stay NaN and do
    not count towards the family size."""
    p, out, order = _sorted_finite(p)
    m = len(order)
    if m == 0:
        return out
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg step-up adjusted p-values (false discovery rate, independent or
    positively dependent tests). NaN entries stay NaN and do not count."""
    p, out, order = _sorted_finite(p)
    m = len(order)
    if m == 0:
        return out
    raw = p[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(np.minimum.accumulate(raw[::-1])[::-1], 1.0)
    return out


def adjust(p: Sequence[float], method: str) -> np.ndarray:
    """Adjusted p-values by ``method``: ``"holm"`` (FWER) or ``"bh"`` (FDR)."""
    if method == "holm":
        return holm(p)
    if method == "bh":
        return benjamini_hochberg(p)
    raise ValueError(f"correction must be one of {CORRECTIONS}, got {method!r}")


def at_bound(v: np.ndarray, bounds: tuple[float, float] | None) -> str | None:
    """``"floor"`` / ``"ceiling"`` when every value sits at the metric's lower / upper bound (a
    comparator there cannot be beaten / cannot be matched from above: a "not worse" or "better"
    verdict against it says little), else None."""
    if bounds is None or len(v) == 0:
        return None
    if np.all(np.abs(v - bounds[0]) < 1e-9):
        return "floor"
    if np.all(np.abs(v - bounds[1]) < 1e-9):
        return "ceiling"
    return None
