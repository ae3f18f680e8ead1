"""The matrix as a rich table: live while it runs, and once more at the end.

Cells that do not run here are grouped by reason below the table (a full
matrix collapses dozens of TCG combinations for the same reason); `--json`
and `--junit` list each one. A matrix with a lab host has a host column, and
a line per host below the table: its runs pooled, its loss rate, its lab's boot.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .results import CellResult, HostResult, LabRun, host_results
from .spec import LOCAL
from .stats import LOSS_RATE_DEFINITION, CellStats

IDS_SHOWN = 3


def percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def loss_cell(result: CellResult | HostResult) -> str:
    return loss_text(result.stats)


def loss_text(s: CellStats) -> str:
    if s.loss_rate is None or s.loss_ci95 is None:
        return "-"
    lo, hi = s.loss_ci95
    return f"{s.lost}/{s.n} {percent(s.loss_rate)} [{percent(lo)}, {percent(hi)}]"


def failed_cell(result: CellResult) -> str:
    s = result.stats
    others = {v: n for v, n in s.verdicts.items() if v not in ("verified", "mismatch")}
    return str(s.failed) + (" (" + ", ".join(f"{n} {v}" for v, n in sorted(others.items()))
                            + ")" if others else "")


def lab_text(lab: LabRun) -> str:
    """A lab's boot in a few words (pure)."""
    if lab.error is not None:
        return lab.error.partition("\n")[0]
    figures = [f"{lab.accel}" if lab.accel else "",
               f"boot {lab.boot_s:.1f} s" if lab.boot_s is not None else "",
               f"its matrix {lab.command_s:.0f} s" if lab.command_s is not None else "",
               f"wall {lab.wall_s:.0f} s" if lab.wall_s is not None else ""]
    return "one lab boot: " + ", ".join(f for f in figures if f)


def host_lines(hosts: list[HostResult]) -> list[Text]:
    """A line per host: its runs pooled, loss rate, lab (pure)."""
    lines = [Text("per host (every run of its cells pooled):", style="bold")]
    for h in hosts:
        s = h.stats
        lines.append(Text(
            f"  {h.host}: {h.cells - h.not_run} of {h.cells} cells run, {s.runs} runs, "
            f"{s.verified} verified, {s.lost} lost, {s.failed} failed; loss rate "
            f"{loss_text(s)}" + (f"; {lab_text(h.lab)}" if h.lab is not None else "")))
    return lines


def matrix_table(results: list[CellResult], repeat: int, current: str | None = None,
                 activity: str = "", title: str = "qmpctl matrix",
                 labs: Mapping[str, LabRun] | None = None) -> RenderableType:
    hosts = host_results(results, labs)
    with_host = any(h.host != LOCAL for h in hosts)
    table = Table(title=title, title_justify="left",
                  caption=LOSS_RATE_DEFINITION + "; inconcl.: of those, inconclusive",
                  caption_justify="left")
    columns = (("cell", "left"), *((("host", "left"),) if with_host else ()), ("runs", "right"),
               ("verified", "right"), ("lost", "right"), ("failed", "left"),
               ("inconcl.", "right"), ("loss rate [95% CI]", "left"), ("current", "left"))
    for name, justify in columns:
        # Narrow terminals fold the id rather than squeezing the counts away.
        table.add_column(name, justify=justify,
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
        host = (r.axes.get("host", LOCAL),) if with_host else ()
        table.add_row(Text(r.id, style=style), *host, f"{s.runs}/{repeat}", str(s.verified),
                      lost, failed_cell(r), str(s.inconclusive), loss_cell(r), now)
    lines = host_lines(hosts) if with_host else []
    if not not_run:
        return Group(table, *lines) if lines else table
    lines.append(Text(f"not run here: {sum(map(len, not_run.values()))} cells", style="bold"))
    for reason, ids in not_run.items():
        shown = ", ".join(ids[:IDS_SHOWN]) + (f" and {len(ids) - IDS_SHOWN} more"
                                              if len(ids) > IDS_SHOWN else "")
        lines.append(Text(f"  {len(ids)}: {reason}: {shown}"))
    return Group(table, *lines)
