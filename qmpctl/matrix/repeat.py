"""A `qmpctl migrate --repeat N` (or one run) as a one-cell matrix report,
so its HTML page is drawn by the same code as a matrix's: one tile with the
loss rate and its interval, the runs, their first differing pages and
timelines. And reading a results file of either kind for `qmpctl html`.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from ..core.errors import UsageError
from ..host.kvm import KvmInfo
from ..report.models import RunConfig, RunReport
from .plan import MatrixHost
from .results import CellResult, MatrixReport, cell_result, record

NOT_RECORDED = "not recorded in a run report"


def migrate_exit(reports: list[RunReport]) -> int:
    """`qmpctl migrate`'s exit code over its runs: the first failing run's (pure)."""
    return next((r.exit_code for r in reports if r.exit_code != 0), 0)


def run_axes(config: RunConfig, features: list[str]) -> dict[str, str]:
    """The matrix axes a run's configuration amounts to (pure)."""
    tracking = {"kvm-dirty-ring": "ring", "kvm-dirty-bitmap": "bitmap"}.get(
        config.dirty_tracking, "tcg")
    return {"arch": config.arch, "accel": config.accel, "tracking": tracking,
            "ring": str(config.dirty_ring_size) if tracking == "ring" else "",
            "smp": str(config.smp), "guest": config.guest,
            "feature": "+".join(features) or "precopy",
            "qemu": f"{config.qemu_src_version}->{config.qemu_dst_version}"}


def run_cell(reports: list[RunReport]) -> CellResult:
    """The runs as one cell, named by the first configuration a run reported."""
    first = next((r for r in reports if r.config is not None), None)
    if first is None or first.config is None:
        axes = {"feature": "migrate"}
        cell_id = "qmpctl migrate (no run reached its configuration)"
    else:
        features = [] if first.migration is None else [f.feature for f in
                                                       first.migration.features]
        axes = run_axes(first.config, features)
        segment = {"tcg": "", "bitmap": "-bitmap"}.get(axes["tracking"], f"-ring{axes['ring']}")
        cell_id = (f"{axes['arch']}-{axes['accel']}{segment}-smp{axes['smp']}-{axes['guest']}-"
                   f"{axes['feature']}-{axes['qemu']}")
    runs = [record(r, i) for i, r in enumerate(reports, 1)]
    return cell_result(cell_id, axes, {}, runs, repeat=len(reports))


def repeat_report(reports: list[RunReport], command: list[str], host: MatrixHost,
                  wall_s: float, repeat: int) -> MatrixReport:
    """`reports` (in run order) as a matrix of one cell (pure). `repeat`: the
    runs asked for (--repeat, --until-fail, --bisect); fewer ran when one
    stopped it early."""
    if not reports:
        raise ValueError("repeat_report: no run report")
    code = migrate_exit(reports)
    tally = Counter(r.verdict for r in reports)
    failing = next((i for i, r in enumerate(reports, 1) if r.exit_code != 0), None)
    reason = (f"{len(reports)} of {repeat} run(s): "
              + ", ".join(f"{n} {v}" for v, n in tally.most_common())
              + ("" if failing is None else f"; exit from run {failing}"))
    return MatrixReport(
        qmpctl_version=reports[0].qmpctl_version, command=command,
        source=f"qmpctl migrate, {repeat} run(s) asked for", started_at=reports[0].started_at,
        wall_s=wall_s, host=host, repeat=repeat, exit_code=code, exit_reason=reason,
        interrupted=any(r.verdict == "interrupted" for r in reports),
        cells=[run_cell(reports)])


def report_host(reports: list[RunReport]) -> MatrixHost:
    """The host as far as run reports say it: their KVM, and QEMU versions;
    a run report names neither the host nor its kernel (they are said so)."""
    kvm = next((r.host for r in reports if r.host is not None), None)
    config = next((r.config for r in reports if r.config is not None), None)
    return MatrixHost(
        hostname=NOT_RECORDED, kernel=NOT_RECORDED, machine=NOT_RECORDED, cpus=None,
        kvm=kvm or KvmInfo(device="/dev/kvm", accessible=False, flavour="unknown",
                           error=NOT_RECORDED),
        qemu={} if config is None else {config.arch: [
            f"{config.qemu_src_version} {config.qemu_src}",
            *([f"{config.qemu_dst_version} {config.qemu_dst}"]
              if config.qemu_dst != config.qemu_src else [])]})


def load_results(path: Path) -> tuple[MatrixReport, str]:
    """A `qmpctl matrix --json` file, or a `qmpctl migrate --report` file (one
    report or a --repeat's list), as a matrix report and the page's title.
    UsageError, naming the file and what is wrong, for anything else."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from exc
    try:
        if isinstance(data, dict) and "cells" in data:
            report = MatrixReport.model_validate(data)
            return report, f"qmpctl matrix: {report.source}"
        if isinstance(data, dict) and "verdict" in data:
            data = [data]
        if isinstance(data, list) and data and all(isinstance(d, dict) and "verdict" in d
                                                   for d in data):
            reports = TypeAdapter(list[RunReport]).validate_python(data)
            wall = sum(r.timings_s.get("total", 0.0) for r in reports)
            return (repeat_report(reports, [f"(from {path})"], report_host(reports), wall,
                                  len(reports)),
                    f"qmpctl migrate: {len(reports)} run(s)")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{path}: not a qmpctl result: {where}: {first['msg']} "
                         f"({exc.error_count()} problem(s))") from exc
    raise UsageError(f"{path}: neither a `qmpctl matrix --json` result (an object with "
                     "\"cells\") nor a `qmpctl migrate --report` (a report with \"verdict\", "
                     "or a list of them)")
