"""The host axis's labs: every cell of a lab host runs in one boot of that lab.

A matrix whose cells name `lab-aarch64` or `lab-x86_64` boots each of those
labs once, after this host's own cells (`lab.suite.run_command`, as the
pytest plugin's lab delegation does), and runs all of that host's cells
there as one `qmpctl matrix --lab-job FILE`: the same spec and the same cell
ids, which inside the lab are that lab's own cells (`plan(here=HOST)`). Its
`--json` comes back and is merged (`merge_lab`): each cell's runs, or the
lab's own reason for not running it. While it runs, its console's progress
lines (`CELL #N: VERDICT`) feed the live table.

Before anything starts (`lab_check`): a lab host whose image is not built,
or (inside a lab) another lab, and a cell naming a QEMU version its lab does
not have (a lab has only its own QEMU, the version in its manifest), are not
run, saying so. A lab that fails (does not boot, times out, writes no
results) leaves its cells without runs and is an environment error (exit 3).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pydantic import Field, ValidationError

from ..core.errors import QmpctlError, UsageError
from ..core.model import Model
from ..guests.images import images_dir
from ..host.kvm import Arch
from ..lab.image import find_image
from ..lab.suite import IN_LAB, lab_available, run_command
from .cells import Cell
from .plan import CellCheck
from .results import LabRun, MatrixReport, RunRecord
from .spec import HostAxis, MatrixSpec, lab_arch, parse_spec

LAB_JOB_OPTION = "--lab-job"
RUN_BOUND_S = 120.0  # per run beyond its own timeouts: QEMU start, compare, cleanup (nested)
LAB_BOUND_S = 600.0  # per lab: packing, boot, shutdown
PROGRESS = re.compile(r"^(?P<id>\S+) #(?P<repeat>\d+): (?P<verdict>[A-Z][A-Z-]*)\b")
TAIL_LINES = 12


class LabJob(Model):
    """What a lab's `qmpctl matrix --lab-job FILE` runs: the outer matrix's
    spec as it was given (unset fields left out, so it expands identically),
    and which of its cells are this lab's."""

    host: HostAxis
    source: str = Field(description="the outer matrix's preset or --axes file")
    repeat: int = Field(ge=1)
    cells: list[str] = Field(description="cell ids, all on `host`")
    spec: dict[str, Any]


@dataclass
class LabBatch:
    """One lab boot's outcome: its figures, and its matrix's report (None:
    the lab failed, `lab.error` says how)."""

    lab: LabRun
    report: MatrixReport | None


LabFn = Callable[[str, list[Cell], int, Callable[[str], object]], Awaitable[LabBatch]]


# --- planning (before anything starts) -------------------------------------------------------


def _same_version(wanted: str, have: str) -> bool:
    """`10.0` is `10.0.2`; `10.0.2` is only `10.0.2` (pure)."""
    parts = wanted.split(".")
    return have.split(".")[:len(parts)] == parts


def manifest_qemu(manifest: Mapping[str, str]) -> str | None:
    """The lab QEMU's upstream version from its Debian version
    (`1:10.0.2+ds-2+deb13u1~bpo12+1` -> `10.0.2`) (pure)."""
    m = re.match(r"(?:\d+:)?(\d+(?:\.\d+)+)", manifest.get("qemu", ""))
    return m[1] if m else None


def qemu_problem(cell: Cell, lab_qemu: str | None) -> str | None:
    """A cell naming a QEMU version its lab lacks: a lab has only its own (pure)."""
    wanted = [v for v in (cell.kwargs.get("qemu_src"), cell.kwargs.get("qemu_dst"))
              if v is not None]
    if lab_qemu is None or all(_same_version(str(v), lab_qemu) for v in wanted):
        return None
    missing = sorted({str(v) for v in wanted if not _same_version(str(v), lab_qemu)})
    return (f"host {cell.host}: the lab has only its own QEMU {lab_qemu} (its image's "
            f"manifest), not {', '.join(missing)}")


def lab_check(available: Callable[[Arch], str | None] = lab_available,
              lab_qemu: Callable[[Arch], str | None] | None = None) -> CellCheck:
    """Why a lab cell cannot run, asked once per lab host (None: it can)."""
    def qemu_of(arch: Arch) -> str | None:
        image = find_image(images_dir("lab", arch, "manifest.txt"), arch)
        return manifest_qemu(image.manifest)

    known: dict[str, str | None] = {}
    versions: dict[str, str | None] = {}

    def check(cell: Cell) -> str | None:
        arch = lab_arch(cell.host)
        if arch is None:
            return f"host {cell.host}: not a lab"
        if cell.host not in known:
            why = available(arch)
            known[cell.host] = None if why is None else f"host {cell.host}: {why}"
            if why is None:
                versions[cell.host] = (lab_qemu or qemu_of)(arch)
        return known[cell.host] or qemu_problem(cell, versions.get(cell.host))
    return check


def lab_timeout(cells: Iterable[Cell], repeat: int) -> float:
    """The bound on one lab boot: every run's own bounds, and the lab's (pure)."""
    per_repeat = sum(c.options.timeout + c.options.boot_timeout + c.options.hold_timeout
                     + RUN_BOUND_S for c in cells)
    return LAB_BOUND_S + repeat * per_repeat


# --- inside the lab --------------------------------------------------------------------------


def lab_argv(job: Path, results: Path) -> list[str]:
    """The lab's command: its qmpctl matrix over the job's cells (pure)."""
    return ["python3", "-m", "qmpctl", "matrix", LAB_JOB_OPTION, str(job), "--json", str(results)]


def load_lab_job(path: Path, environ: Mapping[str, str]) -> tuple[LabJob, MatrixSpec]:
    """A lab job file, only inside the lab it names (QMPCTL_LAB)."""
    try:
        job = LabJob.model_validate_json(path.read_text())
    except OSError as exc:
        raise UsageError(f"{LAB_JOB_OPTION} {path}: cannot read it ({exc.strerror})") from None
    except ValidationError as exc:
        raise UsageError(f"{LAB_JOB_OPTION} {path}: not a lab job ({exc.errors()[0]['msg']})"
                         ) from None
    arch = lab_arch(job.host)
    if arch is None:
        raise UsageError(f"{LAB_JOB_OPTION} {path}: host {job.host} is not a lab")
    if environ.get(IN_LAB) != arch:
        raise UsageError(f"{LAB_JOB_OPTION} runs host {job.host}'s cells inside the {arch} lab "
                         "that `qmpctl matrix` boots for them, not here")
    return job, parse_spec(job.spec, job.source)


def job_cells(job: LabJob, cells: list[Cell]) -> list[Cell]:
    """The job's cells of the expanded spec, in its order (pure)."""
    wanted = set(job.cells)
    chosen = [c for c in cells if c.id in wanted]
    if missing := sorted(wanted - {c.id for c in chosen}):
        raise UsageError(f"{LAB_JOB_OPTION}: its spec has no cell {', '.join(missing[:3])}")
    if stray := [c.id for c in chosen if c.host != job.host]:
        raise UsageError(f"{LAB_JOB_OPTION}: cell {stray[0]} is not on host {job.host}")
    return chosen


# --- back on this host -----------------------------------------------------------------------


def progress(line: str, ids: set[str]) -> tuple[str, int, str] | None:
    """(cell id, repeat, verdict) from a lab matrix's progress line, as
    `qmpctl matrix` prints one per run when not on a terminal (pure)."""
    m = PROGRESS.match(line)
    if m is None or m["id"] not in ids:
        return None
    return m["id"], int(m["repeat"]), m["verdict"].lower()


def merge_lab(cells: list[Cell], inner: MatrixReport,
              known: Callable[[Cell], str | None] = lambda cell: None,
              ) -> tuple[dict[str, list[RunRecord]], dict[str, str]]:
    """A lab's matrix report as this matrix's runs and not-run reasons, by
    cell id; a lost run's --known-loss is this matrix's (pure)."""
    by_id = {c.id: c for c in inner.cells}
    runs: dict[str, list[RunRecord]] = {}
    refused: dict[str, str] = {}
    for cell in cells:
        got = by_id.get(cell.id)
        if got is None:
            refused[cell.id] = f"in the {cell.host} lab: its qmpctl matrix did not list this cell"
        elif got.not_run is not None:
            refused[cell.id] = f"in the {cell.host} lab: {got.not_run}"
        else:
            runs[cell.id] = [r.model_copy(update={
                "known_loss": known(cell) if r.verdict == "mismatch" else None})
                for r in got.runs]
    return runs, refused


def lab_runner(spec: MatrixSpec, source: str, checkout: Path) -> LabFn:
    """The real LabFn: boot the host's lab once and run its cells there."""
    job_spec = spec.model_dump(mode="json", exclude_unset=True)

    async def run(host: str, cells: list[Cell], repeat: int,
                  write: Callable[[str], object]) -> LabBatch:
        arch = lab_arch(host)
        assert arch is not None
        tail: deque[str] = deque(maxlen=TAIL_LINES)

        def follow(text: str) -> None:
            tail.extend(text.splitlines())
            write(text)

        def failed(why: str) -> str:
            return (f"the {host} lab failed: {why}"
                    + ("; its console's last lines:\n  " + "\n  ".join(tail) if tail else ""))

        with tempfile.TemporaryDirectory(prefix=f"qmpctl-matrix-{host}-") as tmp:
            job, results = Path(tmp) / "job.json", Path(tmp) / "results.json"
            job.write_text(LabJob(host=cast(HostAxis, host), source=source, repeat=repeat,
                                  cells=[c.id for c in cells], spec=job_spec).model_dump_json())
            try:
                result = await run_command(arch, lab_argv(job, results), checkout, checkout,
                                           follow, timeout=lab_timeout(cells, repeat))
            except QmpctlError as exc:
                return LabBatch(LabRun(error=failed(exc.message)), None)
            lab = LabRun(image=result.image, accel=result.accel.accel,
                         accel_reason=result.accel.reason, boot_s=result.boot_s,
                         command_s=result.command_s, wall_s=round(result.wall_s, 1),
                         exit_code=result.exit_code)
            report = None
            with contextlib.suppress(OSError, ValidationError):
                report = MatrixReport.model_validate_json(results.read_text())
        if report is None:
            lab.error = failed(f"its qmpctl matrix exited {result.exit_code} without "
                               "writing its results")
            return LabBatch(lab, None)
        lab.machine = report.host
        return LabBatch(lab, report)
    return run
