"""Flaky or broken, and which is worse: two sets of matrix results side by
side, per cell, with a test of whether their loss rates differ.

`qmpctl compare A.json B.json` pairs the cells of two `qmpctl matrix --json`
files by id (two QEMU builds, two kernels, before and after a fix);
`qmpctl compare A.json` pairs the cells of one file's two hosts (the host
axis: this host's KVM against a lab's). Each pair gets Fisher's exact test
(`stats.fisher_exact`); whether a cell "differs" is decided with Holm's
step-down correction over the cells compared, so ten cells at 5 % do not
make one false alarm likely. The pooled row, every compared pair's runs
summed per side, is one test of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, ValidationError

from ..core.errors import UsageError
from ..core.model import Model
from .results import MatrixReport
from .spec import LOCAL
from .stats import CellStats, cell_stats, fisher_exact, rate_text

TEST = "Fisher's exact test, two-sided; a cell differs when Holm's step-down correction " \
       "over the cells compared keeps p below alpha"


class RateComparison(Model):
    """One cell (or the pool) on both sides."""

    cell: str
    a: CellStats | None = Field(description="None: side A has no such cell")
    b: CellStats | None
    p_value: float | None = Field(description="None when a side compared no run")
    differs: bool | None = Field(description="loss rates differ (after Holm); None: not tested")
    note: str


class Comparison(Model):
    a: str = Field(description="what side A is: a file, or a file's host")
    b: str
    alpha: float
    test: str = TEST
    cells: list[RateComparison]
    pooled: RateComparison

    @property
    def exit_code(self) -> int:
        """1 when a cell or the pool differs (as `diff` does), else 0."""
        return int(self.pooled.differs is True or any(c.differs for c in self.cells))


Pair = tuple[str, CellStats | None, CellStats | None]


def load_matrix(path: Path) -> MatrixReport:
    """A `qmpctl matrix --json` file, or a usage error naming what is wrong."""
    try:
        return MatrixReport.model_validate(json.loads(path.read_text()))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror}") from exc
    except (ValueError, ValidationError) as exc:
        raise UsageError(f"{path}: not a `qmpctl matrix --json` result "
                         f"({str(exc).splitlines()[0]})") from exc


def pairs_by_id(a: MatrixReport, b: MatrixReport) -> list[Pair]:
    """Cells of two files matched by id, A's order first (pure)."""
    left = {c.id: c.stats for c in a.cells}
    right = {c.id: c.stats for c in b.cells}
    return [(i, left.get(i), right.get(i)) for i in [*left, *(i for i in right if i not in left)]]


def hosts_of(m: MatrixReport) -> list[str]:
    return list(dict.fromkeys(c.axes.get("host", LOCAL) for c in m.cells))


def pairs_by_host(m: MatrixReport, host_a: str, host_b: str) -> list[Pair]:
    """One file's cells on `host_a` against the same cells on `host_b`, matched
    by their id without the host part (pure)."""
    known = hosts_of(m)
    for host in (host_a, host_b):
        if host not in known:
            raise UsageError(f"--hosts: {host!r} ran no cell in this file (its hosts: "
                             f"{', '.join(known)})")
    if host_a == host_b:
        raise UsageError(f"--hosts {host_a},{host_b}: name two different hosts")
    sides: dict[str, dict[str, CellStats]] = {host_a: {}, host_b: {}}
    for c in m.cells:
        host = c.axes.get("host", LOCAL)
        if host in sides:
            sides[host][c.id.removesuffix(f"@{host}")] = c.stats
    left, right = sides[host_a], sides[host_b]
    return [(i, left.get(i), right.get(i)) for i in [*left, *(i for i in right if i not in left)]]


def _untested(a: CellStats | None, b: CellStats | None) -> str | None:
    for side, stats in (("A", a), ("B", b)):
        if stats is None:
            return f"not compared: side {side} has no such cell"
        if stats.n == 0:
            return f"not compared: side {side} compared no run to a verdict ({stats.runs} runs)"
    return None


def holm(p_values: list[float], alpha: float) -> list[bool]:
    """Holm's step-down: which of the hypotheses are rejected at family-wise
    level `alpha` (pure)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


def compare_rates(pairs: list[Pair], a: str, b: str, alpha: float = 0.05) -> Comparison:
    """Each pair tested, the verdicts corrected together, and the pool (pure)."""
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha {alpha:g}: must be between 0 and 1")
    rows, tested = [], []
    for cell, sa, sb in pairs:
        why = _untested(sa, sb)
        p = (fisher_exact(sa.lost, sa.n, sb.lost, sb.n)
             if why is None and sa is not None and sb is not None else None)
        rows.append(RateComparison(cell=cell, a=sa, b=sb, p_value=p, differs=None,
                                   note=why or ""))
        if p is not None:
            tested.append(len(rows) - 1)
    for i, rejected in zip(tested, holm([rows[i].p_value or 0.0 for i in tested], alpha),
                           strict=True):
        rows[i].differs = rejected
        rows[i].note = ("the loss rates differ" if rejected
                        else "no evidence that the loss rates differ")
    pool = [(rows[i].a, rows[i].b) for i in tested]
    pooled = RateComparison(cell="pooled (cells compared on both sides)", a=None, b=None,
                            p_value=None, differs=None, note="not compared: no cell was")
    if pool:
        pa = _pooled([s for s, _ in pool])
        pb = _pooled([s for _, s in pool])
        p = fisher_exact(pa.lost, pa.n, pb.lost, pb.n)
        pooled = RateComparison(cell=pooled.cell, a=pa, b=pb, p_value=p, differs=p < alpha,
                                note="the loss rates differ" if p < alpha
                                else "no evidence that the loss rates differ")
    return Comparison(a=a, b=b, alpha=alpha, cells=rows, pooled=pooled)


def _pooled(stats: list[CellStats | None]) -> CellStats:
    verdicts = [v for s in stats if s is not None for v, k in s.verdicts.items()
                for _ in range(k)]
    return cell_stats(verdicts)


def _rate(s: CellStats | None) -> str:
    return "-" if s is None else rate_text(s)


def render_markdown(c: Comparison) -> str:
    """The comparison as a Markdown table, the test named under it (pure)."""
    lines = [f"| cell | A: {c.a} | B: {c.b} | p | |", "| --- | --- | --- | --- | --- |"]
    for row in [*c.cells, c.pooled]:
        p = "" if row.p_value is None else f"{row.p_value:.3g}"
        mark = f"**{row.note}**" if row.differs else row.note
        lines.append(f"| {row.cell} | {_rate(row.a)} | {_rate(row.b)} | {p} | {mark} |")
    lines.append("")
    lines.append(f"loss rate = lost / n (runs compared to a verdict), 95 % Wilson interval; "
                 f"{c.test}, alpha {c.alpha:g}; the pooled row is one test of its own.")
    return "\n".join(lines) + "\n"
