"""One `qmpctl migrate` run, from resolved options to a report. Orchestration
only: every measurement, check and model comes from the layers below.

check settings against both QEMUs -> launch the source and wait for its
workload -> launch the destination -> migrate under the policy -> compare
both RAM images (in a worker thread, so QMP keeps being served) -> resume the
destination and check it again. Whatever happens, an `AsyncExitStack` settles
the source (cancel, resume), shuts both QEMUs down, keeps the logs the user
asked for and removes the run directory, in that order.

Each phase returns its result, recorded in `Run.results` as the phase ends;
`assemble_report` turns them into the report once the run is over, however
it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import __version__
from ..core import lazy
from ..core.aio import task_group
from ..core.errors import (
    ExitCode,
    GuestError,
    HostError,
    Interrupted,
    MigrationFailed,
    MigrationSkipped,
    QmpctlError,
    QmpError,
    SideLost,
    UsageError,
)
from ..core.units import PAGE_SIZE, MiB
from ..faults.injector import FaultInjector
from ..guests.base import GuestCheck, GuestResult, OwnGuest
from ..guests.gic import ItsTable, ItsTableMap, locate_its_tables
from ..guests.its import (
    ItsSaveWatch,
    explain_consumed_pending,
    read_table,
    saved_by_kvm,
    table_regions,
    table_verdicts,
)
from ..guests.kernel import KEY, exit_status_line
from ..host.facts import probe_host_facts
from ..host.gate import ConnectGate
from ..host.ktrace import TraceInstance
from ..host.memory import mem_available, memory_problem
from ..host.netns import NetnsPair, namespace_name, sweep_stale_namespaces
from ..host.proc import send_buffer_max
from ..host.qemu import QemuBinary
from ..host.remote import RemoteHost
from ..host.selfmem import AnonPeak, read_mib
from ..migration import driver
from ..migration.dirtyrate import DirtyRateProbe, probe_dirty_rate
from ..migration.features import (
    Observed,
    feature_settings,
    feature_trace_events,
)
from ..migration.features import evidence as feature_evidence
from ..migration.features.cancel import cancel_evidence
from ..migration.features.vcpu_dirty_limit import vcpu_dirty_limit_evidence
from ..migration.models import FeatureEvidence, MigrationStats
from ..migration.policy import (
    BreakPostcopy,
    CancelAt,
    CapPostcopy,
    Converge,
    HoldBack,
    Policy,
    Postcopy,
)
from ..migration.recovery import Recovery
from ..migration.settings import MigrationSettings
from ..qemu.cmdline import RAM_BLOCK, MachineSpec
from ..qemu.console import ConsoleView, parse_console
from ..qemu.machine import QemuMachine
from ..qemu.remotemachine import RemoteQemuMachine
from ..qemu.rundir import RunDir, free_bytes, sweep_stale
from ..qemu.schema import QemuSchema, cached_schema
from ..qemu.supervisor import Supervisor
from ..report.models import NetnsConfig, RunConfig, RunReport
from ..report.phases import (
    HopResults,
    MemoryResult,
    PhaseResults,
    ResumeResult,
    TrackingResult,
    assemble_report,
)
from ..report.verdict import before_migration_failure, conclude
from ..verify.agent import AgentClient, RemoteImage
from ..verify.classify import classify_mismatches
from ..verify.compare import MethodChoice
from ..verify.digest import compare_digests, page_digests
from ..verify.kring import (
    KERNEL_EVENTS,
    QEMU_TRACE_EVENTS,
    KernelRing,
    analyse,
    explain,
    parse_kernel,
    parse_qemu,
)
from ..verify.probe import choose_method, compare_by
from ..verify.ramblocks import ramblock_verdicts
from ..verify.ramimage import RamImage, RamLayout
from ..verify.ranges import locate_differences
from ..verify.ring import ring_evidence, ring_problems
from ..verify.sweep import SWEEP_TRACE_EVENTS, sweep_evidence
from ..verify.timeline import TIMELINE_TRACE_EVENTS, build_timeline, relate
from .compat import probe_pair
from .hooks import Hooks, chain, fault_hooks
from .options import (
    MigrateOptions,
    Resolved,
    reached_by_ssh,
    requested_method,
    resolve,
)
from .remote import MIGRATION_PORT, check_destination_host, open_destination_host, start_agent

log = logging.getLogger(__name__)


def _free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine_spec(r: Resolved, run: RunDir, side: str, binary: QemuBinary,
                 udp_port: int = 0, remote: RemoteHost | None = None) -> MachineSpec:
    """`remote`: the destination host (every destination lives there): its
    files go in the run directory there, and it listens for qmpctl."""
    host = "src" if side == "src" else "dst"
    remote = remote if host == "dst" else None
    if remote is not None:  # its own run directory; shared with ours only through netns exec
        run = RunDir(remote.run_dir, run.ram if remote.run_dir == run.path else None)
    return MachineSpec(
        arch=r.arch, binary=binary.path, data_dir=binary.data_dir, env=binary.env,
        machine_type=r.machine_type, cpu=r.cpu, accel=r.accel, dirty_ring_size=r.ring,
        ram_mib=r.guest.ram_mib, ram_path=run.side(side, "ram"),
        qmp_socket=run.side(side, "qmp.sock"), serial_socket=run.side(side, "serial.sock"),
        serial_log=run.side(side, "serial"), smp=r.guest.smp, kernel=r.guest.kernel,
        initrd=r.guest.initrd, append=r.guest.append, devices=r.guest.devices(udp_port),
        fw_cfg=r.guest.fw_cfg(), machine_opts=r.guest.machine_opts,
        incoming=side != "src", name=f"qmpctl-{side}",
        # The dirty-tracking timeline: ring reaps, syncs, stop (cheap events
        # only), on every side: a destination is the source of the next hop.
        trace_events=TIMELINE_TRACE_EVENTS + feature_trace_events(r.features)
        + (SWEEP_TRACE_EVENTS if in_kernel_its(r) else ())
        # --trace-kernel: QEMU's side of the ring, one line per harvested page
        + (QEMU_TRACE_EVENTS if side == "src" and r.kernel_trace[0] else ()),
        trace_timestamps=True,
        netns=(namespace_name(run.path.name, host)
               if r.options.topology == "netns" and remote is None else None),
        listen=remote.tcp_listen if remote is not None else None,
        listen_unix=remote is not None and remote.tcp_listen is None,
    )


def in_kernel_its(r: Resolved) -> bool:
    """arm64 under KVM: the ITS is KVM's, which saves its tables into RAM at stop."""
    return r.arch == "aarch64" and r.accel == "kvm"


def migration_policy(r: Resolved) -> Policy:
    """migration-test's hold-back, ending in precopy convergence or postcopy
    (broken once after the switchover with --postcopy-recover; slowed down
    when a fault must land during it)."""
    o = r.options
    held = HoldBack(ending=Postcopy() if o.postcopy else Converge(downtime_ms=o.downtime_limit),
                    min_passes=o.min_passes, throttle_bandwidth=r.throttle * MiB,
                    hold_timeout_s=o.hold_timeout)
    if o.postcopy_recover:
        return BreakPostcopy(held)
    in_postcopy = [f for f in r.faults if f.when.kind == "status"
                   and f.when.value.startswith("postcopy")]
    return CapPostcopy(held) if o.postcopy and in_postcopy else held


def stuck_bound(r: Resolved, settings: MigrationSettings,
                buffered: int | None = None) -> driver.StuckAfter:
    """When a stream that sends nothing counts as stuck, from this run's
    lowest limit on the way: the throttle, the postcopy cap, a `rate` fault
    on the link, and what a socket buffers."""
    limits = [float(v) for k in ("max-bandwidth", "max-postcopy-bandwidth")
              if isinstance(v := settings.parameters.get(k), int) and v > 0]
    limits += [f.value * 1e6 / 8 for f in r.faults if f.kind == "rate" and f.value]
    return driver.stuck_after(min(limits, default=None),
                              send_buffer_max() if buffered is None else buffered)


def effective_settings(r: Resolved, policy: Policy) -> MigrationSettings:
    """What both sides get: the driver's, the policy's, the features', then
    the user's own."""
    # --cancel-at pre-switchover pauses only the cancelled migration; the one
    # that follows must not wait for a migrate-continue.
    cancel = (MigrationSettings(capabilities={"pause-before-switchover": False})
              if r.options.cancel_at == "pre-switchover" else MigrationSettings())
    return (driver.BASE_SETTINGS.merged(policy.settings()).merged(cancel)
            .merged(feature_settings(r.features)).merged(r.settings))


_schemas: dict[tuple[Path, float], QemuSchema] = {}


async def qemu_schema(r: Resolved, binary: QemuBinary, run: RunDir,
                      side: str = "") -> QemuSchema:
    """The binary's QMP schema, read once per binary file (a probe QEMU, then
    the user's cache, `cached_schema`) and kept for the process."""
    key = (binary.path, binary.path.stat().st_mtime)
    if key not in _schemas:
        schema = await cached_schema(r.arch, binary, run, tag=f"schema{side}{len(_schemas)}")
        if schema.error is not None:
            raise HostError(f"cannot read the QMP schema of {binary.path}: {schema.error}")
        _schemas[key] = schema
    return _schemas[key]


def run_config(r: Resolved, settings: MigrationSettings) -> RunConfig:
    o = r.options
    return RunConfig(
        arch=r.arch, guest=r.guest.name, accel=r.accel, accel_reason=r.accel_reason,
        dirty_ring_size=r.ring,
        dirty_tracking="tcg" if r.accel == "tcg" else
        ("kvm-dirty-ring" if r.ring else "kvm-dirty-bitmap"),
        ram_mib=r.guest.ram_mib, smp=r.guest.smp, transport=r.transport,
        topology=o.topology,
        qemu_src=str(r.qemu_src.path), qemu_dst=str(r.qemu_dst.path),
        qemu_src_version=r.qemu_src.version_str, qemu_dst_version=r.qemu_dst.version_str,
        machine_type=r.machine, machine_type_reason=r.machine_type_reason, cpu=r.cpu,
        workload=r.guest.workload_summary(), min_passes=o.min_passes,
        throttle_bandwidth=r.throttle * MiB, converge_downtime_ms=o.downtime_limit,
        migration_settings=settings, forced=list(r.forced), verify=r.verify,
        hold_timeout_s=o.hold_timeout,
    )


NETNS_MIGRATION_PORT = MIGRATION_PORT


def netns_pair(run: Run) -> NetnsPair:
    """--topology netns: the run's two namespaces (made on entering the pair),
    named after its directory and recorded in the report; namespaces of a
    qmpctl that died are swept first."""
    for stale in sweep_stale_namespaces(run.dir.path.parent):
        log.warning("removed network namespace %s, left by a qmpctl that died", stale)
    pair = NetnsPair(run.dir.path.name)
    if run.config is not None:
        run.config.netns = NetnsConfig(
            src_namespace=pair.src_ns, dst_namespace=pair.dst_ns, src_address=pair.src_addr,
            dst_address=pair.dst_addr, prefix_len=pair.prefix_len,
            management_src_address=pair.mgmt_src_addr,
            management_dst_address=pair.mgmt_dst_addr)
    return pair


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def new_report(error: QmpctlError | None = None, started_at: str | None = None) -> RunReport:
    return RunReport(qmpctl_version=__version__, started_at=started_at or now_iso(),
                     verdict="verified" if error is None else error.verdict,
                     exit_code=0 if error is None else int(error.exit_code),
                     error=None if error is None else error.message)


@dataclass
class Run:
    """State of one run, so cleanup can see what exists whatever failed."""

    r: Resolved
    dir: RunDir
    hooks: Hooks  # the caller's; `points` is what the run calls
    progress: driver.ProgressFn | None
    # completed as the run learns it (command lines at launch, netns addresses)
    config: RunConfig | None = None
    results: PhaseResults = field(default_factory=PhaseResults)
    src: QemuMachine | None = None
    dst: QemuMachine | None = None
    hop: int = 1  # which migration (a foreign guest may ask for several)
    machines: list[QemuMachine] = field(default_factory=list)  # in the order they ran
    migration_started: bool = False
    migration_completed: bool = False
    dst_resumed: bool = False  # `cont` sent to the destination: its guest ran
    t_migrate: float = 0.0
    t_ended: float = 0.0  # the phases ended (or failed): cleanup from here
    wall_migrate: tuple[float, float] = (0.0, 0.0)  # time.time() at migrate and at the end
    supervisor: Supervisor = field(init=False)
    topology: NetnsPair | None = None  # --topology netns: link()/rate() act on the veth
    injector: FaultInjector = field(init=False)
    points: Hooks = field(init=False)  # the --fault injector's hooks, then the caller's
    anon: AnonPeak = field(default_factory=AnonPeak)
    timings: dict[str, float] = field(default_factory=dict)
    recoveries: int = 0  # postcopy recovery addresses handed out
    agent: AgentClient | None = None  # netns, --dst-host: qmpctl agent on the destination host
    remote: RemoteHost | None = None  # the destination host, when it is another one
    dst_addr: str | None = None  # the destination host's address for the migration stream
    its_save: ItsSaveWatch | None = None  # arm64 KVM: the tables' before-image
    ktrace: TraceInstance | None = None  # --trace-kernel: the kernel's ring tracepoints
    ktrace_read: bool = False
    # evidence of what ran before the migration (--cancel-at, --vcpu-dirty-limit)
    before_evidence: list[FeatureEvidence] = field(default_factory=list)

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the time the block takes to `timings[phase]` (summed over hops)."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.timings[phase] = round(self.timings.get(phase, 0.0) + time.monotonic() - t0,
                                        3)

    def console_history(self) -> ConsoleView:
        """Everything the guest printed so far, on every machine it ran on."""
        return parse_console(b"".join(bytes(m.console.transcript) for m in self.machines))

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(context=self.other_side,
                                     migrating=lambda: self.migration_started)
        self.injector = FaultInjector(list(self.r.faults), link=None,
                                      ram_offset=self.r.guest.layout().offset)
        self.points = chain(fault_hooks(self.injector), self.hooks)

    def machine(self, side: str, binary: QemuBinary) -> QemuMachine:
        # Each side's NIC loops back through its own UDP port on 127.0.0.1.
        spec = machine_spec(self.r, self.dir, side, binary, _free_port(socket.SOCK_DGRAM),
                            self.remote)
        log_path = self.dir.side(side, "log")
        if self.remote is not None and side != "src":  # every destination lives there
            return RemoteQemuMachine(spec, log_path, self.remote)
        return QemuMachine(spec, log_path)

    async def launch(self, stack: contextlib.AsyncExitStack, side: str,
                     binary: QemuBinary) -> QemuMachine:
        machine = await stack.enter_async_context(self.machine(side, binary))
        if (config := self.config) is not None and side in ("src", "dst"):
            # What `qmpctl repro` turns into a stand-alone reproducer.
            if side == "src":
                config.qemu_argv_src = list(machine.argv)
            else:
                config.qemu_argv_dst = list(machine.argv)
            config.run_dir = str(self.dir.path)
            config.run_ram_dir = None if self.dir.ram is None else str(self.dir.ram)
        self.supervisor.add(side, machine)
        self.machines.append(machine)
        return machine

    @property
    def dst_side(self) -> str:
        return "dst" if self.hop == 1 else f"dst{self.hop}"

    @property
    def src_side(self) -> str:
        return "src" if self.hop == 1 else ("dst" if self.hop == 2 else f"dst{self.hop - 1}")

    def begin_hop(self) -> HopResults:
        """Where migration `hop`'s results are recorded from now on."""
        hop = HopResults(number=self.hop, source=self.src_side, destination=self.dst_side)
        self.results.hops.append(hop)
        return hop

    async def other_side(self, lost: QemuMachine) -> str | None:
        """What the source says when the destination is lost mid-migration."""
        src = self.src
        if lost is src or src is None or not self.migration_started or not src.is_running():
            return None
        # A dead peer breaks the channel and the source notices within moments;
        # a stopped one does not, so then only say where the source stands.
        for _ in range(1 if lost.is_running() else 30):
            info = await src.execute("query-migrate", timeout=2)
            if info.get("status") in driver.FINAL or str(info.get("status")).startswith(
                    "postcopy-paused"):
                break
            await asyncio.sleep(0.1)
        if (stats := self.results.migration) is not None and info.get("error-desc"):
            stats.error_desc = info["error-desc"]
        return (f"the source's migration is {info.get('status')}"
                + (f": {info['error-desc']}" if info.get("error-desc") else ""))

    async def shut_down_machines(self) -> None:
        """Every QEMU of the run at once (each quits, or is signalled, and is
        waited for); their own exits then find them shut down."""
        done = await asyncio.gather(*(m.shutdown() for m in self.machines),
                                    return_exceptions=True)
        if failed := next((e for e in done if isinstance(e, BaseException)), None):
            raise failed

    async def settle_source(self) -> None:
        """Cleanup's first step; never raises. A source whose migration did
        not complete is cancelled and resumed (`settle_plan` decides)."""
        src, results = self.src, self.results
        plan = settle_plan(
            running=src is not None and src.is_running(),
            unresponsive=src is not None and src.unresponsive,
            started=self.migration_started, completed=self.migration_completed,
            took_over=self.dst_resumed or (results.migration is not None
                                           and results.migration.mode == "postcopy"),
            state_known=results.source_state_after is not None)
        if src is not None and plan is not Settle.NOTHING:
            results.source_state_after = await _settle(src, plan)


class Settle(enum.Enum):
    """What cleanup does to the source (`settle_plan`)."""

    NOTHING = "nothing: the source is gone, or its state is already recorded"
    NOT_ASKED = "the supervisor saw it stopped or hung: asking would time out"
    CANCEL_AND_RESUME = "migrating and the guest never ran elsewhere: cancel and resume"
    CANCEL_KEEP_BEHIND = ("migrating after the destination's guest ran: cancel; one that "
                          "completed meanwhile leaves the source behind, not resumed")
    RESUME_AFTER_COMPLETION = "completed but the destination's guest never ran: resume"
    RECORD_STATE = "no migration to undo: record the source's state"


async def _settle(src: QemuMachine, plan: Settle) -> str | None:
    """Act on `plan`; the source's state after it (None: it did not answer)."""
    if plan is Settle.NOT_ASKED:
        return "unresponsive (stopped or hung): not asked; its cleanup ends it with signals"
    if plan in (Settle.CANCEL_AND_RESUME, Settle.CANCEL_KEEP_BEHIND):
        return await driver.cancel(src, resume_completed=plan is Settle.CANCEL_AND_RESUME)
    with contextlib.suppress(QmpctlError):
        if plan is Settle.RESUME_AFTER_COMPLETION:
            return await driver.ensure_running(src, after_completion=True)
        return await src.status()  # Settle.RECORD_STATE
    return None


def settle_plan(*, running: bool, unresponsive: bool, started: bool, completed: bool,
                took_over: bool, state_known: bool) -> Settle:
    """The decision `settle_source` acts on (pure; the table is unit-tested).

    Once the destination's guest ran (resumed, or postcopy), the source's
    memory is behind it: resuming the source would run the guest from the
    past. Until then the source is the guest's only live copy."""
    if not running:
        return Settle.NOTHING
    if unresponsive:
        return Settle.NOT_ASKED
    if started and not completed:
        return Settle.CANCEL_KEEP_BEHIND if took_over else Settle.CANCEL_AND_RESUME
    if completed and not took_over:
        return Settle.RESUME_AFTER_COMPLETION
    return Settle.NOTHING if state_known else Settle.RECORD_STATE


async def _check_settings(run: Run, settings: MigrationSettings) -> None:
    r = run.r
    binaries = [r.qemu_src] + ([r.qemu_dst] if r.qemu_dst.path != r.qemu_src.path else [])
    # two binaries: both probes at once (each a short-lived QEMU)
    settings.check(*await asyncio.gather(*(qemu_schema(r, b, run.dir, side)
                                                for b, side in zip(binaries, ("src", "dst"),
                                                                   strict=False))))


async def _check_pair(run: Run) -> None:
    """Two QEMU releases: can the destination load this machine's state at all?
    Refused before any guest starts unless --force (then the report says so)."""
    r = run.r
    if r.qemu_src.release == r.qemu_dst.release:
        return
    udp = socket.SOCK_DGRAM
    try:
        run.timings["cross_version_probe"] = await probe_pair(
            r, run.dir, machine_spec(r, run.dir, "xsrc", r.qemu_src, _free_port(udp)),
            machine_spec(r, run.dir, "xdst", r.qemu_dst, _free_port(udp)))
    except UsageError as exc:
        if not r.options.force or run.config is None:
            raise
        run.config.forced.append(f"{exc.message} (--force: run anyway)")


def launches_early(r: Resolved) -> bool:
    """Whether the first destination is launched while the source boots: one
    of qmpctl's own guests (a foreign one may skip its migration), and no
    cancelled first attempt (whose destination comes first)."""
    return isinstance(r.guest, OwnGuest) and r.options.cancel_at is None


async def _start_source(run: Run, stack: contextlib.AsyncExitStack, hop: HopResults,
                        ) -> tuple[QemuMachine, asyncio.Task[QemuMachine] | None]:
    """Launch the source, wait until its workload runs, check the guest
    before migrating; the first destination's launch, when it starts
    meanwhile (`launches_early`: it waits paused, -incoming defer -S, either way)."""
    r, o = run.r, run.r.options
    t0 = time.monotonic()
    with run.timed("launch_src"):
        src = run.src = await run.launch(stack, "src", r.qemu_src)
    early = (asyncio.create_task(run.launch(stack, run.dst_side, r.qemu_dst))
             if launches_early(r) else None)
    async with _landed(early):
        with run.timed("boot"):
            await src.console.wait_for(r.guest.ready, o.boot_timeout, "the workload to start")
        run.results.boot_s = round(time.monotonic() - t0, 3)
        if o.dirty_rate_probe:
            run.results.dirty_rate = await _probe_dirty_rate(run, src)
        before = hop.checks_before = await r.guest.before_migration(src.console,
                                                                    o.boot_timeout)
        if (failure := before_migration_failure(before)) is not None:
            raise failure
    return src, early


@contextlib.asynccontextmanager
async def _landed(launch: asyncio.Task[QemuMachine] | None) -> AsyncIterator[None]:
    """A failure in the block waits for `launch` to end before it goes on:
    a launch is never cancelled halfway, and once in the exit stack its QEMU
    is shut down with the others (its own failure, if any, is dropped)."""
    try:
        yield
    except BaseException:
        if launch is not None:
            with contextlib.suppress(BaseException):
                await launch
        raise


async def _probe_dirty_rate(run: Run, src: QemuMachine) -> DirtyRateProbe:
    """--dirty-rate-probe. Off by default: on kvm_pvm a dirty-ring
    calc-dirty-rate before the migration stalls the vCPU during it and once
    lost pages (docs/findings.md)."""
    r = run.r
    mode = "dirty-ring" if r.ring else ("dirty-bitmap" if r.accel == "kvm" else "page-sampling")
    try:
        return await probe_dirty_rate(src, mode)
    except QmpctlError as exc:
        if r.ring:
            raise HostError(f"dirty ring not active on the source: {exc}") from exc
        raise


async def _hop(run: Run, stack: contextlib.AsyncExitStack, hop: HopResults, src: QemuMachine,
               policy: Policy, settings: MigrationSettings,
               launched: asyncio.Task[QemuMachine] | None = None) -> QemuMachine:
    """One migration, from its destination's launch to the guest resumed
    there; each phase's result recorded in `hop` as it ends."""
    r = run.r
    dst, uri = await _destination(run, stack, src, settings, launched)
    stats = hop.migration = MigrationStats(status="setup",
                                           workload_progress_unit=r.guest.progress_unit)
    await _drive(run, src, dst, uri, policy, settings, stats)
    hop.tracking = await _tracking(run, src, stats)
    if (ring := await _trace_kernel(run, src)) is not None:
        run.results.ring = ring
    if run.points.after_migration is not None:
        await run.points.after_migration(src, dst)
    if run.points.before_verify is not None:
        await run.points.before_verify(src.spec.ram_path, dst.spec.ram_path)
    t0 = time.monotonic()
    memory = hop.memory = await _verify_memory(run, src, dst, hop.tracking)
    hop.ramblocks = await ramblock_verdicts(src, dst, RAM_BLOCK, dst_remote=run.agent is not None,
                                            ram=memory.memory)
    # read now: multifd threads log their end after completion
    hop.features = run.before_evidence + feature_evidence(r.features, Observed(
        stats, await src.log_text(), await dst.log_text()))
    run.timings["compare"] = round(time.monotonic() - t0, 3)
    with run.timed("image_check"):
        hop.image_checks = await dst_image_checks(run, dst, "destination image, before resume")
    with run.timed("resume"):
        t_cont = time.monotonic()
        hop.resumed = await _resume(run, dst)
        hop.after_resume = await _after_resume(run, src, dst, t_cont)
    return dst


async def _destination(run: Run, stack: contextlib.AsyncExitStack, src: QemuMachine,
                       settings: MigrationSettings,
                       launched: asyncio.Task[QemuMachine] | None = None,
                       ) -> tuple[QemuMachine, str]:
    """The destination (`launched` already, or now), set up to receive: it
    and the address the migration goes to."""
    r = run.r
    with run.timed("launch_dst"):  # what is left of it, when it was launched early
        dst = run.dst = await (launched or run.launch(stack, run.dst_side, r.qemu_dst))
    if run.hop == 1:
        # both QEMUs at once, once the source is settled
        stack.push_async_callback(run.shut_down_machines)
        stack.push_async_callback(run.settle_source)  # first thing on the way out
    if run.dst_addr is not None:  # the destination host listens on its own address
        uri = f"tcp:{run.dst_addr}:{NETNS_MIGRATION_PORT}"
    else:
        uri = {"unix": f"unix:{run.dir.side('mig', 'sock')}",
               "file": f"file:{run.dir.side('mig', 'file')}",
               "tcp": f"tcp:127.0.0.1:{_free_port()}"}[r.transport]
    if run.hop == 1 and run.config is not None:
        run.config.migration_uri = uri
    await driver.prepare(src, dst, uri, settings, listen=r.transport != "file")
    if run.points.before_migration is not None:
        await run.points.before_migration(src, dst)
    run.its_save = None
    if in_kernel_its(r) and run.agent is None:
        announced = r.guest.announced_tables(run.console_history())
        if announced is not None:
            run.its_save = ItsSaveWatch(saved_by_kvm(announced) or None)
    return dst, uri


async def _drive(run: Run, src: QemuMachine, dst: QemuMachine, uri: str, policy: Policy,
                 settings: MigrationSettings, stats: MigrationStats) -> None:
    """The migration, under `policy`, into `stats` as it goes; the faults
    and hooks fire from its events."""
    r, o = run.r, run.r.options
    to_file = r.transport == "file"
    recovery = (Recovery(dst, lambda: _recovery_uri(run), run.dir.path,
                         fail_first=o.postcopy_recover_fail)
                if o.postcopy_recover else None)

    async def on_pass(n: int) -> None:
        if run.its_save is not None:  # before the policy may let the migration converge
            await run.its_save.observe(src, r.guest.layout(src.console.view()),
                                       f"pass {n} (+{time.monotonic() - run.t_migrate:.2f} s)")
        if run.points.on_pass is not None:
            await run.points.on_pass(n, src, dst)

    loading: asyncio.Future[None] | None = None

    async def on_status(status: str) -> None:
        nonlocal loading
        if status == "active" and loading is None:
            loading = _prepare_checks()
        if run.points.on_status is not None:
            await run.points.on_status(status, src, dst)

    work_before = r.guest.work_done(src.console.view())

    def redirtied() -> bool:
        if r.guest.measures_progress:
            return r.guest.work_done(src.console.view()) > work_before
        # QEMU sent pages again: the guest re-dirtied memory already sent.
        return bool(stats.samples) and stats.samples[-1].pages_resent > 0

    def guest_failed() -> str | None:
        # An error before the migration failed the run already; a source that
        # reports one now (e.g. restarted by a corrupted VMCB in a lab) has
        # nothing left worth migrating, and its destination would only time out.
        err = src.console.view().last("error")
        if err is None or err.at < run.t_migrate:
            return None
        return (f"the source guest reported an error {err.at - run.t_migrate:.2f} s into the "
                f"migration: {err.raw}")

    watch = driver.Watch(progress=run.progress, on_pass=on_pass, on_status=on_status,
                         redirtied=redirtied, guest_failed=guest_failed)
    run.migration_started, run.migration_completed = True, False
    run.dst_resumed = False
    started = driver.Started.now()  # the origin of the driver's times and the faults'
    run.t_migrate, wall = started.monotonic, started.wall
    if run.points.at_migrate is not None:
        await run.points.at_migrate(src, dst)
    if run.ktrace is not None and run.hop == 1:
        run.ktrace.start()
        run.ktrace.follow()
    try:
        await driver.migrate(src, dst, uri, policy, stats, o.timeout, watch, recovery,
                             restore_uri=uri if to_file else None,
                             stuck=stuck_bound(r, settings), started=started)
    except (MigrationFailed, QmpError) as exc:
        # QEMU's own reason first, but name the side if one of them died.
        if not isinstance(exc, SideLost) and (lost := await run.supervisor.first_failure()):
            raise lost from exc
        raise
    finally:
        if run.points.migration_ended is not None:
            await run.points.migration_ended()
        run.timings["migrate"] = round(time.monotonic() - run.t_migrate, 3)
        run.wall_migrate = (wall, time.time())
        if to_file and (file := run.dir.side("mig", "file")).exists():
            st = file.stat()
            stats.file_bytes, stats.file_allocated_bytes = st.st_size, st.st_blocks * 512
        if r.guest.measures_progress:
            stats.workload_progress_during = r.guest.work_done(src.console.view()) - work_before
        if loading is not None:
            await asyncio.wait({loading})  # no thread outlives the migration
    if loading is not None:
        loading.result()  # numpy that does not import fails the run here, not later
    run.migration_completed = True


def _prepare_checks() -> asyncio.Future[None]:
    """Load what the checks after the migration need while it runs, when the
    controller only waits, so that neither start-up nor the checks pay for it
    (docs/testing.md, "Time per run"): numpy, which start-up leaves for later
    (core.lazy), in a thread; the report model's validator, here. Both would
    otherwise load on first use: this changes when, never what."""
    loading = asyncio.get_running_loop().run_in_executor(None, lazy.preload)
    RunReport.model_rebuild()
    return loading


async def _tracking(run: Run, src: QemuMachine, stats: MigrationStats) -> TrackingResult:
    """The source's dirty tracking during the migration, from its trace."""
    r, log = run.r, await src.log_text()
    timeline = build_timeline(log, *run.wall_migrate)
    sweep = (sweep_evidence(log, run.wall_migrate[0], timeline.summary.vm_stop_s,
                            run.wall_migrate[1]) if in_kernel_its(r) else None)
    ring = ring_evidence(timeline, stats.pages_resent) if r.ring else None
    return TrackingResult(dirty_timeline=timeline, sweep=sweep, dirty_ring=ring,
                          evidence_missing=ring_problems(ring) if ring is not None else [])


def _trace_failed_migration(run: Run) -> Callable[..., Awaitable[bool]]:
    """What the kernel did matters most when QEMU gave up (its abort on a
    ring whose counts disagree, docs/findings.md): read after the QEMUs are gone,
    before the instance goes; not when interrupted."""
    async def on_exit(exc_type: type[BaseException] | None, *_: object) -> bool:
        src = run.machines[0] if run.machines else None
        if (src is not None and run.migration_started and exc_type is not None
                and not issubclass(exc_type, asyncio.CancelledError | KeyboardInterrupt)
                and (ring := await _trace_kernel(run, src)) is not None):
            run.results.ring = ring
        return False
    return on_exit


async def _trace_kernel(run: Run, src: QemuMachine) -> KernelRing | None:
    """--trace-kernel, first migration: the kernel's ring events (the source
    QEMU's only) against QEMU's harvests, in a worker thread (large files);
    None when there is nothing (more) to read."""
    trace = run.ktrace
    if trace is None or run.hop != 1 or run.ktrace_read:
        return None
    run.ktrace_read = True

    def analysed(qemu_log: str) -> KernelRing:
        lines, lost = trace.read()
        fetched, slots = parse_qemu(qemu_log)
        return analyse(parse_kernel(lines, run.r.ring, src.pid), fetched, slots, run.r.ring,
                       run.r.kernel_trace[1], lost)

    try:
        trace.unfollow()
        return await asyncio.to_thread(analysed, await src.log_text())
    except OSError as exc:  # extra evidence missing: said so, the run itself stands
        log.warning("--trace-kernel: could not read the traces: %s", exc)
        return KernelRing(
            engaged=True, reason=f"{run.r.kernel_trace[1]}; could not read the traces: {exc}")


def _recovery_uri(run: Run) -> str:
    """A fresh address for the destination to listen on again (postcopy recovery)."""
    run.recoveries += 1
    if run.dst_addr is not None:
        return f"tcp:{run.dst_addr}:{NETNS_MIGRATION_PORT + run.recoveries}"
    if run.r.transport == "unix":
        return f"unix:{run.dir.side(f'recover{run.recoveries}', 'sock')}"
    return f"tcp:127.0.0.1:{_free_port()}"


async def _locate_its_tables(run: Run, src: QemuMachine, dst: QemuMachine, layout: RamLayout,
                             announced: tuple[ItsTable, ...]) -> ItsTableMap:
    """The ITS tables after the migration, from the GIC state the paused
    destination holds where its files are ours (local, netns), else as
    `locate_its_tables` can; the guest's announcement fills in."""
    local = run.remote is None or run.remote.same_files

    def read(table: ItsTable) -> bytes:
        with RamImage(src.spec.ram_path) as image:
            return read_table(image, layout, table)

    return await locate_its_tables(src, dst if local else None, run.r.guest.smp,
                                   run.dir.side(run.dst_side, "devstate"), announced, read)


async def _verify_memory(run: Run, src: QemuMachine, dst: QemuMachine,
                         tracking: TrackingResult) -> MemoryResult:
    """Both RAM images page by page (source postmigrate, destination paused)."""
    r = run.r
    view = src.console.view()
    layout = r.guest.layout(view)
    table_map = None
    if (announced := r.guest.announced_tables(run.console_history())) is not None:
        table_map = await _locate_its_tables(run, src, dst, layout, announced)
        layout = layout.with_regions(*table_regions(table_map.tables))
    tables = table_map.tables if table_map is not None else ()
    classifier = r.guest.classifier()

    def compare() -> MemoryResult:
        with RamImage(src.spec.ram_path) as si, RamImage(dst.spec.ram_path) as di:
            if run.agent is not None:  # the destination's digests, made where it lives
                started = time.perf_counter()
                src_digests = page_digests(si)
                dst_digests, _ = run.agent.digests(dst.spec.ram_path)
                memory = compare_digests(src_digests, dst_digests, layout, list(r.exclusions),
                                         seconds=time.perf_counter() - started)
            elif r.options.verify == "hash":  # what a remote destination would send back
                started = time.perf_counter()
                digests = page_digests(si), page_digests(di)
                memory = compare_digests(*digests, layout, list(r.exclusions),
                                         seconds=time.perf_counter() - started)
            else:  # both sides here: the fastest method on this host, or the one forced
                choice = choose_method(requested_method(r.options), src.spec.ram_path,
                                       dst.spec.ram_path)
                memory = compare_by(choice.method, si, di, layout, list(r.exclusions))
                memory.choice = choice
            if memory.choice is None:
                memory.choice = MethodChoice(
                    method="hash", why="verify-hash",
                    detail="--verify hash" if run.agent is None else
                    "the destination's RAM is on another host: qmpctl agent hashes it there")
            pending: list[str] = []
            if (memory.pages_differing and table_map is not None and in_kernel_its(r)
                    and run.agent is None):
                # KVM's in-kernel ITS consumes pending bits on restore: name them.
                pending = explain_consumed_pending(memory, si, di, layout, tables)
            its_save = (run.its_save.evidence(si, layout, memory, tables)
                        if run.its_save is not None else None)
            if memory.pages_differing:  # explain: where, what kind
                memory.location = locate_differences(memory.differing, layout)
                if classifier is not None and run.agent is None:  # needs both sides' bytes
                    memory.classes = classify_mismatches(si, di, memory.differing, layout,
                                                         classifier)
            return MemoryResult(memory=memory, its_save=its_save,
                                its_pending_unexplained=pending,
                                its_tables_source=table_map.source if table_map else None)

    result = await asyncio.to_thread(compare)
    memory, ring = result.memory, run.results.ring
    if r.ring and memory.classes is not None:
        # When: relate the pages to the ring's harvests (ring runs only).
        memory.explanation = relate(tracking.dirty_timeline, memory.classes)
    if ring is not None and memory.pages_differing and run.hop == 1:
        # The kernel's part: differing pages among those it overwrote on a full ring.
        gpas = layout.gpas(memory.differing.astype("int64") * PAGE_SIZE)
        kernel = explain(ring, (int(g) for g in gpas))
        if kernel is not None:
            memory.explanation = "; ".join(filter(None, [memory.explanation,
                                                         f"kernel: {kernel}"]))
    if table_map is None:
        return result
    return replace(result, its_tables=table_verdicts(table_map.tables, memory, layout))


async def dst_image_checks(run: Run, dst: QemuMachine, stage: str) -> list[GuestCheck]:
    """The guest's checks of the destination's RAM: read here, or by the agent
    where the destination lives (netns), which returns only what they sample."""
    if run.agent is None:
        return run.r.guest.image_checks(dst.spec.ram_path, stage)
    image = RemoteImage(run.agent, dst.spec.ram_path)
    return await asyncio.to_thread(run.r.guest.image_checks, image, f"{stage}, via qmpctl agent")


async def _resume(run: Run, dst: QemuMachine) -> GuestCheck:
    """The guest must keep running where it landed."""
    r, o = run.r, run.r.options
    run.dst_resumed = True  # before the reply: a lost reply may still have resumed it
    await dst.execute("cont")
    if not r.guest.checks_image_after_resume:
        # A foreign guest goes its own way from here, and may end on its own.
        run.supervisor.forget(run.dst_side)
    resumed = await r.guest.wait_resumed(dst.console, o.boot_timeout)
    hop = "" if run.hop == 1 else f" (migration {run.hop})"
    return GuestCheck(name="workload-resumes", stage=f"destination, after cont{hop}",
                      ok=True, detail=resumed)


async def _after_resume(run: Run, src: QemuMachine, dst: QemuMachine,
                        t_cont: float) -> ResumeResult:
    """Once resumed, the guest must stay consistent; its throughput across
    the migration (`t_cont`: when it was resumed)."""
    r, o = run.r, run.r.options
    checks = await r.guest.after_resume(dst.console, o.boot_timeout)
    if r.guest.checks_image_after_resume:
        await dst.execute("stop")
        checks += await dst_image_checks(run, dst, "destination image, after resume")
    return ResumeResult(checks=checks, throughput=r.guest.throughput(
        src.console.view(), dst.console.view(), run.t_migrate,
        run.t_migrate + run.timings["migrate"], t_cont))


async def _next_hop(run: Run, src: QemuMachine, dst: QemuMachine) -> HopResults:
    """The guest asked for another migration: its destination becomes the
    source; the old source (done, paused) goes, RAM file and all. The next
    migration's results, its guest checks first."""
    if run.remote is not None and not run.remote.same_files:
        raise UsageError(f"the guest asked for another migration: the destination on "
                         f"{run.remote.name} would become the source, whose RAM qmpctl "
                         "reads here; one migration only with a destination through ssh")
    run.supervisor.forget(run.src_side)
    run.hop += 1
    hop = run.begin_hop()  # the report's top level is this migration's from here
    await src.shutdown()
    src.spec.ram_path.unlink(missing_ok=True)
    run.supervisor.add(run.src_side, dst)
    run.src, run.dst = dst, None
    hop.checks_before = await run.r.guest.before_migration(dst.console,
                                                           run.r.options.boot_timeout)
    return hop


async def _cancelled_attempt(run: Run, src: QemuMachine, settings: MigrationSettings,
                             status: str, stats: MigrationStats,
                             ) -> tuple[FeatureEvidence, list[GuestCheck]]:
    """--cancel-at: migrate to a first destination, cancel in `status`, and
    check the source runs on, sound; that destination is then discarded.
    The cancel's evidence, and the guest's checks of the source after it."""
    r, o = run.r, run.r.options
    policy = CancelAt(migration_policy(r), status)
    uri = (f"unix:{run.dir.side('mig-cancel', 'sock')}" if r.transport == "unix"
           else f"tcp:{run.dst_addr or '127.0.0.1'}:"
                f"{NETNS_MIGRATION_PORT - 1 if run.dst_addr else _free_port()}")
    # Not supervised: a destination whose incoming migration is cancelled exits,
    # and its monitor's connection reset is no error either (qemu.qmp logs it).
    logging.getLogger("qemu.qmp.protocol.qmpctl-dst-cancelled").setLevel(logging.CRITICAL)
    # Cancel in setup: the source connects to a gate instead, which holds it
    # in setup until the cancel is in (then refuses it), so the cancel cannot
    # land in active by a race; the destination is left listening.
    gate = ConnectGate(run.dir.side("mig-gate", "sock")) if status == "setup" else None

    async def open_gate(new_status: str) -> None:
        if gate is not None and new_status == "cancelling":
            gate.close()

    async with run.machine("dst-cancelled", r.qemu_dst) as dst:
        try:
            await driver.prepare(src, dst, uri, settings.merged(policy.settings()))
            run.migration_started, run.migration_completed = True, False
            try:
                with gate or contextlib.nullcontext():
                    await driver.migrate(src, dst, gate.uri if gate else uri, policy, stats,
                                         o.timeout, driver.Watch(on_status=open_gate))
            except MigrationFailed:
                if stats.status != "cancelled":
                    raise
            if stats.status == "completed":
                raise MigrationFailed(f"--cancel-at {status}: the migration completed before "
                                      "it could be cancelled")
        except BaseException:
            await driver.cancel(src)  # the source runs on whatever failed
            raise
        source_after = await driver.ensure_running(src)
        run.migration_started = False
    ok, detail, checks = await _source_sound(run, src)
    return cancel_evidence(status, stats.statuses, source_after, ok, detail), checks


RATE_WINDOW_S = 2.0


async def _vcpu_dirty_limit(run: Run, src: QemuMachine, mbps: int) -> FeatureEvidence:
    """--vcpu-dirty-limit: limit the running source, see its writes slow
    down, cancel, see them recover; the migration then runs unlimited."""
    guest = run.r.guest

    async def rate() -> float:
        start = guest.work_done(src.console.view())
        await asyncio.sleep(RATE_WINDOW_S)
        return (guest.work_done(src.console.view()) - start) / RATE_WINDOW_S

    before = await rate()
    await src.execute("set-vcpu-dirty-limit", {"dirty-rate": mbps})
    try:
        limits = await src.execute("query-vcpu-dirty-limit")
        limited = await rate()
    finally:
        await src.execute("cancel-vcpu-dirty-limit")
    after = await rate()
    return vcpu_dirty_limit_evidence(mbps, limits, before, limited, after, guest.progress_unit)


async def _source_sound(run: Run, src: QemuMachine) -> tuple[bool, str, list[GuestCheck]]:
    """The source's workload goes on after a cancel, and its memory is
    consistent: whether it is, why, and the guest's checks that say so."""
    r, o = run.r, run.r.options
    progress = await r.guest.wait_resumed(src.console, o.boot_timeout)
    progress = progress.replace("the destination's", "the source's")
    if not r.guest.checks_image_after_resume:
        return True, progress, []
    await src.execute("stop")
    try:
        checks = r.guest.image_checks(src.spec.ram_path, "source image, after the cancel")
    finally:
        await src.execute("cont")
    bad = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
    return (not bad, "; ".join(bad) or f"{progress}; {', '.join(c.name for c in checks)} PASS",
            checks)


async def _phases(run: Run, stack: contextlib.AsyncExitStack, policy: Policy,
                  settings: MigrationSettings) -> None:
    """Every phase in turn, each result recorded in `run.results` as it ends."""
    r, o, results = run.r, run.r.options, run.results
    hop = run.begin_hop()
    try:
        src, early = await _start_source(run, stack, hop)
    except MigrationSkipped as skipped:
        results.skipped_migration = skipped.message
        results.guest_result = await _skipped_migration(run)
        return
    async with _landed(early):
        if o.vcpu_dirty_limit is not None:
            run.before_evidence.append(await _vcpu_dirty_limit(run, src, o.vcpu_dirty_limit))
        if o.cancel_at is not None:
            stats = hop.cancelled = MigrationStats(status="setup")  # evidence, even failed
            cancelled, hop.checks_after_cancel = await _cancelled_attempt(
                run, src, settings, o.cancel_at, stats)
            run.before_evidence.append(cancelled)
    while True:
        dst = await _hop(run, stack, hop, src, policy, settings, early)
        early = None
        if not await r.guest.next_migration(dst, o.guest_timeout):
            break
        hop = await _next_hop(run, src, dst)
        src, policy = dst, migration_policy(r)  # a policy decides one migration
    results.guest_result = _guest_result(run, dst)


def _guest_result(run: Run, dst: QemuMachine) -> GuestResult | None:
    """A foreign guest's own verdict, from all it printed on every machine."""
    o = run.r.options
    result = run.r.guest.result(b"".join(bytes(m.console.transcript) for m in run.machines),
                                None if dst.is_running() else dst.exit_code, run.hop)
    if result is not None and result.status == "NO-RESULT" and dst.is_running():
        result.detail = (f"no result and no further migration request within "
                         f"--guest-timeout {o.guest_timeout:g} s; the guest still runs")
    return result


async def _skipped_migration(run: Run) -> GuestResult | None:
    """kvm-unit-tests' migrate_skip(), as its runner answers it: no migration,
    the key pressed, and the guest's own result stands (the run is then
    inconclusive at best: nothing was migrated)."""
    src, o = run.src, run.r.options
    assert src is not None
    await src.console.send(KEY)
    with contextlib.suppress(GuestError):  # silence is judged by result(): NO-RESULT
        await src.console.wait_for(
            lambda v: True if exit_status_line(v.lines) is not None else None,
            o.guest_timeout, "the guest's result after its skipped migration")
        await src.wait_exit(5)  # the guest powers off right after EXIT
    return run.r.guest.result(
        bytes(src.console.transcript), None if src.is_running() else src.exit_code, 0)


def space_problem(ram_mib: int, free: int, where: Path, copies: int = 2) -> str | None:
    """Why both sides' RAM (plus a migration file, logs and slack: `copies` of
    guest RAM) would not fit in `free` bytes (pure)."""
    need = copies * ram_mib * MiB + 64 * MiB
    if free >= need:
        return None
    return (f"not enough room for {copies} copies of guest RAM in {where}: {need // MiB} MiB "
            f"needed, {free // MiB} MiB free ({-(-(need - free) // MiB)} MiB missing)")


def check_space(run: Run) -> None:
    """Both sides' RAM (and a migration file) must fit where each lives, or
    nothing starts; copies on one file system add up."""
    o = run.r.options
    file = run.r.transport == "file"
    ram = run.dir.side("src", "ram").parent
    # A destination reached over ssh keeps its RAM in its own run directory
    # (on /dev/shm here with --dst-via ssh; counted here too for --dst-host).
    dst_ram = run.dir.path if reached_by_ssh(o) else ram
    by_fs: dict[int, tuple[Path, int]] = {}
    for where, copies in ((ram, 1), (dst_ram, 1), (run.dir.path, 1 if file else 0)):
        first, counted = by_fs.get(os.stat(where).st_dev, (where, 0))
        by_fs[os.stat(where).st_dev] = first, counted + copies
    problems = [space_problem(run.r.guest.ram_mib, free_bytes(where), where.parent, copies)
                for where, copies in by_fs.values() if copies]
    problems.append(memory_problem(run.r.guest.ram_mib, mem_available(), 3 if file else 2))
    if problem := next((p for p in problems if p), None):
        raise HostError(problem)


async def _open_destination_host(run: Run, stack: contextlib.AsyncExitStack) -> None:
    """netns or --dst-host: reach the destination host, check it can run the
    destination, start the agent there (which holds its run directory)."""
    opened = await open_destination_host(stack, run.r.options, run.topology, run.dir.path)
    if opened is None:
        return
    run.remote, run.dst_addr, described = opened
    if run.config is not None:
        run.config.destination_host = described
    files = [f for f in (run.r.guest.kernel, run.r.guest.initrd) if f is not None]
    described.qmpctl_version = await check_destination_host(run.remote, run.r.qemu_dst, files)
    shared_ram = run.dir.ram if run.remote.run_dir == run.dir.path else None  # netns exec
    run.agent = await start_agent(stack, run.remote, run.remote.run_dir, run.dir.path,
                                  shared_ram)


async def _run(run: Run) -> None:
    check_space(run)
    policy = migration_policy(run.r)
    settings = effective_settings(run.r, policy)
    run.config = run_config(run.r, settings)
    run.config.ram_dir = str(run.dir.side("src", "ram").parent.parent)
    with run.timed("checks"):
        await _check_settings(run, settings)
        await _check_pair(run)
    try:
        await _in_stack(run, policy, settings)
    finally:
        if run.t_ended:
            run.timings["teardown"] = round(time.monotonic() - run.t_ended, 3)


async def _in_stack(run: Run, policy: Policy, settings: MigrationSettings) -> None:
    """Everything that needs cleaning up, in one exit stack (its unwinding,
    from `run.t_ended`, is the run's teardown)."""
    async with contextlib.AsyncExitStack() as stack:
        if (artifacts := run.r.options.artifacts) is not None:
            stack.callback(_keep_logs, run.dir, artifacts)  # after the QEMUs are gone
        if run.r.options.topology == "netns":  # made before and deleted after both QEMUs
            run.topology = run.injector.link = stack.enter_context(netns_pair(run))
        await _open_destination_host(run, stack)
        engaged, why = run.r.kernel_trace
        run.results.ring = KernelRing(engaged=engaged, reason=why)  # figures: once read
        if engaged:
            try:
                run.ktrace = stack.enter_context(TraceInstance(KERNEL_EVENTS))
            except OSError as exc:
                raise HostError(f"--trace-kernel: cannot record the kernel's ring "
                                f"tracepoints: {exc}") from exc
            stack.push_async_exit(_trace_failed_migration(run))
        # The supervisor stops before the machines are shut down (the stack).
        async with task_group() as group:
            watcher = group.create_task(run.supervisor.watch())
            sampler = group.create_task(run.anon.sample())
            try:
                await _phases(run, stack, policy, settings)
            except QmpError as exc:
                # A side that died under a command (verifying, checking the
                # guest) is named as the supervisor would, not a lost monitor.
                if not isinstance(exc, SideLost) and (
                        lost := await run.supervisor.first_failure()):
                    raise lost from exc
                raise
            finally:
                run.t_ended = time.monotonic()
                sampler.cancel()
                await run.supervisor.finish(watcher)


def _keep_logs(run_dir: RunDir, dest: Path) -> None:
    try:
        run_dir.keep_logs(dest)
    except OSError as exc:
        log.error("could not keep the logs in %s: %s", dest, exc)


async def run_migrate(r: Resolved, hooks: Hooks | None = None,
                      progress: driver.ProgressFn | None = None) -> RunReport:
    """Run a resolved migration end to end; always returns a report."""
    t0 = time.monotonic()
    # the header is built at the end: its model's validator is built while the
    # migration runs (_prepare_checks), not before the guest starts
    started_at, host_facts = now_iso(), probe_host_facts()
    ram_root = r.options.ram_dir  # checked by resolve(); None: in the run directory
    for stale in sweep_stale() + (sweep_stale(ram_root) if ram_root is not None else []):
        log.warning("removed %s, left by a qmpctl that died", stale)
    with RunDir.create(ram_root=ram_root) as run_dir:
        run = Run(r, run_dir, hooks or Hooks(), progress)
        error: tuple[str, ExitCode] | None = None
        try:
            try:
                await _run(run)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                raise Interrupted("interrupted; migration cancelled") from None
        except QmpctlError as exc:
            log.info("run failed: %s", exc.message, exc_info=exc)
            error = exc.message, exc.exit_code
        except Exception as exc:  # a bug or an unforeseen failure: still a report
            log.exception("unexpected failure")
            error = f"unexpected {type(exc).__name__}: {exc}", ExitCode.ERROR
        finally:
            peaks = run.anon.peak_mib, read_mib("VmHWM")
            t_remove = time.monotonic()
    # the run directory's removal is teardown too
    run.timings["teardown"] = round(run.timings.get("teardown", 0.0)
                                    + time.monotonic() - t_remove, 3)
    run.timings["total"] = round(time.monotonic() - t0, 3)
    header = new_report(started_at=started_at).model_copy(update={
        "error": error[0] if error else None, "exit_code": int(error[1]) if error else 0,
        "config": run.config, "host": r.kvm, "host_facts": host_facts,
        "faults": run.injector.records, "timings_s": run.timings,
        "controller_peak_rss_mib": peaks[0], "controller_peak_vmhwm_mib": peaks[1]})
    report = assemble_report(header, run.results)
    conclude(report)
    return report


async def run(options: MigrateOptions, hooks: Hooks | None = None,
              progress: driver.ProgressFn | None = None) -> RunReport:
    """Resolve `options` and run them; bad input or host gives an error report."""
    try:
        resolved = resolve(options)
    except (UsageError, HostError) as exc:
        return new_report(exc)
    return await run_migrate(resolved, hooks, progress)
