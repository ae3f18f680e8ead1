"""A matrix's results as one Markdown table: a row per feature, a column per
configuration (the other axes), each entry the cell's verdicts.

This is how the results tables in docs/results.md are made, from the `--json` file a
run wrote (`qmpctl matrix --markdown PATH`, or `python -m
qmpctl.matrix.markdown RESULTS.json` for a file written earlier), so the
table cannot drift from the run it quotes. With more than one host, the
host is part of each configuration (the same cell on `local` and in a lab
are adjacent columns) and a second table gives each host's pooled loss rate.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .features import FEATURES
from .heat import column_label, varying_axes
from .results import CellResult, MatrixReport, host_results
from .table import lab_text, loss_text


def entry(cell: CellResult) -> str:
    """`verified/runs`, then lost runs (bold) and every other verdict (pure)."""
    if cell.status == "not-run":
        return "not run"
    s = cell.stats
    if not s.runs:
        return ""
    text = f"{s.verified}/{s.runs}"
    if s.lost:
        text += f", **{s.lost} lost**"
    others = sorted((v, n) for v, n in s.verdicts.items() if v not in ("verified", "mismatch"))
    return text + "".join(f", {n} {v}" for v, n in others)


def feature_table(report: MatrixReport) -> str:
    """Rows: features in FEATURES order; columns: configurations in the
    order the matrix ran them; a cell the matrix did not have is blank.
    With a single feature, a row per configuration instead (pure)."""
    varying = varying_axes(report.cells)
    columns: dict[str, dict[str, str]] = {}
    for cell in report.cells:
        columns.setdefault(column_label(cell, varying), {})[cell.axes["feature"]] = entry(cell)
    features = [f for f in FEATURES if any(f in col for col in columns.values())]
    if len(features) == 1:  # one feature: a row per configuration reads better
        lines = [f"| configuration | {features[0]} |", "| --- | --- |"]
        lines += [f"| {name} | {col.get(features[0], '')} |" for name, col in columns.items()]
        return "\n".join(lines) + "\n" + host_table(report)
    lines = ["| feature | " + " | ".join(columns) + " |",
             "| --- |" + " --- |" * len(columns)]
    lines += [f"| {f} | " + " | ".join(col.get(f, "") for col in columns.values()) + " |"
              for f in features]
    return "\n".join(lines) + "\n" + host_table(report)


def host_table(report: MatrixReport) -> str:
    """With more than one host: a row per host, its runs pooled (pure)."""
    hosts = report.hosts or host_results(report.cells)
    if len(hosts) < 2:
        return ""
    lines = ["", "| host | cells run | runs | verified | lost | loss rate [95% CI] | lab |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {h.host} | {h.cells - h.not_run}/{h.cells} | {h.stats.runs} | "
              f"{h.stats.verified} | {h.stats.lost} | {loss_text(h.stats)} | "
              f"{'' if h.lab is None else lab_text(h.lab).replace('|', '/')} |" for h in hosts]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m qmpctl.matrix.markdown RESULTS.json", file=sys.stderr)
        return 2
    report = MatrixReport.model_validate_json(Path(argv[0]).read_text())
    sys.stdout.write(feature_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
