"""`--html PATH`: a matrix's (or a `migrate --repeat`'s) results as one
self-contained page, for people who will not install qmpctl to read them.

No server and no network: CSS, the few lines of JavaScript and the SVG
timelines are inline, so the file can be attached to a bug report. The heat
map's tiles come from `heat` (the same grid and colours as `--plot`); each
opens its cell: every run with its verdict, the first differing pages and
the migration's timeline. Jinja2 renders it with autoescaping on, so no
string from a report (a QEMU error, a reason, a cell id) can become markup.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import Field

from ..core.model import Model
from ..report.write import write_report
from .heat import FLAT, HIGH, KNOWN_MARK, LOW, ZERO, grid, shade
from .results import CellResult, MatrixReport, RunTimeline, host_results
from .stats import rate_text

PLOT_W, PLOT_H, PAD = 440.0, 120.0, 28.0  # the timeline SVG, in px


class Marker(Model):
    """A moment on a timeline: a vertical line with its name."""

    x: float
    t_s: float
    label: str


class TimelineFigure(Model):
    """A run's timeline as SVG coordinates: data left remaining per pass
    against seconds since the migration started, with the moments that
    place a loss (postcopy, last ring reap, final flush, VM stop)."""

    width: float = PLOT_W
    height: float = PLOT_H
    pad: float = PAD
    points: list[tuple[float, float]] = Field(description="(x, y) px, one per pass")
    passes: list[tuple[float, float, int, float, float]] = Field(
        description="(x, y, pass, seconds, MiB remaining) per sample, for their titles")
    markers: list[Marker]
    t_max: float
    mib_max: float


def timeline_figure(t: RunTimeline) -> TimelineFigure | None:
    """The SVG coordinates of a run's timeline, None with nothing to draw (pure)."""
    ring = t.ring
    moments: list[tuple[float | None, str]] = []
    if t.postcopy_at_pass is not None:
        at = next((p.elapsed_s for p in t.passes if p.pass_no >= t.postcopy_at_pass), None)
        moments.append((at, f"postcopy (pass {t.postcopy_at_pass})"))
    if ring is not None:
        moments += [(ring.last_reap_s, "last reap"), (ring.final_flush_s, "final flush"),
                    (ring.vm_stop_s, "VM stop"), (ring.completed_s, "completed")]
    times = [p.elapsed_s for p in t.passes] + [s for s, _ in moments if s is not None]
    if not times:
        return None
    t_max = max(max(times), 1e-3)
    mib = [p.remaining / (1 << 20) for p in t.passes]
    mib_max = max([*mib, 1e-3])

    def x(s: float) -> float:
        return round(PAD + (PLOT_W - 2 * PAD) * max(s, 0.0) / t_max, 1)

    def y(m: float) -> float:
        return round(PLOT_H - PAD - (PLOT_H - 2 * PAD) * m / mib_max, 1)

    return TimelineFigure(
        points=[(x(p.elapsed_s), y(m)) for p, m in zip(t.passes, mib, strict=True)],
        passes=[(x(p.elapsed_s), y(m), p.pass_no, p.elapsed_s, round(m, 1))
                for p, m in zip(t.passes, mib, strict=True)],
        markers=[Marker(x=x(s), t_s=s, label=label) for s, label in moments if s is not None],
        t_max=t_max, mib_max=mib_max)


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("qmpctl.matrix", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["rate"] = rate_text
    env.globals.update(shade=shade, timeline_figure=timeline_figure)
    return env


def verdict_counts(cells: list[CellResult]) -> list[tuple[str, int]]:
    """Every verdict over every run, most first (pure)."""
    tally = Counter(r.verdict for c in cells for r in c.runs)
    return sorted(tally.items(), key=lambda vk: (-vk[1], vk[0]))


def render_html(report: MatrixReport, title: str) -> str:
    """The page (pure: the same report gives the same text)."""
    hosts = report.hosts or host_results(report.cells)
    not_run: dict[str, list[str]] = {}
    for c in report.cells:
        if c.not_run is not None:
            not_run.setdefault(c.not_run, []).append(c.id)
    return _environment().get_template("report.html.j2").render(
        r=report, title=title, grid=grid(report),
        hosts=hosts if len(hosts) > 1 else [], not_run=not_run,
        totals=verdict_counts(report.cells), runs=sum(len(c.runs) for c in report.cells),
        colours={"zero": ZERO, "low": LOW, "high": HIGH, "known": KNOWN_MARK, **FLAT})


def write_html(report: MatrixReport, path: Path, title: str) -> None:
    """Render and write; ReportUnwritten when the file cannot be written."""
    write_report(path, render_html(report, title), "--html")
