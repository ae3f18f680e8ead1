"""The matrix as a rich table: live while it runs, and once more at the end.

Cells that do not run here are grouped by reason below the table (a full
matrix collapses dozens of TCG combinations for the same reason); `--json`
and `--junit` list each one.
"""

from __future__ import annotations

from collections import defaultdict

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .results import CellResult
from .stats import LOSS_RATE_DEFINITION

IDS_SHOWN = 3


def percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def loss_cell(result: CellResult) -> str:
    s = result.stats
    if s.loss_rate is None or s.loss_ci95 is None:
        return "-"
    lo, hi = s.loss_ci95
    return f"{s.lost}/{s.n} {percent(s.loss_rate)} [{percent(lo)}, {percent(hi)}]"


def failed_cell(result: CellResult) -> str:
    s = result.stats
    others = {v: n for v, n in s.verdicts.items() if v not in ("verified", "mismatch")}
    return str(s.failed) + (" (" + ", ".join(f"{n} {v}" for v, n in sorted(others.items()))
                            + ")" if others else "")


def matrix_table(results: list[CellResult], repeat: int, current: str | None = None,
                 activity: str = "", title: str = "qmpctl matrix") -> RenderableType:
    table = Table(title=title, title_justify="left",
                  caption=LOSS_RATE_DEFINITION + "; inconcl.: of those, inconclusive",
                  caption_justify="left")
    for name, justify in (("cell", "left"), ("runs", "right"), ("verified", "right"),
                          ("lost", "right"), ("failed", "left"), ("inconcl.", "right"),
                          ("loss rate [95% CI]", "left"), ("current", "left")):
        # Narrow terminals fold the id rather than squeezing the counts away.
        table.add_column(name, justify=justify,  # type: ignore[arg-type]
                         overflow="fold", min_width=30 if name == "cell" else None,
                         no_wrap=name == "loss rate [95% CI]")
    not_run: dict[str, list[str]] = defaultdict(list)
    for r in results:
        if r.not_run is not None:
            not_run[r.not_run].append(r.id)
            continue
        s = r.stats
        last = r.runs[-1].verdict if r.runs else ""
        now = activity if r.id == current else last
        lost = f"{s.lost}" + (" known" if r.known_loss and s.lost else "")
        style = ("red" if s.lost and not r.known_loss else "yellow" if s.lost or s.failed
                 else "green" if s.verified == repeat else "")
        table.add_row(Text(r.id, style=style), f"{s.runs}/{repeat}", str(s.verified), lost,
                      failed_cell(r), str(s.inconclusive), loss_cell(r), now)
    if not not_run:
        return table
    lines = [Text(f"not run here: {sum(map(len, not_run.values()))} cells", style="bold")]
    for reason, ids in not_run.items():
        shown = ", ".join(ids[:IDS_SHOWN]) + (f" and {len(ids) - IDS_SHOWN} more"
                                              if len(ids) > IDS_SHOWN else "")
        lines.append(Text(f"  {len(ids)}: {reason}: {shown}"))
    return Group(table, *lines)
