"""`--junit PATH`: JUnit XML (xml.etree) for CI, one testcase per cell and repeat.

* verified: a passing testcase;
* lost pages (mismatch): `<failure type="mismatch">`, the message saying what
  differs and where; a loss --known-loss covers is still a failure, its
  message starting with `known loss (EXPR)`, so a CI view never shows it green;
* migration-failed, guest-failed, inconclusive: `<failure>` with the report's
  error (inconclusive: its reasons);
* environment-error, error, interrupted, usage-error: `<error>`, the run could not
  say anything;
* a cell not run here: one `<skipped>` testcase with the reason; repeats a
  Ctrl-C prevented: `<skipped>` saying so.

Each testcase carries the cell's axes and the run's figures as properties;
the suite, qmpctl's version.
A cell on a lab host has the classname `qmpctl.matrix.<host>` (a CI view
groups each host's runs), and a lab that failed is an `<error>` testcase of
its own; the suite's properties give each host's pooled loss rate.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .results import CellResult, MatrixReport, RunRecord, host_results
from .spec import LOCAL
from .table import loss_text

FAILURES = ("mismatch", "migration-failed", "guest-failed", "inconclusive")
CLASSNAME = "qmpctl.matrix"


def _case(suite: ET.Element, name: str, cell: CellResult, seconds: float | None = None,
          ) -> ET.Element:
    host = cell.axes.get("host", LOCAL)
    case = ET.SubElement(suite, "testcase", name=name, time=f"{seconds or 0:.3f}",
                         classname=CLASSNAME if host == LOCAL else f"{CLASSNAME}.{host}")
    props = ET.SubElement(case, "properties")
    for axis, value in cell.axes.items():
        ET.SubElement(props, "property", name=f"axis_{axis}", value=value)
    return case


def _message(run: RunRecord) -> tuple[str, str]:
    """(failure/error tag, message)."""
    tag = "failure" if run.verdict in FAILURES else "error"
    if run.verdict == "mismatch":
        text = run.mismatch or "mismatch"
        if run.known_loss:
            text = f"known loss (--known-loss {run.known_loss}): {text}"
    elif run.verdict == "inconclusive":
        text = "; ".join(run.inconclusive) or "inconclusive"
    else:
        text = run.error or run.verdict
    return tag, f"{run.verdict}: {text}"


def junit_tree(report: MatrixReport) -> ET.ElementTree:
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name="qmpctl matrix", timestamp=report.started_at,
                          hostname=report.host.hostname)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    hosts = report.hosts or host_results(report.cells)
    suite_props = ET.SubElement(suite, "properties")
    ET.SubElement(suite_props, "property", name="qmpctl_version", value=report.qmpctl_version)
    if len(hosts) > 1 or any(h.host != LOCAL for h in hosts):
        for h in hosts:
            ET.SubElement(suite_props, "property", name=f"host {h.host}",
                          value=f"{h.stats.runs} runs, {h.stats.verified} verified, "
                                f"{h.stats.lost} lost; loss rate {loss_text(h.stats)}")
    for h in report.fleet.hosts if report.fleet is not None else ():
        ET.SubElement(suite_props, "property", name=f"worker {h.host}",
                      value=f"{h.stats.runs} runs, {h.stats.verified} verified, "
                            f"{h.stats.lost} lost; loss rate {loss_text(h.stats)}")
    for h in hosts:
        if h.lab is not None and h.lab.error is not None:
            case = ET.SubElement(suite, "testcase", classname=f"{CLASSNAME}.{h.host}",
                                 name=f"{h.host} lab", time=f"{h.lab.wall_s or 0:.3f}")
            ET.SubElement(case, "error", message=h.lab.error.partition("\n")[0],
                          type="environment-error").text = h.lab.error
            counts["tests"] += 1
            counts["errors"] += 1
    for cell in report.cells:
        if cell.not_run is not None:
            case = _case(suite, cell.id, cell)
            ET.SubElement(case, "skipped", message=f"not run: {cell.not_run}")
            counts["tests"] += 1
            counts["skipped"] += 1
            continue
        for run in cell.runs:
            case = _case(suite, f"{cell.id} #{run.repeat}", cell, run.seconds)
            props = case.find("properties")
            assert props is not None
            for key in ("verdict", "exit_code", "pages_compared", "pages_differing", "worker"):
                if (value := getattr(run, key)) is not None:
                    ET.SubElement(props, "property", name=key, value=str(value))
            counts["tests"] += 1
            if run.verdict == "verified":
                continue
            tag, message = _message(run)
            ET.SubElement(case, tag, message=message, type=run.verdict).text = message
            counts["failures" if tag == "failure" else "errors"] += 1
        for missing in range(len(cell.runs) + 1, report.repeat + 1):
            case = _case(suite, f"{cell.id} #{missing}", cell)
            counts["tests"] += 1
            if cell.infrastructure is not None:  # a fleet's workers died under it
                ET.SubElement(case, "error", message=f"infrastructure: {cell.infrastructure}",
                              type="infrastructure")
                counts["errors"] += 1
                continue
            ET.SubElement(case, "skipped", message="not run: the matrix was interrupted")
            counts["skipped"] += 1
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{report.wall_s:.3f}")
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(report: MatrixReport, path: Path) -> None:
    junit_tree(report).write(path, encoding="utf-8", xml_declaration=True)
