"""`--plot PATH`: the loss rate of each cell that ran, with its 95 % Wilson
interval as error bars, so a 1-in-10 loss and a 1-in-1 loss on few runs do
not look alike. matplotlib (Agg) as for `qmpctl migrate --plot`. With a lab
host, each host has its own marker, and a row per host below the cells
gives its runs pooled.
"""

from __future__ import annotations

from pathlib import Path

from .results import MatrixReport, host_results
from .spec import LOCAL
from .stats import LOSS_RATE_DEFINITION, CellStats

MARKERS = {"local": "o", "lab-aarch64": "s", "lab-x86_64": "D"}


def plot_matrix(report: MatrixReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c for c in report.cells if c.runs]
    hosts = report.hosts or host_results(report.cells)
    pooled = [h for h in hosts if h.stats.runs] if any(h.host != LOCAL for h in hosts) else []
    # (label, stats, marker, colour): the cells, then each host's runs pooled
    rows: list[tuple[str, CellStats, str, str]] = [
        (c.id + (" (known loss)" if c.known_loss else ""), c.stats,
         MARKERS.get(c.axes.get("host", LOCAL), "o"),
         "tab:orange" if c.known_loss else "tab:red" if c.stats.lost else "tab:green")
        for c in cells]
    rows += [(f"all runs on {h.host} (pooled)", h.stats, MARKERS.get(h.host, "o"), "tab:blue")
             for h in pooled]
    height = max(2.5, 0.35 * len(rows) + 1.6)
    fig, ax = plt.subplots(figsize=(11, height))
    if not cells:
        ax.text(0.5, 0.5, "no cell ran", ha="center", transform=ax.transAxes)
    for y, (_, s, marker, colour) in enumerate(rows):
        if s.loss_rate is None or s.loss_ci95 is None:
            ax.annotate(f"no run compared ({s.runs} run(s): "
                        + ", ".join(f"{n} {v}" for v, n in s.verdicts.items()) + ")",
                        (0.01, y), va="center", fontsize=8, color="grey")
            continue
        lo, hi = s.loss_ci95
        ax.errorbar([s.loss_rate], [y], xerr=[[s.loss_rate - lo], [hi - s.loss_rate]],
                    fmt=marker, color=colour, capsize=4)
        ax.annotate(f"{s.lost}/{s.n}", (min(hi + 0.01, 0.93), y), va="center", fontsize=8)
    if pooled and cells:
        ax.axhline(len(cells) - 0.5, color="grey", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [label for label, *_ in rows], fontsize=8)
    ax.set_ylim(max(len(rows), 1) - 0.5, -0.5)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("loss rate (lost / n) with 95 % Wilson interval")
    ax.grid(axis="x", linestyle=":")
    not_run = sum(1 for c in report.cells if c.not_run is not None)
    ax.set_title(f"qmpctl matrix {report.source}: exit {report.exit_code}"
                 + (f", {not_run} cells not run here" if not_run else "")
                 + ("; interrupted" if report.interrupted else ""), fontsize=10)
    fig.text(0.01, 0.005, LOSS_RATE_DEFINITION + ("; markers: " + ", ".join(
        f"{MARKERS.get(h.host, 'o')} {h.host}" for h in hosts) if pooled else ""),
        fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
