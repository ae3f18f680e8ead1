"""What `qmpctl repro` reads: run reports, from files (one report, or a
`--repeat` array) or from kept run directories (`--artifacts DIR`, whose
report.json makes them qmpctl's; `--repeat`/`--until-fail` keep one
run-N/ per run). Bad input is a UsageError naming the path, before anything
is written."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..core.errors import UsageError
from ..core.model import Model
from ..report.models import RunReport
from ..report.write import ARTIFACTS_REPORT
from .plan import refusal

# What must be equal for runs to count towards one loss rate.
SAME_CELL = ("arch", "guest", "accel", "dirty_ring_size", "ram_mib", "smp", "transport",
             "topology", "qemu_src_version", "qemu_dst_version", "machine_type", "cpu",
             "workload", "min_passes", "throttle_bandwidth", "converge_downtime_ms",
             "migration_settings")


class LoadedRun(Model):
    """One run's report and where it was read."""

    source: str
    report: RunReport
    logs: str | None = None  # the run's kept directory (its QEMU logs), if it came from one


def _reports(path: Path) -> list[RunReport]:
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot be read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not a qmpctl report (not JSON: {exc})") from exc
    items = data if isinstance(data, list) else [data]
    if not items:
        raise UsageError(f"{path}: an empty list, no run report in it")
    try:
        return [RunReport.model_validate(item) for item in items]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UsageError(f"{path}: not a qmpctl run report ({where}: {first['msg']})") from exc


def load_path(path: Path) -> list[LoadedRun]:
    """The runs a REPORT file or a kept RUN_DIR holds."""
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    if path.is_file():
        return [LoadedRun(source=str(path), report=r) for r in _reports(path)]
    if not path.is_dir():
        raise UsageError(f"{path}: neither a report file nor a run directory")
    if (own := path / ARTIFACTS_REPORT).is_file():
        return [LoadedRun(source=str(own), report=r, logs=str(path)) for r in _reports(own)]
    runs = sorted((d for d in path.glob("run-*") if (d / ARTIFACTS_REPORT).is_file()),
                  key=lambda d: (len(d.name), d.name))
    if not runs:
        raise UsageError(f"{path}: not a qmpctl run directory (no {ARTIFACTS_REPORT}, nor "
                         f"run-N/{ARTIFACTS_REPORT}; `qmpctl migrate --artifacts DIR` "
                         "writes them)")
    return [run for d in runs for run in load_path(d)]


def load_runs(paths: Sequence[Path]) -> list[LoadedRun]:
    if not paths:
        raise UsageError("give a run directory (--artifacts DIR) or a report (--report FILE)")
    return [run for p in paths for run in load_path(p)]


def cell_difference(runs: Sequence[LoadedRun]) -> str | None:
    """Why these runs are not one configuration (one loss rate), or None (pure)."""
    configured = [r for r in runs if r.report.config is not None]
    if not configured:
        return None
    first = configured[0]
    assert first.report.config is not None
    for other in configured[1:]:
        assert other.report.config is not None
        for key in SAME_CELL:
            a, b = getattr(first.report.config, key), getattr(other.report.config, key)
            if a != b:
                return (f"{other.source} differs from {first.source} in {key} ({b!r} against "
                        f"{a!r}): runs of different configurations have no common loss rate")
    return None


def choose(runs: Sequence[LoadedRun]) -> LoadedRun:
    """The run to reproduce: the first that lost pages (UsageError: why none)."""
    if (why := cell_difference(runs)) is not None:
        raise UsageError(why)
    lost = [r for r in runs if r.report.verdict == "mismatch"]
    if lost:
        return lost[0]
    if len(runs) == 1:
        why = refusal(runs[0].report) or "it lost no page"
        raise UsageError(f"{runs[0].source}: cannot reproduce this run: {why}")
    verdicts = ", ".join(sorted({r.report.verdict for r in runs}))
    raise UsageError(f"none of the {len(runs)} runs lost pages ({verdicts}): nothing to "
                     "reproduce")
