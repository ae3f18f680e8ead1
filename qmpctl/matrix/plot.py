"""`--plot PATH`: the loss rate of each cell that ran, with its 95 % Wilson
interval as error bars, so a 1-in-10 loss and a 1-in-1 loss on few runs do
not look alike. matplotlib (Agg) as for `qmpctl migrate --plot`.
"""

from __future__ import annotations

from pathlib import Path

from .results import MatrixReport
from .stats import LOSS_RATE_DEFINITION


def plot_matrix(report: MatrixReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c for c in report.cells if c.runs]
    height = max(2.5, 0.35 * len(cells) + 1.6)
    fig, ax = plt.subplots(figsize=(11, height))
    if not cells:
        ax.text(0.5, 0.5, "no cell ran", ha="center", transform=ax.transAxes)
    for y, cell in enumerate(cells):
        s = cell.stats
        if s.loss_rate is None or s.loss_ci95 is None:
            ax.annotate(f"no run compared ({s.runs} run(s): "
                        + ", ".join(f"{n} {v}" for v, n in s.verdicts.items()) + ")",
                        (0.01, y), va="center", fontsize=8, color="grey")
            continue
        lo, hi = s.loss_ci95
        colour = "tab:orange" if cell.known_loss else "tab:red" if s.lost else "tab:green"
        ax.errorbar([s.loss_rate], [y], xerr=[[s.loss_rate - lo], [hi - s.loss_rate]],
                    fmt="o", color=colour, capsize=4)
        ax.annotate(f"{s.lost}/{s.n}", (min(hi + 0.01, 0.93), y), va="center", fontsize=8)
    ax.set_yticks(range(len(cells)), [c.id + (" (known loss)" if c.known_loss else "")
                                      for c in cells], fontsize=8)
    ax.set_ylim(max(len(cells), 1) - 0.5, -0.5)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("loss rate (lost / n) with 95 % Wilson interval")
    ax.grid(axis="x", linestyle=":")
    not_run = sum(1 for c in report.cells if c.not_run is not None)
    ax.set_title(f"qmpctl matrix {report.source}: exit {report.exit_code}"
                 + (f", {not_run} cells not run here" if not_run else "")
                 + ("; interrupted" if report.interrupted else ""), fontsize=10)
    fig.text(0.01, 0.005, LOSS_RATE_DEFINITION, fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
