"""`--plot PATH`: the matrix as a heat map, features against configurations,
each tile coloured by its loss rate and saying lost/n with the 95 % Wilson
interval, so a 1-in-10 loss and a 1-in-1 loss on few runs do not look alike.

The grid, colours and tile text are `heat`'s, the same as the `--html`
page's: the picture and the page always agree. A tile with no run compared
is striped (lilac: inconclusive, grey: failed), a cell not run here is white
and dashed, a --known-loss cell has a blue dashed border and a "K". With a
lab host, each host's pooled runs are one line under the map. matplotlib
(Agg) as for `qmpctl migrate --plot`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .heat import KNOWN_MARK, grid, shade
from .results import MatrixReport, host_results
from .spec import LOCAL
from .stats import LOSS_RATE_DEFINITION, rate_text

TILE_W, TILE_H = 1.55, 0.62  # inches per tile


def plot_matrix(report: MatrixReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    g = grid(report)
    rows, cols = max(len(g.rows), 1), max(len(g.columns), 1)
    hosts = report.hosts or host_results(report.cells)
    pooled = [h for h in hosts if h.stats.runs] if any(h.host != LOCAL for h in hosts) else []
    label_w = 0.1 + 0.075 * max((len(r) for r in g.rows), default=8)
    width = label_w + TILE_W * cols + 1.2  # room for the last slanted column label
    height = 1.6 + 0.45 + TILE_H * rows + 0.2 * len(pooled)
    fig = plt.figure(figsize=(max(width, 6.0), height))
    ax = fig.add_axes((label_w / max(width, 6.0), (0.35 + 0.2 * len(pooled)) / height,
                       TILE_W * cols / max(width, 6.0), TILE_H * rows / height))
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    for r, row in enumerate(g.cells):
        for c, cell in enumerate(row):
            if cell is None:
                continue
            s = shade(cell)
            ax.add_patch(Rectangle((c + 0.03, r + 0.05), 0.94, 0.9, facecolor=s.fill,
                                   edgecolor=KNOWN_MARK if s.known else "#888888",
                                   linewidth=2.0 if s.known else 0.8,
                                   linestyle="--" if s.known or s.kind == "not-run" else "-",
                                   hatch="///" if s.striped else None))
            ax.text(c + 0.5, r + 0.5, "\n".join(s.lines[:3]), ha="center", va="center",
                    fontsize=6.5, color=s.ink,
                    bbox={"facecolor": s.fill, "edgecolor": "none", "pad": 0.5}
                    if s.striped else None)
            if s.known:
                ax.text(c + 0.93, r + 0.12, "K", ha="right", va="top", fontsize=6,
                        color="white", fontweight="bold",
                        bbox={"facecolor": KNOWN_MARK, "edgecolor": "none", "pad": 0.8})
    ax.set_xticks([c + 0.5 for c in range(len(g.columns))], g.columns, fontsize=7,
                  rotation=30, ha="left")
    ax.xaxis.tick_top()
    ax.set_yticks([r + 0.5 for r in range(len(g.rows))], g.rows, fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if not report.cells:
        ax.text(cols / 2, rows / 2, "no cell", ha="center")
    not_run = sum(1 for c in report.cells if c.not_run is not None)
    fig.suptitle(f"qmpctl matrix {report.source}: exit {report.exit_code}"
                 + (f", {not_run} cells not run here" if not_run else "")
                 + ("; interrupted" if report.interrupted else ""), fontsize=10, x=0.01,
                 ha="left", y=1 - 0.12 / height)
    lines = [f"all runs on {h.host} (pooled): {rate_text(h.stats)}" for h in pooled]
    lines.append(LOSS_RATE_DEFINITION + "; green 0 %, yellow to red by loss rate; striped: "
                 "no run compared (lilac inconclusive, grey failed); dashed white: not run; "
                 "K: --known-loss")
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=6.5, color="#444444", va="bottom")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    """`python -m qmpctl.matrix.plot RESULTS.json OUT.png`: the heat map of a
    `--json` file written earlier (as `python -m qmpctl.matrix.markdown`)."""
    if len(argv) != 2:
        print("usage: python -m qmpctl.matrix.plot RESULTS.json OUT.png", file=sys.stderr)
        return 2
    plot_matrix(MatrixReport.model_validate_json(Path(argv[0]).read_text()), Path(argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
