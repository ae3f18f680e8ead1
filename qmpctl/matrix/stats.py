"""Per-cell statistics: how many runs verified, lost pages, or failed
otherwise, and the loss rate with a 95 % Wilson score interval.

The loss rate is lost / n where n counts only the runs whose memory was
compared to a verdict (verified + mismatch): a run that failed before
comparing says nothing about loss either way. Wilson's interval rather than
the normal approximation because n is small and losses are often 0 or n,
where the normal interval collapses to a point.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from pydantic import Field

from ..core.model import Model

Z95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal

LOSS_RATE_DEFINITION = (
    "loss rate = lost / n, n = runs whose memory was compared to a verdict (verified + "
    "mismatch); 95 % Wilson score interval; failed = any other verdict")


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (pure)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"wilson({k}, {n}): need 0 <= k <= n and n > 0")
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Rounding can put a bound a hair past p itself (k = n gives 0.9999...).
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


class CellStats(Model):
    runs: int
    verified: int
    lost: int = Field(description="runs with verdict mismatch")
    failed: int = Field(description="runs with any other verdict (counts in `verdicts`)")
    inconclusive: int = Field(description="of `failed`, those inconclusive")
    verdicts: dict[str, int] = Field(description="every verdict and how many runs had it")
    n: int = Field(description="runs compared to a verdict: verified + lost")
    loss_rate: float | None = Field(None, description="lost / n; None when n = 0")
    loss_ci95: tuple[float, float] | None = Field(None, description="Wilson, 95 %")


def cell_stats(verdicts: Iterable[str]) -> CellStats:
    """The statistics of one cell's run verdicts (pure)."""
    tally = Counter(verdicts)
    runs = sum(tally.values())
    verified, lost = tally["verified"], tally["mismatch"]
    n = verified + lost
    return CellStats(runs=runs, verified=verified, lost=lost, failed=runs - n,
                     inconclusive=tally["inconclusive"], verdicts=dict(tally), n=n,
                     loss_rate=lost / n if n else None,
                     loss_ci95=wilson(lost, n) if n else None)


def fisher_exact(a_lost: int, a_n: int, b_lost: int, b_n: int) -> float:
    """Two-sided p-value of Fisher's exact test that two loss rates are equal
    (pure): the probability, with the margins fixed, of a split at least as
    unlikely as the observed one (hypergeometric; ties within 1e-7 relative,
    as R and SciPy count them). Exact, so right for the small n of a matrix
    cell, where a chi-squared test is not."""
    if not (0 <= a_lost <= a_n and 0 <= b_lost <= b_n) or not a_n or not b_n:
        raise ValueError(f"fisher_exact({a_lost}/{a_n}, {b_lost}/{b_n}): need 0 <= lost <= n "
                         "and n > 0 on both sides")
    lost, total = a_lost + b_lost, a_n + b_n
    every = math.comb(total, lost)

    def prob(k: int) -> float:  # k of the losses in A
        return math.comb(a_n, k) * math.comb(b_n, lost - k) / every

    observed = prob(a_lost)
    ks = range(max(0, lost - b_n), min(a_n, lost) + 1)
    return min(1.0, sum(p for k in ks if (p := prob(k)) <= observed * (1 + 1e-7)))


def interval_within(s: CellStats, width: float) -> bool:
    """The loss rate's interval is no wider than `width` (pure): enough runs
    to stop a `--repeat --until-ci`. Never with no run compared."""
    return s.loss_ci95 is not None and s.loss_ci95[1] - s.loss_ci95[0] <= width


def rate_text(s: CellStats) -> str:
    """`lost/n rate [lo, hi]`, or why there is none (pure)."""
    if s.loss_rate is None or s.loss_ci95 is None:
        return f"none (no run of {s.runs} compared to a verdict)"
    lo, hi = s.loss_ci95
    return f"{s.lost}/{s.n} {s.loss_rate:.1%} [{lo:.1%}, {hi:.1%}]"
