"""pytest plugin (entry point `pytest11: qmpctl`): live migrations as tests.

* fixture `qmpctl_migrate`: `report = await qmpctl_migrate(accel="tcg", ...)`
  runs one real migration with `qmpctl migrate`'s options as keyword
  arguments (plus `hooks=`, and `expect=Expect(...)`: the outcome the
  scenario expects, checked before the report is returned) and returns its
  `RunReport`; bad options fail the test with qmpctl's message. Each run's
  key figures and qmpctl's version go to JUnit through `record_property`.
* marker `qmpctl_kvm(ring=False, arch="x86_64", ring_with_bitmap=False,
  guest64=False)`: skip, naming what is missing, unless this host's KVM can
  run the test; `--qmpctl-require-kvm` makes that a failure instead.
* `--qmpctl-xfail-known-losses`: on a kvm_pvm host, a `qmpctl_kvm(ring=True)`
  test whose RAM comparison found lost pages is an (unstrict) xfail citing the
  documented host bug. Off by default: then such a test fails.
* `--qmpctl-artifacts DIR`: a failed test keeps, in DIR/<test id>, every
  run's QEMU logs, serial output and JSON report, and the QMP transcript.
* `qmpctl_matrix_cells(SOURCE, cell=REGEX)`: the cells of a `qmpctl matrix`
  preset or TOML file as `pytest.param`s, for
  `@pytest.mark.parametrize("cell", qmpctl_matrix_cells("smoke"), ids=str)`
  and `report = await qmpctl_migrate(**cell.kwargs)`; a cell this host does
  not run is skipped with the reason.
* `--qmpctl-lab auto|aarch64|x86_64|off` (default auto): a `qmpctl_kvm` test
  this host cannot run runs inside a lab that can (`qmpctl lab`: arm64 KVM
  with the in-kernel ITS, nested under TCG), all such tests in one lab boot,
  each one's outcome (and its message) read back from the lab; `off` skips
  them as before. Without a lab image the skip says how to build one.
* `--qmpctl-timeout SECONDS` (default 900, 0 = none): the test's migrations
  must finish within that time from the test's start, or the run is cancelled
  (qmpctl then cancels the migration and shuts its QEMUs down) and the test
  fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from . import __version__
from .core.errors import QmpctlError, UsageError
from .fleet.clusters import RemoteCluster
from .fleet.options import SCHEDULER_PORT
from .fleet.remote import migrate_on
from .fleet.resources import options_needs
from .fleet.security import address, tls_of
from .host.kvm import Arch, KvmInfo, kvm_can_run, probe_kvm
from .lab.commands import checkout as qmpctl_checkout
from .lab.suite import LabOutcome, lab_available, run_in_lab
from .matrix.cells import expand, select
from .matrix.plan import check_options, host_check, plan
from .matrix.spec import load
from .scenario.hooks import Hooks
from .scenario.options import MigrateOptions
from .scenario.runner import run
from .testing import Expect, LostPages, MigrateFn, RunReport, assert_expected

KNOWN_LOSSES = (
    "known host bug: on kvm_pvm, dirty-ring migrations intermittently lose the pages "
    "dirtied after the last ring reap (qmpctl's docs/findings.md, 'What qmpctl found on "
    "the build machines'); allowed by --qmpctl-xfail-known-losses")
DEFAULT_TIMEOUT_S = 900.0
QMP_LOGGER = "qemu.qmp"

_kvm_key = pytest.StashKey[KvmInfo]()
_problem_key = pytest.StashKey[str]()
_phase_reports_key = pytest.StashKey[dict[str, pytest.TestReport]]()
_lab_key = pytest.StashKey[Arch]()  # a test delegated to a lab of this arch
_lab_runs_key = pytest.StashKey[dict[str, tuple[str, dict[str, LabOutcome]]]]()
_fleet_key = pytest.StashKey[RemoteCluster | None]()


@dataclass(frozen=True)
class KvmRequirement:
    """The arguments of the `qmpctl_kvm` marker."""

    ring: bool = False
    arch: str = "x86_64"
    ring_with_bitmap: bool = False
    guest64: bool = False


_fleet_req_key = pytest.StashKey[KvmRequirement]()  # a fleet test's qmpctl_kvm marker


def kvm_problems(req: KvmRequirement, kvm: KvmInfo,
                 host_machine: str | None = None) -> list[str]:
    """What this host lacks to run a test needing `req` (empty: nothing)."""
    host_machine = host_machine or platform.machine()
    problems = []
    if req.arch not in ("x86_64", "aarch64"):
        return [f"unknown arch {req.arch!r} in qmpctl_kvm (x86_64 or aarch64)"]
    if not kvm.accessible:
        problems.append(f"KVM not accessible ({kvm.error or 'no ' + kvm.device})")
    if not kvm_can_run(cast(Arch, req.arch)):
        problems.append(f"KVM cannot run {req.arch} guests on this {host_machine} host")
    if not kvm.accessible:
        return problems
    if (req.ring or req.ring_with_bitmap) and kvm.dirty_ring_max_entries == 0:
        problems.append("host KVM has no dirty ring (KVM_CAP_DIRTY_LOG_RING, cap 192 = 0)")
    if req.ring_with_bitmap and not kvm.has_ring_with_bitmap:
        problems.append("host KVM lacks KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP (cap 225 = 0)")
    if req.guest64 and kvm.runs_64bit_guests is False:
        problems.append(f"this host's KVM ({kvm.flavour}) cannot run 64-bit guests")
    return problems


def qmpctl_matrix_cells(source: str, cell: str | None = None) -> list[pytest.ParameterSet]:
    """The cells of a matrix (a preset name or a TOML file, as `qmpctl matrix`
    takes them; `cell`: a regex on their ids) as `pytest.param`s, each with its
    cell id and the `Cell` (`cell.kwargs` for `qmpctl_migrate`) as value. Cells
    this host does not run are skipped naming the reason, as `qmpctl matrix`
    lists them. One param per cell: repeats are the suite's business."""
    spec = load(source)
    cells = select(expand(spec), cell)
    kvm = probe_kvm()
    check_options(cells, spec.options, kvm)
    return [pytest.param(c, id=c.id, marks=() if c.not_run is None
                         else pytest.mark.skip(reason=f"not run here: {c.not_run}"))
            for c in plan(cells, host_check(kvm))]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qmpctl", "qmpctl live-migration tests")
    group.addoption("--qmpctl-qemu-src", metavar="PATH|VERSION",
                    help="QEMU for the source of every run that names none: a path or a "
                         "version qmpctl knows (7.2, 10.0)")
    group.addoption("--qmpctl-qemu-dst", metavar="PATH|VERSION",
                    help="QEMU for the destination of every run that names none")
    group.addoption("--qmpctl-require-kvm", action="store_true",
                    help="fail, instead of skipping, a qmpctl_kvm test this host cannot run")
    group.addoption("--qmpctl-xfail-known-losses", action="store_true",
                    help="on kvm_pvm hosts, lost pages in qmpctl_kvm(ring=True) tests are an "
                         "xfail (known host bug) instead of a failure")
    group.addoption("--qmpctl-artifacts", metavar="DIR", type=Path,
                    help="keep QEMU logs, serial output, QMP transcript and JSON reports "
                         "of each failed test in DIR/<test id>")
    group.addoption("--qmpctl-lab", choices=("auto", "aarch64", "x86_64", "off"),
                    default="auto",
                    help="run qmpctl_kvm tests this host cannot run inside a lab of that "
                         "arch (auto: the test's own; off: skip them)")
    group.addoption("--qmpctl-scheduler", metavar="ADDRESS",
                    help="run each qmpctl_migrate call on a fleet's worker that has what its "
                         "options and qmpctl_kvm marker need (qmpctl scheduler; docs/fleet.md)")
    for name, what in (("ca", "CA of the fleet's certificates"),
                       ("cert", "this controller's certificate"), ("key", "its private key")):
        group.addoption(f"--qmpctl-tls-{name}", metavar="PEM", type=Path,
                        help=f"--qmpctl-scheduler over TLS: {what}")
    group.addoption("--qmpctl-timeout", metavar="SECONDS", type=float,
                    default=DEFAULT_TIMEOUT_S,
                    help="a test's migrations must end within this many seconds of its "
                         f"start, or are cancelled and it fails (default {DEFAULT_TIMEOUT_S:g};"
                         " 0: no limit)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "qmpctl_kvm(ring=False, arch='x86_64', ring_with_bitmap=False, guest64=False): "
        "needs KVM able to run that guest (with the dirty ring, ring + backup bitmap, "
        "64-bit guests); skipped naming what is missing, failed with --qmpctl-require-kvm")


def fleet_of(config: pytest.Config) -> RemoteCluster | None:
    """--qmpctl-scheduler's cluster (checked once per session), or None."""
    if _fleet_key not in config.stash:
        address_text = config.getoption("qmpctl_scheduler")
        tls_paths = [config.getoption(f"qmpctl_tls_{n}") for n in ("ca", "cert", "key")]
        if address_text is None:
            if any(p is not None for p in tls_paths):
                raise pytest.UsageError("--qmpctl-tls-* apply only with --qmpctl-scheduler")
            config.stash[_fleet_key] = None
        else:
            try:
                tls = tls_of(*tls_paths)
                config.stash[_fleet_key] = RemoteCluster(
                    address(address_text, "--qmpctl-scheduler", tls, SCHEDULER_PORT), tls)
            except UsageError as exc:
                raise pytest.UsageError(exc.message) from None
    return config.stash[_fleet_key]


def host_kvm(config: pytest.Config) -> KvmInfo:
    """This host's KVM, probed once per session."""
    if _kvm_key not in config.stash:
        config.stash[_kvm_key] = probe_kvm()
    return config.stash[_kvm_key]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("qmpctl_kvm")
        if marker is None:
            continue
        try:
            req = KvmRequirement(*marker.args, **marker.kwargs)
        except TypeError as exc:
            item.stash[_problem_key] = f"bad qmpctl_kvm marker: {exc}"
            continue
        if fleet_of(config) is not None:  # the fleet's workers decide, not this host
            item.stash[_fleet_req_key] = req
            continue
        kvm = host_kvm(config)
        if problems := kvm_problems(req, kvm):
            item.stash[_problem_key] = "qmpctl_kvm: " + "; ".join(problems)
            lab = config.getoption("qmpctl_lab")
            # a test skipped outright never boots a lab
            skipped = item.get_closest_marker("skip") is not None
            if req.arch in ("aarch64", "x86_64") and lab in ("auto", req.arch) and not skipped:
                if (why_not := lab_available(cast(Arch, req.arch))) is None:
                    item.stash[_lab_key] = cast(Arch, req.arch)
                else:
                    item.stash[_problem_key] += f" (and no lab: {why_not})"
        elif req.ring and kvm.flavour == "pvm" and config.getoption("qmpctl_xfail_known_losses"):
            item.add_marker(pytest.mark.xfail(reason=KNOWN_LOSSES, raises=LostPages,
                                              strict=False))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    problem = item.stash.get(_problem_key, None)
    # a test skipped outright is skipped for its own reason (pytest says it)
    if (problem is not None and _lab_key not in item.stash
            and item.get_closest_marker("skip") is None
            and not item.config.getoption("qmpctl_require_kvm")):
        pytest.skip(problem)


def _lab_outcome(item: pytest.Item, arch: Arch) -> tuple[str, LabOutcome]:
    """This test's outcome in the lab; the first delegated test of a session
    boots the lab once for all of them."""
    runs = item.config.stash.setdefault(_lab_runs_key, {})
    if arch not in runs:
        nodeids = [i.nodeid for i in item.session.items if i.stash.get(_lab_key, None) == arch]
        with tempfile.TemporaryDirectory(prefix="qmpctl-lab-suite-") as tmp:
            try:
                result, outcomes, console = run_in_lab(
                    arch, nodeids, item.config.rootpath, qmpctl_checkout(), Path(tmp))
            except Exception as exc:  # the lab itself failed: every test it carried fails
                failed = LabOutcome("failed", f"the {arch} lab failed: {exc}")
                runs[arch] = ("", dict.fromkeys(nodeids, failed))
            else:
                runs[arch] = (f"{result.summary()}\n--- lab console ---\n{console}", outcomes)
    summary, outcomes = runs[arch]
    return summary, outcomes.get(item.nodeid, LabOutcome("failed", "not run in the lab"))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """A test delegated to a lab: its outcome there is its outcome here."""
    arch = pyfuncitem.stash.get(_lab_key, None)
    if arch is None:
        return None
    summary, outcome = _lab_outcome(pyfuncitem, arch)
    pyfuncitem.user_properties.append(("qmpctl_lab", summary.partition("\n")[0]))
    where = f"[in the {arch} lab] "
    if outcome.outcome == "failed":
        pytest.fail(f"{where}{outcome.message}\n{summary}", pytrace=False)
    if outcome.outcome == "skipped":
        pytest.skip(f"{where}{outcome.message}")
    if outcome.outcome == "xfailed":
        pytest.xfail(f"{where}{outcome.message}")
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    problem = item.stash.get(_problem_key, None)
    if problem is not None and _lab_key not in item.stash:  # only with --qmpctl-require-kvm
        pytest.fail(f"{problem} (--qmpctl-require-kvm)", pytrace=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
        item: pytest.Item, call: pytest.CallInfo[None],
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's final report (after xfail handling) for the fixture."""
    report = yield
    item.stash.setdefault(_phase_reports_key, {})[report.when] = report
    return report


def _test_failed(item: pytest.Item) -> bool:
    """Failed, or xfailed (it did fail, as expected)."""
    reports = item.stash.get(_phase_reports_key, {})
    return any(r.failed or (r.skipped and hasattr(r, "wasxfail")) for r in reports.values())


def our_qemu_children() -> list[str]:
    """QEMUs qmpctl launched (`-name qmpctl-...`) that are still children of
    this process (Linux /proc; elsewhere nothing is found)."""
    found = []
    me = os.getpid()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != me:
                continue
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        names = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == b"-name"]
        if any(name.startswith(b"qmpctl-") for name in names):
            found.append(f"pid {proc.name} ({b' '.join(argv[:3]).decode(errors='replace')} ...)")
    return found


def sanitise(nodeid: str) -> str:
    """A test id as one folder name."""
    name = re.sub(r"[^A-Za-z0-9._=-]+", "_", nodeid).strip("._") or "test"
    return name[:180]


@dataclass(repr=False)
class _TestRuns:
    """One test's runs: options from the session, deadline, staging of artifacts."""

    item: pytest.Item
    record_property: Callable[[str, object], None]
    timeout_s: float
    deadline: float | None
    qemu_src: str | None
    qemu_dst: str | None
    artifacts: Path | None
    fleet: RemoteCluster | None = None
    staging: Path | None = None
    reports: list[RunReport] = field(default_factory=list)
    started: int = 0  # runs started: numbers them (run-N/, qmpctl_runN_*)
    active: int = 0  # runs in progress
    _transcript: _QmpTranscript | None = None

    def __repr__(self) -> str:
        return f"<qmpctl_migrate of {self.item.nodeid}: {len(self.reports)} runs>"

    def start(self) -> None:
        if self.artifacts is None:
            return
        self.staging = Path(tempfile.mkdtemp(prefix="qmpctl-test-"))
        self._transcript = _QmpTranscript(self.staging / "qmp.log")

    def finish(self) -> None:
        if self._transcript is not None:
            self._transcript.close()
        if self.staging is None or self.artifacts is None:
            return
        if _test_failed(self.item):
            dest = self.artifacts / sanitise(self.item.nodeid)
            shutil.rmtree(dest, ignore_errors=True)
            self.artifacts.mkdir(parents=True, exist_ok=True)
            shutil.move(self.staging, dest)
        else:
            shutil.rmtree(self.staging, ignore_errors=True)

    def options(self, kwargs: dict[str, Any], n: int) -> MigrateOptions:
        kw = dict(kwargs)
        for key, default in (("qemu_src", self.qemu_src), ("qemu_dst", self.qemu_dst)):
            if default and kw.get(key) is None and kw.get("qemu") is None:
                kw[key] = default
        if self.staging is not None and kw.get("artifacts") is None:
            kw["artifacts"] = self.staging / f"run-{n}"
        try:
            return MigrateOptions.from_kwargs(**kw)
        except UsageError as exc:
            pytest.fail(f"qmpctl_migrate: {exc.message}", pytrace=False)

    async def migrate(self, *, hooks: Hooks | None = None, expect: Expect | None = None,
                      **kwargs: Any) -> RunReport:
        if self.fleet is not None and hooks is not None:
            pytest.fail("qmpctl_migrate: hooks= run in the test's process; with "
                        "--qmpctl-scheduler the run is on a worker (drop one of them)",
                        pytrace=False)
        self.started += 1
        n = self.started
        opts = self.options(kwargs, n)
        remaining = None if self.deadline is None else self.deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            pytest.fail("qmpctl_migrate: --qmpctl-timeout already exceeded", pytrace=False)
        timeout = asyncio.timeout(remaining)
        transcript = (self._transcript.capturing() if self._transcript is not None
                      else contextlib.nullcontext())
        self.active += 1
        try:
            async with timeout:
                if self.fleet is not None:
                    report = await self._on_fleet(self.fleet, opts)
                else:
                    with transcript:
                        report = await run(opts, hooks)
        except TimeoutError:
            if not timeout.expired():
                raise
            pytest.fail(f"qmpctl_migrate: the test exceeded --qmpctl-timeout={self.timeout_s:g}"
                        "; the run was cancelled", pytrace=False)
        finally:
            self.active -= 1
        self._record(report, opts, n)
        if self.active == 0 and (survivors := our_qemu_children()):
            pytest.fail(f"qmpctl_migrate: QEMU survived the run: {survivors}", pytrace=False)
        if timeout.expired():
            pytest.fail(f"qmpctl_migrate: the test exceeded --qmpctl-timeout={self.timeout_s:g}"
                        "; the run was cancelled and its QEMUs shut down (verdict "
                        f"{report.verdict}: {report.error})", pytrace=False)
        if report.verdict == "usage-error":
            pytest.fail(f"qmpctl_migrate: {report.error}", pytrace=False)
        if expect is not None:
            assert_expected(report, expect)
        return report

    async def _on_fleet(self, fleet: RemoteCluster, opts: MigrateOptions) -> RunReport:
        """The run on a worker with what it needs; its artifacts back into staging."""
        req = self.item.stash.get(_fleet_req_key, None)
        needs = options_needs(opts, None if req is None else req.arch,
                              req is not None and req.ring_with_bitmap,
                              req is not None and req.guest64)
        try:
            report, worker = await migrate_on(fleet, self.item.nodeid, opts, needs,
                                              opts.artifacts)
        except QmpctlError as exc:
            pytest.fail(f"qmpctl_migrate: {exc.message}", pytrace=False)
        self.record_property("qmpctl_worker" if self.started == 1
                             else f"qmpctl_run{self.started}_worker", worker)
        return report

    def _record(self, report: RunReport, opts: MigrateOptions, n: int) -> None:
        self.reports.append(report)
        if opts.artifacts is not None and self.staging is not None:
            folder = self.staging / f"run-{n}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "report.json").write_text(report.model_dump_json(indent=2) + "\n")
        prefix = "qmpctl_" if n == 1 else f"qmpctl_run{n}_"
        figures: dict[str, object] = {"verdict": report.verdict}
        if (m := report.migration) is not None:
            figures |= {"passes": m.passes, "downtime_ms": m.downtime_ms}
        if (v := report.memory) is not None:
            figures |= {"pages_compared": v.pages_compared, "pages_differing": v.pages_differing}
        for name, value in figures.items():
            if value is not None:
                self.record_property(prefix + name, value)


class _QmpTranscript:
    """The test's QMP transcript: during each run (`capturing()`), every
    `qemu.qmp` record down to DEBUG (each QMP message sent and received) goes
    to `path`, and every other handler (pytest's log capture, the user's own)
    still gets only the records it got before. The logger is changed only
    while a run is in progress, inside the test's call: pytest attaches its
    capture handlers to non-propagating loggers when a phase starts, and would
    otherwise show the whole transcript under "Captured log"."""

    def __init__(self, path: Path) -> None:
        self.logger = logging.getLogger(QMP_LOGGER)
        self.file = logging.FileHandler(path, encoding="utf-8")
        self.file.setFormatter(logging.Formatter(
            "%(asctime)s %(name)s %(levelname)s %(message)s"))
        self.depth = 0
        self.saved = (self.logger.level, self.logger.propagate)
        self.forward: logging.Handler | None = None

    @contextlib.contextmanager
    def capturing(self) -> Iterator[None]:
        if self.depth == 0:
            self._attach()
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0:
                self._detach()

    def _attach(self) -> None:
        logger = self.logger
        self.saved = (logger.level, logger.propagate)
        previous = logger.getEffectiveLevel()
        if previous > logging.DEBUG and logger.propagate and logger.parent is not None:
            self.forward = _Forward(logger.parent, previous)
            logger.addHandler(self.forward)
            logger.propagate = False
        logger.addHandler(self.file)
        logger.setLevel(logging.DEBUG)

    def _detach(self) -> None:
        logger = self.logger
        logger.removeHandler(self.file)
        if self.forward is not None:
            logger.removeHandler(self.forward)
            self.forward = None
        logger.propagate = self.saved[1]
        logger.setLevel(self.saved[0])

    def close(self) -> None:
        self.file.close()


class _Forward(logging.Handler):
    """Hands records at `level` or above on to `parent`, as propagation would."""

    def __init__(self, parent: logging.Logger, level: int) -> None:
        super().__init__(level)
        self.parent = parent

    def emit(self, record: logging.LogRecord) -> None:
        self.parent.handle(record)


def _artifacts_dir(config: pytest.Config) -> Path | None:
    """--qmpctl-artifacts, relative to where pytest was started (tests may chdir)."""
    path: Path | None = config.getoption("qmpctl_artifacts")
    return None if path is None else config.invocation_params.dir / path


@pytest.fixture
def qmpctl_migrate(request: pytest.FixtureRequest,
                   record_property: Callable[[str, object], None]) -> Iterator[MigrateFn]:
    """`report = await qmpctl_migrate(**migrate_options, hooks=None, expect=None)`:
    one real migration (`expect`: the outcome it must end in)."""
    config = request.config
    timeout_s = float(config.getoption("qmpctl_timeout"))
    runs = _TestRuns(
        item=request.node, record_property=record_property, timeout_s=timeout_s,
        deadline=time.monotonic() + timeout_s if timeout_s > 0 else None,
        qemu_src=config.getoption("qmpctl_qemu_src"),
        qemu_dst=config.getoption("qmpctl_qemu_dst"),
        artifacts=_artifacts_dir(config), fleet=fleet_of(config))
    record_property("qmpctl_version", __version__)  # which qmpctl judged, in the JUnit file
    runs.start()
    try:
        yield runs.migrate
    finally:
        with contextlib.suppress(OSError):
            runs.finish()
