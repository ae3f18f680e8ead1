"""The heat map's grid and colours, shared by `--plot` (PNG) and `--html`, so
the picture and the page always agree (pure).

Rows are features (FEATURES order), columns the configurations (the other
axes that vary, in the order the matrix ran them), as in the Markdown table;
with a single feature the grid is turned: a row per configuration.

A tile's colour says what its runs proved, so that nothing which proved
nothing looks like "0 % loss":

    loss          n > 0: green at 0 %, then yellow (a little) to dark red (all)
    inconclusive  runs, none compared, every one inconclusive (striped lilac)
    failed        runs, none compared, at least one failed otherwise (striped grey)
    interrupted   the matrix stopped before the cell's first run (grey)
    not-run       qmpctl did not run it here, with its reason (white)

A cell that --known-loss covers keeps its loss colour and is marked "known".
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..core.model import Model
from .features import FEATURES
from .results import CellResult, MatrixReport

# Column axes in the order they are named; a constant axis is left out.
COLUMN_AXES = ("arch", "accel", "tracking", "smp", "guest", "qemu", "host")

ShadeKind = Literal["loss", "inconclusive", "failed", "interrupted", "not-run"]

ZERO = "#1a9850"  # 0 % loss: green
LOW = "#fee08b"  # the least loss above 0: yellow, far from the green
HIGH = "#a50026"  # 100 %: dark red
FLAT = {"inconclusive": "#c9b8e8", "failed": "#6b6b6b", "interrupted": "#bdbdbd",
        "not-run": "#ffffff"}
KNOWN_MARK = "#1f4fa8"  # the border and badge of a --known-loss cell


class Shade(Model):
    """How one tile looks and what it says, for the PNG and the page alike."""

    kind: ShadeKind
    fill: str = Field(description="background colour, #rrggbb")
    ink: str = Field(description="text colour readable on the fill")
    striped: bool = Field(description="no run compared: drawn striped")
    known: bool = Field(description="--known-loss covers the cell")
    lines: list[str] = Field(description="the tile's text, a line each")


class Grid(Model):
    """The heat map: cells[row][column] is a cell of the report, or None where
    the matrix had no such combination."""

    row_axis: str = Field(description="'feature', or 'configuration' when turned")
    column_axis: str
    rows: list[str]
    columns: list[str]
    cells: list[list[CellResult | None]]


def _mix(a: str, b: str, t: float) -> str:
    """The colour t of the way from a to b (#rrggbb, linear in RGB)."""
    ca = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb, strict=True))


def loss_colour(rate: float) -> str:
    """Green for 0 %; above it, yellow to dark red by rate (pure)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"loss rate {rate}: must lie in [0, 1]")
    return ZERO if rate == 0.0 else _mix(LOW, HIGH, rate)


def ink_for(fill: str) -> str:
    """Black or white, whichever reads better on `fill` (relative luminance)."""
    r, g, b = (int(fill[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return "#000000" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "#ffffff"


def percent(x: float) -> str:
    return f"{x:.0%}"


def rate_lines(cell: CellResult) -> list[str]:
    """`lost/n lost`, `rate [lo, hi]`: the figures a tile shows (n > 0)."""
    s = cell.stats
    assert s.loss_rate is not None and s.loss_ci95 is not None
    lo, hi = s.loss_ci95
    return [f"{s.lost}/{s.n} lost", f"{percent(s.loss_rate)} [{percent(lo)}, {percent(hi)}]"]


def others(cell: CellResult) -> list[str]:
    """Every verdict but verified and mismatch, `N verdict`, most first."""
    rest = [(v, k) for v, k in cell.stats.verdicts.items() if v not in ("verified", "mismatch")]
    return [f"{k} {v}" for v, k in sorted(rest, key=lambda vk: (-vk[1], vk[0]))]


def shade(cell: CellResult) -> Shade:
    """The tile of one cell (pure; see the module docstring)."""
    s = cell.stats
    known = cell.known_loss is not None
    if cell.status == "not-run":
        return Shade(kind="not-run", fill=FLAT["not-run"], ink="#555555", striped=False,
                     known=known, lines=["not run"])
    if not s.runs:
        return Shade(kind="interrupted", fill=FLAT["interrupted"], ink="#000000",
                     striped=False, known=known, lines=["interrupted", "no run"])
    if s.loss_rate is None:
        kind: ShadeKind = "inconclusive" if s.inconclusive == s.runs else "failed"
        fill = FLAT[kind]
        return Shade(kind=kind, fill=fill, ink=ink_for(fill), striped=True, known=known,
                     lines=["no verdict", *others(cell)])
    fill = loss_colour(s.loss_rate)
    extra = others(cell)
    return Shade(kind="loss", fill=fill, ink=ink_for(fill), striped=False, known=known,
                 lines=[*rate_lines(cell), *([f"+ {', '.join(extra)}"] if extra else []),
                        *(["known loss"] if known and s.lost else [])])


def column_label(cell: CellResult, varying: tuple[str, ...]) -> str:
    """The configuration a cell belongs to, in the words of the axes that vary."""
    parts = []
    for axis in varying:
        value = cell.axes.get(axis, "")
        if axis == "tracking":  # TCG's own tracking is named by accel, when that varies
            value = {"tcg": "" if "accel" in varying else "tcg",
                     "ring": f"ring {cell.axes.get('ring', '')}"}.get(value, value)
        elif axis == "smp":
            value = f"{value} vCPU" + ("s" if value != "1" else "")
        if value:
            parts.append(value)
    return " ".join(parts)


def varying_axes(cells: list[CellResult]) -> tuple[str, ...]:
    """The column axes whose value differs between cells (ring sizes count as tracking)."""
    return tuple(a for a in COLUMN_AXES
                 if len({c.axes.get(a) for c in cells}) > 1
                 or (a == "tracking" and len({c.axes.get("ring") for c in cells}) > 1))


def grid(report: MatrixReport) -> Grid:
    """Features against configurations, or a row per configuration with a
    single feature (pure). A configuration with no varying axis is named by
    all of them."""
    varying = varying_axes(report.cells) or tuple(a for a in COLUMN_AXES if a != "host")
    columns: dict[str, dict[str, CellResult]] = {}
    for cell in report.cells:
        columns.setdefault(column_label(cell, varying), {})[cell.axes["feature"]] = cell
    features = [f for f in FEATURES if any(f in col for col in columns.values())]
    features += sorted({f for col in columns.values() for f in col} - set(features))
    if len(features) == 1:
        return Grid(row_axis="configuration", column_axis="feature", rows=list(columns),
                    columns=features, cells=[[col.get(features[0])] for col in columns.values()])
    return Grid(row_axis="feature", column_axis="configuration", rows=features,
                columns=list(columns),
                cells=[[col.get(f) for col in columns.values()] for f in features])
