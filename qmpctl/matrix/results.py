"""What a matrix run produced (the `--json` model, from which the table,
JUnit and plot are drawn too, so they always agree), and its exit code.

Exit code, highest priority first (one code for the whole matrix):

    130  interrupted (Ctrl-C): what ran so far is still reported
      1  a run lost pages (verdict mismatch) in a cell no --known-loss covers
      7  a run ended in qmpctl's own error
      4  a migration failed            5  a guest failed
      3  an environment error, a lab that failed, a fleet cell whose workers all died
         or that no worker can run, or no cell can run on this host
      6  a run was inconclusive
      2  a cell qmpctl refused mid-matrix after it had run (bad input)
      0  every run verified, or lost pages only where --known-loss covers them
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import Field

from .. import __version__
from ..core.errors import ExitCode, Verdict
from ..core.model import Model
from ..migration.models import PassSample
from ..report.expect import Expect
from ..report.models import FIRST_SHOWN, RunReport
from ..verify.compare import PageMismatch
from ..verify.ranges import describe_ranges
from ..verify.timeline import TimelineSummary
from .plan import MatrixHost
from .spec import HOSTS, LOCAL
from .stats import LOSS_RATE_DEFINITION, CellStats, cell_stats

SCHEMA_VERSION = 3  # 3: each run's first_pages and timeline (the HTML report shows them), and
# the fleet's worker that ran it (None: this host)
# 2: the host axis (cells' axes.host, hosts)

EXIT_PRIORITY: tuple[ExitCode, ...] = (
    ExitCode.INTERRUPTED, ExitCode.MISMATCH, ExitCode.ERROR, ExitCode.MIGRATION_FAILED,
    ExitCode.GUEST_FAILED, ExitCode.ENVIRONMENT, ExitCode.INCONCLUSIVE, ExitCode.USAGE)


class RunTimeline(Model):
    """A run's migration in time, small enough to keep for every run of a
    matrix: the source's samples pass by pass, where postcopy began, and the
    dirty-tracking events that place a loss (the full trace stays in the run
    report)."""

    passes: list[PassSample] = Field(description="query-migrate at each pass, in order")
    postcopy_at_pass: int | None = None
    total_time_ms: int | None = None
    downtime_ms: int | None = None
    ring: TimelineSummary | None = Field(
        None, description="the source's dirty-tracking trace, summarised: last reap, final "
                          "flush, VM stop, ring-full exits (seconds after the migration start)")


class RunRecord(Model):
    """One repeat of one cell: the run report's verdict and key figures."""

    repeat: int = Field(description="1-based")
    verdict: Verdict
    exit_code: int
    error: str | None = None
    pages_compared: int | None = None
    pages_differing: int | None = None
    mismatch: str | None = Field(None, description="verdict mismatch: what differs and where "
                                                   "(pages, first locations, class)")
    inconclusive: list[str] = Field(default_factory=list)
    seconds: float | None = None
    known_loss: str | None = Field(None, description="the --known-loss EXPR covering this "
                                                     "lost run: counted, not failing the exit")
    first_pages: list[PageMismatch] = Field(
        default_factory=list, description="the first differing pages (schema 3), up to "
                                          f"{FIRST_SHOWN}: where, and the bytes either side")
    when: str | None = Field(None, description="when the differing pages were lost, set "
                                               "against the ring timeline (schema 3)")
    timeline: RunTimeline | None = Field(None, description="the migration pass by pass "
                                                           "(schema 3)")
    worker: str | None = Field(None, description="a fleet's worker that ran it (fleet.workers "
                                                 "has its host's facts); None: this host")


class CellResult(Model):
    id: str
    axes: dict[str, str]
    options: dict[str, Any] = Field(description="the MigrateOptions keywords the cell sets "
                                                "(axes, feature, [options]); the rest are "
                                                "qmpctl migrate's defaults")
    status: str = Field(description="run; not-run (see not_run); interrupted (the matrix "
                                    "stopped before all its repeats); infrastructure (a fleet: "
                                    "every attempt of a repeat died with its worker, see "
                                    "infrastructure)")
    not_run: str | None = None
    infrastructure: str | None = Field(None, description="a fleet: why repeats have no run "
                                                         "(their workers died, or none is left)")
    known_loss: str | None = Field(None, description="the --known-loss EXPR covering the cell")
    runs: list[RunRecord] = Field(default_factory=list)
    stats: CellStats


class LabRun(Model):
    """A lab host's one boot: every cell of that host ran in it, as one
    `qmpctl matrix` inside the lab whose JSON came back and was merged."""

    image: str | None = Field(None, description="the lab image: kernel, QEMU, Python")
    accel: str | None = Field(None, description="what ran the lab (tcg: nested under TCG)")
    accel_reason: str | None = None
    boot_s: float | None = None
    command_s: float | None = Field(None, description="the lab's qmpctl matrix alone")
    wall_s: float | None = Field(None, description="everything: packing, boot, bringing back")
    exit_code: int | None = Field(None, description="the lab's qmpctl matrix exit code")
    machine: MatrixHost | None = Field(None, description="the lab as its own qmpctl matrix "
                                                         "saw it: kernel, KVM, QEMU")
    error: str | None = Field(None, description="the lab failed: its cells have no runs")


class InfraEvent(Model):
    """Something that happened to the fleet, not to a migration: a worker that
    left with a run in progress (the run is re-run elsewhere and counted once),
    a repeat whose every attempt died, a cell no worker is left to run."""

    at_s: float = Field(description="seconds since the matrix started")
    kind: Literal["worker-joined", "worker-left", "attempt-lost", "gave-up", "unschedulable"]
    worker: str | None = None
    cell: str | None = None
    repeat: int | None = None
    detail: str


class FleetHost(Model):
    """One worker: its name, the facts its resources come from, the resources."""

    name: str = Field(description="the worker's --name (default: its hostname)")
    address: str | None = Field(None, description="its Dask address")
    machine: MatrixHost = Field(description="hostname, kernel, KVM facts, QEMU versions")
    labs: list[str] = Field(default_factory=list, description="lab images built there")
    slots: int = Field(ge=1)
    resources: dict[str, float]


class HostResult(Model):
    """One value of the host axis: its cells' runs pooled."""

    host: str
    cells: int
    not_run: int
    stats: CellStats = Field(description="every run of the host's cells pooled: loss rate = "
                                         "lost / n over all of them, with its Wilson interval")
    lab: LabRun | None = None


class FleetRun(Model):
    """A matrix run on a Dask cluster (`--scheduler`, `--cluster local`)."""

    scheduler: str
    workers: list[FleetHost] = Field(description="every worker seen, with its host's facts")
    events: list[InfraEvent] = Field(default_factory=list)
    hosts: list[HostResult] = Field(default_factory=list,
                                    description="per worker: its runs pooled (a cell can lose "
                                                "on one kernel and not another)")


class MatrixReport(Model):
    schema_version: int = SCHEMA_VERSION
    qmpctl_version: str = __version__
    command: list[str]
    source: str = Field(description="the preset or --axes file")
    started_at: str
    wall_s: float
    host: MatrixHost
    repeat: int
    cell_filter: str | None = None
    known_loss: list[str] = Field(default_factory=list)
    loss_rate_definition: str = LOSS_RATE_DEFINITION
    interrupted: bool = False
    exit_code: int
    exit_reason: str
    cells: list[CellResult]
    hosts: list[HostResult] = Field(default_factory=list,
                                    description="per host axis value: pooled loss rate, and "
                                                "for a lab its boot (schema 2)")
    fleet: FleetRun | None = Field(None, description="run on a Dask cluster: its workers, "
                                                     "infrastructure events, per-worker rates")


def loss_summary(report: RunReport) -> str:
    """One line saying what a mismatch lost (`RunReport.losses()`, as
    `assert_verified` decides it), with where and what the guest RAM's
    differing pages are, and the failed guest checks."""
    parts = []
    for loss in report.losses():
        parts.append(loss.text())
        if loss.last and loss.in_guest_ram and (v := report.memory) is not None:
            if v.location is not None:
                parts.append(f"where: {describe_ranges(v.location, limit=FIRST_SHOWN)}")
            if v.classes is not None:
                parts.append(f"what: {v.classes.headline()}")
    parts += [f"guest check {c.name} failed: {c.detail}" for c in report.failed_checks]
    return "; ".join(parts) or "the run's verdict is mismatch"


def timeline(report: RunReport) -> RunTimeline | None:
    """The run's migration in time (the last migration's), or None when none ran (pure)."""
    m = report.migration
    if m is None:
        return None
    return RunTimeline(passes=m.samples, postcopy_at_pass=m.postcopy_at_pass,
                       total_time_ms=m.total_time_ms, downtime_ms=m.downtime_ms,
                       ring=None if report.dirty_timeline is None
                       else report.dirty_timeline.summary)


def record(report: RunReport, repeat: int, known: str | None = None) -> RunRecord:
    v = report.memory
    lost = report.verdict == "mismatch"
    return RunRecord(
        repeat=repeat, verdict=report.verdict, exit_code=report.exit_code, error=report.error,
        pages_compared=None if v is None else v.pages_compared,
        pages_differing=None if v is None else v.pages_differing,
        mismatch=loss_summary(report) if lost else None,
        inconclusive=list(report.inconclusive), seconds=report.timings_s.get("total"),
        known_loss=known if lost else None,
        first_pages=[] if v is None else v.mismatches[:FIRST_SHOWN],
        when=None if v is None else v.explanation, timeline=timeline(report))


def cell_result(cell_id: str, axes: dict[str, str], options: dict[str, Any],
                runs: list[RunRecord], repeat: int, not_run: str | None = None,
                known_loss: str | None = None, infrastructure: str | None = None,
                ) -> CellResult:
    status = ("not-run" if not_run is not None else "run" if len(runs) >= repeat
              else "infrastructure" if infrastructure is not None else "interrupted")
    return CellResult(id=cell_id, axes=axes, options=options, status=status, not_run=not_run,
                      infrastructure=infrastructure, known_loss=known_loss, runs=runs,
                      stats=cell_stats(r.verdict for r in runs))


def host_results(cells: Iterable[CellResult], labs: Mapping[str, LabRun] | None = None,
                 ) -> list[HostResult]:
    """Each host the cells name (in HOSTS order), its runs pooled (pure)."""
    by_host: dict[str, list[CellResult]] = {}
    for cell in cells:
        by_host.setdefault(cell.axes.get("host", LOCAL), []).append(cell)
    order = [h for h in HOSTS if h in by_host] + [h for h in by_host if h not in HOSTS]
    return [HostResult(host=h, cells=len(by_host[h]),
                       not_run=sum(1 for c in by_host[h] if c.not_run is not None),
                       stats=cell_stats(r.verdict for c in by_host[h] for r in c.runs),
                       lab=(labs or {}).get(h)) for h in order]


def worker_results(cells: Iterable[CellResult]) -> list[HostResult]:
    """Each fleet worker that ran something, its runs pooled (pure)."""
    by_worker: dict[str, list[tuple[str, RunRecord]]] = {}
    for cell in cells:
        for run in cell.runs:
            if run.worker is not None:
                by_worker.setdefault(run.worker, []).append((cell.id, run))
    return [HostResult(host=w, cells=len({c for c, _ in runs}), not_run=0,
                       stats=cell_stats(r.verdict for _, r in runs))
            for w, runs in sorted(by_worker.items())]


def exit_code(cells: Iterable[CellResult], interrupted: bool,
              lab_errors: Iterable[str] = (), infra: Iterable[str] = ()) -> tuple[int, str]:
    """The matrix's exit code and why (pure; see the module docstring).
    `lab_errors`: the lab hosts whose lab failed, `infra`: a fleet's cells
    left without runs (both environment errors)."""
    cells = list(cells)
    failing: dict[int, list[str]] = {}
    labs = [f"the {host} lab failed" for host in lab_errors] + list(infra)
    if labs:
        failing[int(ExitCode.ENVIRONMENT)] = []
    for cell in cells:
        for run in cell.runs:
            if Expect(known_loss=run.known_loss).accepts(run.verdict):
                continue
            failing.setdefault(run.exit_code, []).append(f"{cell.id} #{run.repeat}")
    if interrupted:
        failing.setdefault(int(ExitCode.INTERRUPTED), [])
    for code in (*EXIT_PRIORITY, *sorted(set(failing) - set(EXIT_PRIORITY))):
        if code not in failing:
            continue
        if code == ExitCode.INTERRUPTED:
            lost = len(failing.get(ExitCode.MISMATCH, []))
            return int(code), "interrupted; what ran so far is reported" + (
                f" ({lost} run(s) lost pages before)" if lost else "")
        runs = failing[code]
        what = ("lost pages (not covered by --known-loss)" if code == ExitCode.MISMATCH
                else f"ended with exit {int(code)}")
        parts = [*(labs if code == ExitCode.ENVIRONMENT else []),
                 *([f"{len(runs)} run(s) {what}: {', '.join(runs[:3])}"
                    + (", ..." if len(runs) > 3 else "")] if runs else [])]
        return int(code), "; ".join(parts)
    if not any(cell.runs for cell in cells):
        return int(ExitCode.ENVIRONMENT), "no cell can run on this host"
    known = sum(1 for c in cells for r in c.runs if r.known_loss)
    return 0, ("every run verified" if not known else
               f"every run verified except {known} known loss(es) (--known-loss)")
