"""One `qmpctl migrate` run, from resolved options (`options`) to a report.

launch source -> wait for the workload -> launch destination -> migrate
(ring evidence from QEMU's trace) -> compare both RAM images page by page and
run the guest's image checks -> resume the destination and check it again ->
clean up, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, migration
from .cmdline import MachineSpec
from .compare import CompareResult, compare_images
from .console import ConsoleView, Record
from .errors import HostError, Interrupted, MigrationFailed, QmpctlError
from .guests import ItsTable, LinuxGuest, WaveGuest, its_tables
from .host import KvmInfo, QemuBinary
from .machine import QemuMachine
from .options import Resolved
from .ramimage import PAGE_SIZE, MiB, RamImage, RamLayout, Region
from .report import (
    DirtyRateProbe,
    DirtyRingEvidence,
    Exclusion,
    GuestCheck,
    GuestThroughput,
    HostSummary,
    ItsTableVerdict,
    MemoryVerdict,
    MigrationStats,
    PageMismatchInfo,
    PassStat,
    RunConfig,
    RunReport,
    ThroughputSample,
)
from .rundir import RunDir


@dataclass
class Hooks:
    """Test seams: called at fixed points of a real run."""

    on_pass: Callable[[int, QemuMachine, QemuMachine], Awaitable[None]] | None = None
    before_verify: Callable[[Path, Path], Awaitable[None]] | None = None


def _free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RING_TRACE_EVENTS = ("kvm_dirty_ring_reap", "kvm_dirty_ring_full")
_REAP_RE = re.compile(r"kvm_dirty_ring_reap reaped (\d+) pages")


def ring_evidence(qemu_log: str) -> DirtyRingEvidence:
    """Sum QEMU's ring trace lines: proof the pages really came through the ring."""
    reaped = [int(n) for n in _REAP_RE.findall(qemu_log)]
    return DirtyRingEvidence(reaps=len(reaped), pages_reaped=sum(reaped),
                             full_exits=qemu_log.count("kvm_dirty_ring_full"))


def machine_spec(r: Resolved, run: RunDir, side: str, binary: QemuBinary,
                 udp_port: int = 0) -> MachineSpec:
    return MachineSpec(
        arch=r.arch, binary=binary.path, accel=r.accel, dirty_ring_size=r.ring,
        ram_mib=r.guest.ram_mib, ram_path=run.side(side, "ram"),
        qmp_socket=run.side(side, "qmp.sock"), serial_socket=run.side(side, "serial.sock"),
        serial_log=run.side(side, "serial"), smp=r.guest.smp, kernel=r.guest.kernel,
        initrd=r.guest.initrd, append=r.guest.append, devices=r.guest.devices(udp_port),
        fw_cfg=r.guest.fw_cfg(), incoming=side == "dst", name=f"qmpctl-{side}",
        trace_events=RING_TRACE_EVENTS if r.ring and side == "src" else (),
    )


async def probe_dirty_rate(machine: QemuMachine, mode: str, calc_time: float = 1.0
                           ) -> DirtyRateProbe:
    """calc-dirty-rate in `mode`; in dirty-ring mode success proves the ring is on."""
    await machine.execute("calc-dirty-rate", {"calc-time": int(calc_time), "mode": mode})
    deadline = time.monotonic() + calc_time + 10
    while time.monotonic() < deadline:
        info = await machine.execute("query-dirty-rate")
        if info.get("status") == "measured":
            return DirtyRateProbe(
                mode=mode, calc_time_s=calc_time, dirty_rate_mib_s=info.get("dirty-rate"),
                vcpu_dirty_rates_mib_s=[int(v["dirty-rate"])
                                        for v in info.get("vcpu-dirty-rate", [])],
            )
        await asyncio.sleep(0.2)
    raise HostError(f"calc-dirty-rate ({mode}) did not finish")


def its_table_verdict(table: ItsTable, result: CompareResult, layout: RamLayout
                      ) -> ItsTableVerdict:
    differing = result.differing_in(layout, table.base, table.base + table.size)
    return ItsTableVerdict(name=table.name, base=table.base, size=table.size,
                           pages=-(-table.size // PAGE_SIZE), pages_differing=differing,
                           identical=differing == 0)


def memory_verdict(result: CompareResult) -> MemoryVerdict:
    return MemoryVerdict(
        identical=result.identical, bytes_compared=result.bytes_total,
        pages_total=result.pages_total, pages_compared=result.pages_compared,
        pages_excluded=result.pages_excluded, pages_differing=result.pages_differing,
        exclusions=[Exclusion(start=e.start, end=e.end, reason=e.name) for e in result.exclusions],
        mismatches=[PageMismatchInfo(**vars(m)) for m in result.mismatches],
        seconds=round(result.seconds, 4), gib_per_s=round(result.gib_per_s, 3),
    )


def _config(r: Resolved) -> RunConfig:
    o = r.options
    return RunConfig(
        arch=r.arch, guest=r.guest.name, accel=r.accel, accel_reason=r.accel_reason,
        dirty_ring_size=r.ring,
        dirty_tracking="tcg" if r.accel == "tcg" else
        ("kvm-dirty-ring" if r.ring else "kvm-dirty-bitmap"),
        ram_mib=r.guest.ram_mib, smp=r.guest.smp, transport=o.transport,
        qemu_src=str(r.qemu_src.path), qemu_dst=str(r.qemu_dst.path),
        qemu_src_version=r.qemu_src.version_str, qemu_dst_version=r.qemu_dst.version_str,
        workload=workload_summary(r.guest),
        min_passes=o.min_passes, throttle_bandwidth=o.throttle_mib_s * MiB,
        converge_downtime_ms=o.downtime_limit_ms, forced=list(r.forced),
    )


def workload_summary(guest: WaveGuest | LinuxGuest) -> dict[str, int | str]:
    if isinstance(guest, LinuxGuest):
        w = guest.workload
        return {"kind": f"linux-{w.kind}", "size": w.size, "hot": w.hot or "",
                "rate_mib_s": w.rate_mib_s or 0}
    return {"kind": guest.name, "start": guest.wave.start, "end": guest.wave.end,
            "stride": guest.wave.stride, "delta": guest.wave.delta}


def _rate(records: list[Record]) -> float | None:
    """MiB/s between the first and last progress record (host arrival times)."""
    if len(records) < 2 or records[-1].at <= records[0].at:
        return None
    pages = records[-1].int("pages") - records[0].int("pages")
    return round(pages * PAGE_SIZE / MiB / (records[-1].at - records[0].at), 1)


def guest_throughput(src: ConsoleView, dst: ConsoleView, t_start: float, t_end: float,
                     t_cont: float) -> GuestThroughput:
    """Guest write throughput before, during and after migration, from the
    progress records' host arrival times (the guest clock stops with the VM)."""
    before = [r for r in src.find("progress") if r.at < t_start]
    during = [r for r in src.find("progress") if t_start <= r.at <= t_end]
    after = [r for r in dst.find("progress") if r.at >= t_cont]
    edge = before[-1:] + during
    gaps = [b.at - a.at for a, b in itertools.pairwise(edge)]
    return GuestThroughput(
        before_mib_s=_rate(before), during_mib_s=_rate(edge), after_mib_s=_rate(after),
        max_gap_during_ms=round(max(gaps) * 1000) if gaps else None,
        samples=[ThroughputSample(side=side, t_s=round(r.at - t_start, 3),
                                  written_mib=r.int("written_mib"))
                 for side, recs in (("src", before + during), ("dst", after)) for r in recs],
    )


def _host(kvm: KvmInfo) -> HostSummary:
    return HostSummary(kvm_flavour=kvm.flavour, kvm_accessible=kvm.accessible,
                       kvm_caps=dict(kvm.caps), dirty_ring_max_entries=kvm.dirty_ring_max_entries)


def new_report(verdict: str, exit_code: int, error: str | None = None) -> RunReport:
    return RunReport(qmpctl_version=__version__,
                     started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                     verdict=verdict, exit_code=exit_code, error=error)


_VERDICT = {1: "mismatch", 2: "usage-error", 3: "environment-error", 4: "migration-failed",
            5: "guest-failed", 130: "interrupted"}


@dataclass
class Run:
    """State of one run, so cleanup can see what exists whatever failed."""

    r: Resolved
    report: RunReport
    dir: RunDir
    src: QemuMachine | None = None
    dst: QemuMachine | None = None
    migration_started: bool = False
    migration_completed: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def machine(self, side: str, binary: QemuBinary) -> QemuMachine:
        # Each side's NIC loops back through its own UDP port on 127.0.0.1.
        spec = machine_spec(self.r, self.dir, side, binary, _free_port(socket.SOCK_DGRAM))
        return QemuMachine(spec, self.dir.side(side, "log"))


async def _start_source(run: Run) -> None:
    """Launch the source and wait until its workload runs (boot time in the report)."""
    r, rep, o = run.r, run.report, run.r.options
    t0 = time.monotonic()
    run.src = run.machine("src", r.qemu_src)
    await run.src.launch()
    await run.src.console.wait_for(r.guest.ready, o.boot_timeout_s, "the workload to start")
    rep.boot_s = round(time.monotonic() - t0, 3)
    if o.dirty_rate_probe:
        # Off by default: on kvm_pvm a dirty-ring calc-dirty-rate before the
        # migration stalls the vCPU during it and once lost pages (see README).
        mode = "dirty-ring" if r.ring else ("dirty-bitmap" if r.accel == "kvm" else "page-sampling")
        try:
            rep.dirty_rate = await probe_dirty_rate(run.src, mode)
        except QmpctlError as exc:
            if r.ring:
                raise HostError(f"dirty ring not active on the source: {exc}") from exc
            raise
    rep.guest_checks += await r.guest.before_migration(run.src.console, o.boot_timeout_s)


def _stats(outcome: migration.MigrationOutcome, r: Resolved, progress: int) -> MigrationStats:
    return MigrationStats(
        status=outcome.status, passes=outcome.passes, throttled_passes=outcome.throttled_passes,
        pages_resent=outcome.pages_resent, transferred_bytes=outcome.transferred,
        total_time_ms=outcome.total_time_ms, downtime_ms=outcome.downtime_ms,
        setup_time_ms=outcome.setup_time_ms, wall_s=outcome.wall_s,
        samples=[PassStat(**vars(s)) for s in outcome.samples],
        workload_progress_during=progress, workload_progress_unit=r.guest.progress_unit,
        workload_stalled=outcome.workload_stalled,
        mode="postcopy" if r.options.postcopy else "precopy",
        postcopy_at_pass=outcome.postcopy_at_pass, postcopy_requests=outcome.postcopy_requests,
        error_desc=outcome.error_desc if outcome.status != "completed" else None,
    )


async def _migrate(run: Run, hooks: Hooks, progress: migration.ProgressFn | None) -> float:
    """Destination, migration, ring evidence; returns when the migration began."""
    r, rep, o = run.r, run.report, run.r.options
    assert run.src is not None
    src = run.src
    dst = run.dst = run.machine("dst", r.qemu_dst)
    await dst.launch()
    uri = (f"unix:{run.dir.side('mig', 'sock')}" if o.transport == "unix"
           else f"tcp:127.0.0.1:{_free_port()}")
    plan = migration.MigrationPlan(
        uri=uri, min_passes=o.min_passes, throttle_bandwidth=o.throttle_mib_s * MiB,
        converge_downtime_ms=o.downtime_limit_ms, timeout=o.timeout_s, postcopy=o.postcopy,
    )
    await migration.prepare(src, dst, plan)

    async def on_pass(n: int) -> None:
        if hooks.on_pass is not None:
            await hooks.on_pass(n, src, dst)

    run.migration_started = True
    work_before = r.guest.work_done(src.console.view())
    t1 = time.monotonic()
    try:
        outcome = await migration.run(
            src, dst, plan, progress, on_pass,
            dirtied_again=lambda: r.guest.work_done(src.console.view()) > work_before)
    except MigrationFailed as exc:
        failed = migration.MigrationOutcome(status="failed", error_desc=exc.error_desc,
                                            wall_s=round(time.monotonic() - t1, 3))
        rep.migration = _stats(failed, r, 0)
        raise
    finally:
        run.timings["migrate"] = round(time.monotonic() - t1, 3)
    run.migration_completed = True
    rep.migration = _stats(outcome, r, r.guest.work_done(src.console.view()) - work_before)
    if r.ring:
        rep.dirty_ring = ring_evidence(src.log_path.read_text(errors="replace"))
        rep.guest_checks.append(GuestCheck(
            name="dirty-ring-harvested", stage="source, during migration",
            ok=rep.dirty_ring.pages_reaped > 0,
            detail=f"{rep.dirty_ring.pages_reaped} pages reaped from the rings in "
                   f"{rep.dirty_ring.reaps} reaps, {rep.dirty_ring.full_exits} ring-full exits "
                   "(QEMU trace kvm_dirty_ring_reap/full)"))
    return t1


def _verify_memory(run: Run) -> None:
    """Both RAM images page by page (source postmigrate, destination paused)."""
    r, rep = run.r, run.report
    assert run.src is not None and run.dst is not None
    t2 = time.monotonic()
    exclusions = [Region(reason, start, end) for start, end, reason in r.options.exclude]
    view = run.src.console.view()
    layout = r.guest.layout(view)  # ITS tables as the guest announced them
    with RamImage(run.src.spec.ram_path) as si, RamImage(run.dst.spec.ram_path) as di:
        result = compare_images(si, di, layout, exclusions)
    rep.memory = memory_verdict(result)
    rep.its_tables = [its_table_verdict(t, result, layout) for t in its_tables(view)]
    run.timings["compare"] = round(time.monotonic() - t2, 3)
    rep.guest_checks += r.guest.image_checks(run.dst.spec.ram_path,
                                             "destination image, before resume")


async def _resume_and_check(run: Run, t_migrate: float) -> None:
    """The guest must keep running where it landed, and stay consistent."""
    r, rep, o = run.r, run.report, run.r.options
    assert run.src is not None and run.dst is not None
    dst = run.dst
    t_cont = time.monotonic()
    await dst.execute("cont")
    resumed = await r.guest.wait_resumed(dst.console, o.boot_timeout_s)
    rep.guest_checks.append(GuestCheck(name="workload-resumes", stage="destination, after cont",
                                       ok=True, detail=resumed))
    rep.guest_checks += await r.guest.after_resume(dst.console, o.boot_timeout_s)
    await dst.execute("stop")
    rep.guest_checks += r.guest.image_checks(dst.spec.ram_path, "destination image, after resume")
    if isinstance(r.guest, LinuxGuest):
        rep.guest_throughput = guest_throughput(
            run.src.console.view(), dst.console.view(), t_migrate,
            t_migrate + run.timings["migrate"], t_cont)


async def _migrate_and_verify(run: Run, hooks: Hooks,
                              progress: migration.ProgressFn | None) -> None:
    await _start_source(run)
    t_migrate = await _migrate(run, hooks, progress)
    if hooks.before_verify is not None:
        assert run.src is not None and run.dst is not None
        await hooks.before_verify(run.src.spec.ram_path, run.dst.spec.ram_path)
    _verify_memory(run)
    await _resume_and_check(run, t_migrate)


async def _cleanup(run: Run) -> None:
    """Never raises. Cancels an unfinished migration so the source runs again."""
    src, dst = run.src, run.dst
    if src is not None and src.is_running():
        if run.migration_started and not run.migration_completed:
            run.report.source_state_after = await migration.cancel(src)
        elif run.report.source_state_after is None:
            with contextlib.suppress(QmpctlError):
                run.report.source_state_after = await src.status()
    for machine in (dst, src):
        if machine is not None:
            await machine.shutdown()
    if run.r.options.artifacts is not None:
        with contextlib.suppress(OSError):
            run.dir.keep_logs(run.r.options.artifacts)
    run.dir.remove()


async def run_migrate(r: Resolved, hooks: Hooks | None = None,
                      progress: migration.ProgressFn | None = None) -> RunReport:
    """Run a resolved migration end to end; always returns a report."""
    report = new_report("verified", 0)
    report.config, report.host = _config(r), _host(r.kvm)
    run = Run(r, report, RunDir.create())
    t0 = time.monotonic()
    try:
        try:
            await _migrate_and_verify(run, hooks or Hooks(), progress)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            raise Interrupted("interrupted; migration cancelled") from None
    except QmpctlError as exc:
        report.error = exc.message
        report.exit_code = int(exc.exit_code)
    finally:
        await _cleanup(run)
        run.timings["total"] = round(time.monotonic() - t0, 3)
        report.timings_s = run.timings
    if report.exit_code == 0:
        failed = (report.memory is not None and not report.memory.identical) or any(
            not c.ok for c in report.guest_checks) or any(
            not t.identical for t in report.its_tables)
        if failed:
            report.exit_code = 1
    report.verdict = "verified" if report.exit_code == 0 else _VERDICT.get(  # type: ignore[assignment]
        report.exit_code, "environment-error")
    return report


def error_report(exc: QmpctlError) -> RunReport:
    """A report for a run that failed before starting (bad input, host)."""
    return new_report(_VERDICT.get(int(exc.exit_code), "environment-error"),
                      int(exc.exit_code), exc.message)
