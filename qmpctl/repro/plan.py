"""What a stand-alone reproducer does, derived from one lost run's report
(pure): the QEMU command lines with the run's own paths made placeholders,
the same capabilities and parameters, the same hold-back and release, and
the faults qmpctl injected. The reproducer's script reads it as plan.json,
so this model is its whole contract; anything the script cannot replay is
refused here, naming it, rather than reproduced differently."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Literal

from pydantic import Field

from ..core.errors import UsageError
from ..core.model import Model
from ..faults.spec import parse_fault
from ..guests.base import ram_layout
from ..migration.driver import StuckAfter, stuck_after
from ..migration.policy import Converge
from ..report.models import RunReport

RUN, REPRO, PORT = "{run}", "{repro}", "{port}"  # filled in by the script
GUEST_DIR = "guest"
# The policy actions the script replays: the hold-back's end and its release.
REPLAYED_ACTIONS = ("EndHoldBack", "SetParameters")

Side = Literal["src", "dst"]


class RamSegmentSpec(Model):
    """One piece of the RAM file and where the guest sees it."""

    gpa: int
    offset: int
    size: int


class CorruptDst(Model):
    """`--fault corrupt-dst=GPA` replayed: one destination byte flipped (xor 0x5a)
    after the migration, as qmpctl's injector does."""

    gpa: int
    offset: int = Field(description="the byte's offset in the destination's RAM file")


class SideFiles(Model):
    """Where a QEMU meets the script: sockets it connects to, its RAM file."""

    qmp_socket: str
    serial_socket: str
    ram_file: str


class ReproPlan(Model):
    """Everything repro.py needs; paths hold {run} (its run directory),
    {repro} (the reproducer's directory) and {port} (a free TCP port)."""

    run: str = Field(description="the run reproduced: qmpctl version and start time")
    argv: dict[Side, list[str]]
    files: dict[Side, SideFiles]
    uri: str
    capabilities: dict[str, bool]
    parameters: dict[str, int | str | bool]
    min_passes: int
    hold_timeout_s: float
    release: dict[str, int] = Field(description="parameters set once the hold-back ends")
    boot_timeout_s: float = Field(description="the guest's wave must run by then")
    migration_timeout_s: float = Field(description="the migration must end by then")
    stuck_s: float = Field(description="a stream that sends nothing this long is stuck: "
                                       "cancelled, as qmpctl does")
    stuck_why: str
    ram_segments: list[RamSegmentSpec]
    exclude: list[tuple[int, int]] = Field(
        default_factory=list, description="guest-physical ranges left out, as qmpctl did")
    corrupt_dst: list[CorruptDst] = Field(default_factory=list)
    guest_image: str = Field(description="the guest image, relative to the reproducer")


def refusal(report: RunReport) -> str | None:
    """Why this report cannot be turned into a reproducer, or None (pure)."""
    c = report.config
    if c is None:
        return f"the run ended before it was configured ({report.verdict}: {report.error})"
    if report.verdict == "verified":
        return "the run verified: no page was lost, there is nothing to reproduce"
    if report.verdict != "mismatch":
        return (f"the run ended {report.verdict}, not mismatch: no lost page to reproduce"
                + (f" ({report.error})" if report.error else ""))
    if (not c.qemu_argv_src or not c.qemu_argv_dst or c.run_dir is None or not c.migration_uri
            or c.hold_timeout_s is None):
        return (f"the report (qmpctl {report.qmpctl_version}) does not record the QEMU command "
                "lines; rerun with this qmpctl")
    if c.arch != "x86_64" or c.guest != "wave":
        return (f"the reproducer drives the x86_64 bare-metal wave guest; this run is "
                f"{c.arch} {c.guest}")
    if c.topology != "local" or c.destination_host is not None:
        return "the destination ran in another namespace or host; the reproducer is one host"
    if c.transport not in ("unix", "tcp"):
        return f"transport {c.transport}: the reproducer migrates over unix or tcp"
    if report.hops or report.cancelled_migration is not None:
        return "the run migrated more than once (--cancel-at or a guest's hops)"
    if report.dirty_rate is not None:
        return "the run probed calc-dirty-rate before migrating; the reproducer does not"
    m = report.migration
    if m is None:
        return "the report has no migration"
    if m.mode != "precopy" or c.migration_settings.capabilities.get("postcopy-ram"):
        return "the run used postcopy; the reproducer replays precopy's hold-back only"
    if odd := sorted({d.action for d in m.decisions} - set(REPLAYED_ACTIONS)):
        return f"the policy took actions the reproducer does not replay: {', '.join(odd)}"
    if any(f.feature == "vcpu-dirty-limit" for f in m.features):
        return "the run set a vCPU dirty limit before migrating; the reproducer does not"
    if odd := sorted({f.fault.partition("=")[0] for f in report.faults} - {"corrupt-dst"}):
        return f"faults the reproducer cannot inject: {', '.join(odd)} (only corrupt-dst)"
    return None


def _paths(report: RunReport) -> list[tuple[str, str]]:
    """(the run's path, its placeholder), longest first."""
    c = report.config
    assert c is not None and c.run_dir is not None
    pairs = [(c.run_dir, RUN)] + ([(c.run_ram_dir, RUN)] if c.run_ram_dir else [])
    return sorted(pairs, key=lambda p: -len(p[0]))


def _placeheld(arg: str, pairs: list[tuple[str, str]]) -> str:
    for path, placeholder in pairs:
        arg = arg.replace(path.rstrip("/") + "/", placeholder + "/")
    return arg


def guest_kernel(argv: list[str]) -> str:
    """The -kernel image a command line boots (pure)."""
    try:
        return argv[argv.index("-kernel") + 1]
    except (ValueError, IndexError):
        raise UsageError("the source's command line boots no -kernel image") from None


def chardev_path(argv: list[str], chardev_id: str) -> str:
    """`path=` of the socket chardev `chardev_id` (pure)."""
    for arg in argv:
        if arg.startswith(f"socket,id={chardev_id},") and (
                found := re.search(r",path=((?:[^,]|,,)*)", arg)):
            return found.group(1).replace(",,", ",")
    raise UsageError(f"the command line has no socket chardev {chardev_id!r}")


def ram_file(argv: list[str]) -> str:
    """`mem-path=` of the guest RAM's memory-backend-file (pure)."""
    for arg in argv:
        if arg.startswith("memory-backend-file,") and (
                found := re.search(r",mem-path=((?:[^,]|,,)*)", arg)):
            return found.group(1).replace(",,", ",")
    raise UsageError("the command line has no memory-backend-file for guest RAM")


def stuck_bound(report: RunReport, buffered: int) -> StuckAfter:
    """qmpctl's bound for a stream that sends nothing, from the run's throttle
    and `buffered` (this host's socket send buffer) (pure)."""
    assert report.config is not None
    bandwidth = report.config.migration_settings.parameters.get("max-bandwidth")
    return stuck_after(float(bandwidth) if isinstance(bandwidth, int) and bandwidth > 0
                       else None, buffered)


def make_plan(report: RunReport, stuck: StuckAfter, boot_timeout_s: float = 60.0,
              migration_timeout_s: float = 300.0) -> ReproPlan:
    """The reproducer's plan for a lost run (pure); UsageError names why not.
    The timeouts are qmpctl migrate's defaults (the report does not keep them)."""
    if (why := refusal(report)) is not None:
        raise UsageError(f"cannot reproduce this run: {why}")
    c, m = report.config, report.migration
    assert c is not None and m is not None and c.migration_uri is not None
    assert c.hold_timeout_s is not None
    pairs = _paths(report)
    kernel = guest_kernel(c.qemu_argv_src)
    image = f"{GUEST_DIR}/{PurePath(kernel).name}"
    argv: dict[Side, list[str]] = {}
    files: dict[Side, SideFiles] = {}
    sides: tuple[tuple[Side, list[str]], ...] = (("src", c.qemu_argv_src),
                                                 ("dst", c.qemu_argv_dst))
    for side, raw in sides:
        if guest_kernel(raw) != kernel:
            raise UsageError("cannot reproduce this run: source and destination boot "
                             "different images")
        args = [f"{REPRO}/{image}" if a == kernel else _placeheld(a, pairs) for a in raw]
        if leftover := [a for a in args if any(p.rstrip("/") in a for p, _ in pairs)]:
            raise UsageError(f"cannot reproduce this run: {leftover[0]!r} names the run "
                             "directory in a way the reproducer cannot replace")
        argv[side] = args
        files[side] = SideFiles(qmp_socket=chardev_path(args, "qmp0"),
                                serial_socket=chardev_path(args, "serial0"),
                                ram_file=ram_file(args))
    uri = _placeheld(c.migration_uri, pairs)
    if uri.startswith("tcp:"):
        uri = uri.rsplit(":", 1)[0] + ":" + PORT
    layout = ram_layout("x86_64", c.ram_mib)
    corrupt = []
    for record in report.faults:
        gpa = int(parse_fault(record.fault).value or 0)
        corrupt.append(CorruptDst(gpa=gpa, offset=layout.offset(gpa)))
    return ReproPlan(
        run=f"qmpctl {report.qmpctl_version}, started {report.started_at}",
        argv=argv, files=files, uri=uri,
        capabilities=dict(c.migration_settings.capabilities),
        parameters=dict(c.migration_settings.parameters),
        min_passes=c.min_passes,
        hold_timeout_s=c.hold_timeout_s,
        release={"max-bandwidth": Converge().bandwidth,
                 "downtime-limit": c.converge_downtime_ms},
        ram_segments=[RamSegmentSpec(gpa=s.gpa, offset=s.offset, size=s.size)
                      for s in layout.segments],
        exclude=[(e.effective_start, e.effective_end)
                 for e in (report.memory.exclusions if report.memory else [])],
        corrupt_dst=corrupt, guest_image=image, boot_timeout_s=boot_timeout_s,
        migration_timeout_s=migration_timeout_s, stuck_s=stuck.seconds, stuck_why=stuck.why)
