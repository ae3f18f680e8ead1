"""What the user asked for, checked against the host before anything starts.

`resolve()` turns `MigrateOptions` into a `Resolved` run: every option
validated, the accelerator chosen (and why), the guest built, the QEMU
binaries found. Bad input raises UsageError here, never mid-run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, create_model

from ..core.errors import HostError, UsageError
from ..core.model import Model
from ..core.units import PAGE_SIZE, MiB
from ..faults.spec import FaultSpec, fault_problems, parse_fault
from ..guests.base import RAM_BASE, ram_layout
from ..guests.its import ItsGuest
from ..guests.kernel import Handshake, KernelGuest
from ..guests.linux import LinuxGuest, LinuxWorkload
from ..guests.protocol import Guest
from ..guests.wave import SMALL_RAM_MIB, WaveGuest, big_stride, default_wave, with_hole
from ..host import ktrace
from ..host.kvm import ARCHES, Arch, KvmInfo, inside_lab, kvm_can_run, probe_kvm
from ..host.memory import mem_total
from ..host.netns import check_host as check_netns_host
from ..host.qemu import MachineType, QemuBinary, cpu_models, find_qemu, machine_types
from ..migration.features import Feature, RunFacts, option_fields
from ..migration.features import build_features as build_registry_features
from ..migration.settings import MigrationSettings, parse_capability, parse_setting
from ..qemu.cmdline import DEFAULT_MACHINE, Accel
from ..qemu.rundir import run_root_problem
from ..verify.compare import exclusion_problems
from ..verify.kring import KERNEL_EVENTS
from ..verify.ramimage import Region
from ..verify.wave import WaveParams

AccelChoice = Literal["auto", "kvm", "tcg"]
DEFAULT_RING = 4096
DEFAULT_RAM = {"baremetal": 160, "linux": 512, "kernel": 256}
MIN_RAM_MIB = 32
# A big guest's held-back pass resends what one wave pass dirties in about
# this many seconds (what the 100 MiB default wave takes at 64 MiB/s).
HELD_PASS_S = 2
MAX_SMP = 8
Transport = Literal["unix", "tcp", "file"]
Topology = Literal["local", "netns"]
DstVia = Literal["exec", "ssh"]
DEFAULT_DST_QMPCTL = "python3 -m qmpctl"
DEFAULT_DST_ROOT = "/dev/shm"
DEFAULT_THROTTLE = 64  # MiB/s
Verify = Literal["bytes", "hash"]
# Where the source can be cancelled from QMP on purpose. `device` lasts the
# milliseconds between migrate-continue and completion: not reachable on demand.
CancelStatus = Literal["setup", "active", "pre-switchover"]


# The `qmpctl migrate --help` panels the options are grouped in.
GUEST, KERNEL, TOPOLOGY = "Guest", "Kernel guest", "Topology"
MIGRATION, TIMEOUTS_PANEL, VERIFY = "Migration", "Timeouts", "Verification and output"


def Opt(default: Any, panel: str, help: str) -> Any:
    """A migrate option: its default (None: not given, resolved by
    `resolve`), the `--help` panel it is listed in and its help."""
    return Field(default, description=help, json_schema_extra={"panel": panel})


if TYPE_CHECKING:  # its fields are read through each feature's own model
    _FeatureFields = Model
else:
    _FeatureFields = create_model(
        "FeatureFields", __base__=Model,
        **{name: (info.annotation, info) for name, info in option_fields().items()})


class MigrateOptions(_FeatureFields):
    """What the user asked for. Field names are the CLI's option names with
    underscores, so `qmpctl migrate --dirty-ring 1024` and the pytest plugin's
    `qmpctl_migrate(dirty_ring=1024)` are the same thing. The migration
    features' own options (`--multifd`, `--xbzrle-cache`, ...) come first,
    composed in from their classes in `qmpctl.migration.features`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The guest and how it runs
    arch: str = Opt("x86_64", GUEST, "Guest architecture: x86_64 or aarch64")
    guest: Literal["baremetal", "linux", "kernel"] = Opt("baremetal", GUEST,
        "baremetal (x86 wave / arm64 ITS guest), linux (Debian kernel + guestload) or kernel "
        "(your own image: --kernel)")
    workload: str = Opt("wave", GUEST, "Linux guests: wave, random, hotset, rate or readmostly")
    workload_size: str = Opt("64M", GUEST, "Linux guests: e.g. 64M, 1G or 25%")
    hot: str | None = Opt(None, GUEST, "hotset: X,Y = X% of pages take Y% of writes")
    rate: int | None = Opt(None, GUEST, "rate workload: target MiB/s")
    accel: AccelChoice = Opt("auto", GUEST, "auto (KVM when it can run the guest), kvm, tcg")
    dirty_ring: int | None = Opt(None, GUEST,
        "KVM dirty ring entries per vCPU; 0 = bitmap [default: 4096 with KVM]")
    ram: int | None = Opt(None, GUEST, "Guest RAM in MiB (160; Linux 512; kernel 256)")
    smp: int | None = Opt(None, GUEST,
        "vCPUs (default: x86 wave 1, arm64 ITS 2 or --writers + 1); the x86 wave runs a writer on"
        " each")
    writers: int | None = Opt(None, GUEST,
        "arm64 ITS guest: vCPUs 1..N run the wave, each over its own slice, while vCPU 0 issues "
        "LPIs (at most --smp - 1) [default: 1]")
    wave_start: int | None = Opt(None, GUEST,
        "Wave start, MiB from RAM's first address (x86: guest-physical; RAM above 3 GiB sits from"
        " 4096)")
    wave_end: int | None = Opt(None, GUEST,
        "Wave end, MiB likewise; a wave across x86's PCI hole skips it")
    stride: int | None = Opt(None, GUEST,
        "Bytes between two written bytes [default: 4096; above 2 GiB of RAM: a power of two "
        "keeping a pass within 262144 writes]")
    delta: int = Opt(1, GUEST, "Increment per pass (1..255)")
    force: bool = Opt(False, GUEST,
        "Run a configuration known to lose pages (arm64 KVM ring without ring-with-bitmap); the "
        "report lists what was forced")

    # --guest kernel: an image of the user's own
    kernel: Path | None = Opt(None, KERNEL,
        "--guest kernel: the image to boot (ELF, flat binary, bzImage, Image), e.g. a "
        "kvm-unit-tests *.flat")
    initrd: Path | None = Opt(None, KERNEL, "--guest kernel: initrd")
    append: str | None = Opt(None, KERNEL,
        "--guest kernel: kernel command line (kvm-unit-tests: the test's arguments)")
    machine_opt: tuple[str, ...] = Opt((), KERNEL,
        "--guest kernel: extra -machine KEY=VALUE (repeatable)")
    handshake: Handshake = Opt("kvm-unit-tests", KERNEL,
        "--guest kernel: when to migrate: kvm-unit-tests (the guest asks, then waits for a key; "
        "any number of times), line (--ready-line), none (--migrate-after)")
    ready_line: str | None = Opt(None, KERNEL,
        "--handshake line: regex of the line the guest prints once its workload runs")
    migrate_after: float | None = Opt(None, KERNEL, "--handshake none: seconds after launch")
    guest_timeout: float = Opt(120.0, KERNEL,
        "--guest kernel: seconds the guest may take after a resume to ask again or end with its "
        "result")

    # Where the two QEMUs run and how the stream gets there
    transport: Transport | None = Opt(None, TOPOLOGY,
        "unix, tcp (loopback; with --topology netns, across the veth) or file (mapped-ram; the "
        "destination loads it afterwards) [default: unix; tcp with --topology netns]")
    topology: Topology = Opt("local", TOPOLOGY,
        "local (both QEMUs here) or netns (each in its own network namespace, joined by a veth "
        "pair, 192.0.2.1 -> 192.0.2.2; needs root and iproute2)")
    dst_via: DstVia = Opt("exec", TOPOLOGY,
        "--topology netns: drive the destination's namespace with exec (`ip netns exec`) or ssh "
        "(an sshd the run starts there, with keys of its own: the --dst-host path, on one "
        "machine)")
    dst_host: str | None = Opt(None, TOPOLOGY,
        "[USER@]HOST: run the destination QEMU and qmpctl agent on that host through ssh (key "
        "authentication; see docs/remote.md)")
    dst_addr: str | None = Opt(None, TOPOLOGY,
        "--dst-host: the destination's address for the migration stream, port 4444 [default: "
        "HOST]")
    dst_root: str | None = Opt(None, TOPOLOGY,
        "--dst-host: directory for the run's files on that host [default: /dev/shm]")
    dst_qmpctl: str | None = Opt(None, TOPOLOGY,
        "--dst-host, --dst-via ssh: the command that runs qmpctl there [default: python3 -m "
        "qmpctl; --dst-via ssh: this qmpctl]")
    ssh_option: tuple[str, ...] = Opt((), TOPOLOGY,
        "--dst-host: an ssh -o option NAME=VALUE (repeatable), e.g. IdentityFile=~/.ssh/qmpctl, "
        "Port=2222")
    qemu: str | None = Opt(None, TOPOLOGY,
        "QEMU for both sides: a path, or a version `qmpctl doctor` lists (7.2, 10.0)")
    qemu_src: str | None = Opt(None, TOPOLOGY,
        "QEMU for the source: path or version; two versions pin the older one's machine type")
    qemu_dst: str | None = Opt(None, TOPOLOGY, "QEMU for the destination: path or version")

    # How the migration is driven
    min_passes: int = Opt(3, MIGRATION, "Dirty syncs before convergence is allowed")
    throttle: int | None = Opt(None, MIGRATION,
        "MiB/s while convergence is held back [default: 64; wave guests above 2 GiB: what one "
        "wave pass dirties per 2 s]")
    downtime_limit: int = Opt(1000, MIGRATION, "ms allowed once it may converge")
    capability: tuple[str, ...] = Opt((), MIGRATION,
        "Migration capability NAME or NAME=on|off on both sides (repeatable; checked against each"
        " QEMU's QMP schema before launch)")
    parameter: tuple[str, ...] = Opt((), MIGRATION,
        "Migration parameter NAME=VALUE on both sides (repeatable; checked likewise)")
    postcopy: bool = Opt(False, MIGRATION,
        "Switch to postcopy (migrate-start-postcopy) once memory was re-dirtied")
    postcopy_recover: bool = Opt(False, MIGRATION,
        "With --postcopy: break the channel after the switchover (migrate-pause), then recover "
        "(migrate-recover + migrate resume=true)")
    postcopy_recover_fail: bool = Opt(False, MIGRATION,
        "With --postcopy-recover: the first recovery attempt fails too (its listener hangs up), "
        "so the source pauses again and is recovered a second time")
    cancel_at: CancelStatus | None = Opt(None, MIGRATION,
        "Cancel a first migration in setup, active or pre-switchover, check the source runs on "
        "and its workload is sound, then migrate to a fresh destination")
    vcpu_dirty_limit: int | None = Opt(None, MIGRATION,
        "set-vcpu-dirty-limit MB/s on the running source before migrating (KVM dirty ring only); "
        "the report shows the guest's write rate before and after")
    dirty_rate_probe: bool = Opt(False, MIGRATION,
        "Run calc-dirty-rate on the source before migrating (on kvm_pvm this disturbs the "
        "migration that follows; docs/findings.md)")
    fault: tuple[str, ...] = Opt((), MIGRATION,
        "Inject WHAT@WHEN (repeatable): kill-src, kill-dst, stop-src, stop-dst, drop-qmp-src, "
        "link-down, link-down-for=S, rate=MBIT (netns), corrupt-dst=GPA; WHEN = pass:N, "
        "status:NAME, postcopy, after:S")

    # Timeouts, seconds
    timeout: float = Opt(300.0, TIMEOUTS_PANEL, "Seconds the migration may take")
    hold_timeout: float = Opt(30.0, TIMEOUTS_PANEL,
        "Seconds to wait for the guest to re-dirty sent memory before converging anyway (the "
        "verdict is then inconclusive)")
    boot_timeout: float = Opt(60.0, TIMEOUTS_PANEL,
        "Seconds to wait for the guest's workload (boot, checks, resume)")

    # What is compared and what is kept
    exclude: tuple[str, ...] = Opt((), VERIFY,
        "START-END[:REASON] guest-physical range left out of the verdict (repeatable; always "
        "listed in the report)")
    verify: Verify | None = Opt(None, VERIFY,
        "bytes: memcmp of both RAM images; hash: xxh3-64 per page on each side, only digests "
        "compared (what a destination on another host sends) [default: bytes; hash with "
        "--topology netns, by qmpctl agent on the destination's side]")
    compare_method: Literal["auto", "map", "read", "hash"] = Opt("auto", VERIFY,
        "auto|map|read|hash: how a same-host run compares the RAM images. auto: the fastest on "
        "this host by a short probe (cached per host, boot, kernel and RAM file system); map: "
        "memcmp of the mappings; read: preadv + memcmp; hash: xxh3-64 per page, differing pages "
        "then compared byte by byte")
    trace_kernel: Literal["on", "off", "auto"] = Opt("auto", VERIFY,
        "on|off|auto: record KVM's dirty-ring tracepoints in a tracefs instance of qmpctl's own "
        "and report per vCPU what the kernel pushed and QEMU harvested (root, KVM dirty ring). "
        "auto: where possible (its cost: docs/kernel-ring.md)")
    artifacts: Path | None = Opt(None, VERIFY, "Keep QEMU and serial logs here")
    ram_dir: Path | None = Opt(None, VERIFY,
        "A directory on tmpfs for the guest RAM files of the QEMUs on this host (a destination "
        "reached over ssh keeps its own); on a tmpfs mounted huge=always guest RAM is on 2 MiB "
        "pages, which compare at close to memory speed [default: the run directory on /dev/shm]")

    @classmethod
    def from_kwargs(cls, **kwargs: object) -> MigrateOptions:
        """Build from keyword arguments; a bad one is a UsageError naming it."""
        try:
            return cls.model_validate(kwargs)
        except ValidationError as exc:
            raise UsageError("; ".join(_problem(e) for e in exc.errors())) from exc


def _problem(error: Any) -> str:
    """A pydantic validation error in the CLI's words (`--transport 'x': choose ...`)."""
    name = str(error["loc"][0]) if error["loc"] else "options"
    option = "--" + name.replace("_", "-")
    if error["type"] == "extra_forbidden":
        return f"unknown migrate option {name!r}"
    if error["type"] == "literal_error":
        choices = error["ctx"]["expected"].replace("'", "")
        return f"{option} {error['input']!r}: choose {choices}"
    return f"{option} {error['input']!r}: {error['msg']}"


# Options that belong to some guests only: set for another, they would be
# silently ignored, so they are a usage error instead.
GUEST_OPTIONS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("workload", "workload_size", "hot", "rate"), ("linux",)),
    **dict.fromkeys(("wave_start", "wave_end", "stride", "delta", "writers"), ("baremetal",)),
    **dict.fromkeys(("kernel", "initrd", "append", "machine_opt", "handshake", "ready_line",
                     "migrate_after", "guest_timeout"), ("kernel",)),
}


def option_problems(opts: MigrateOptions) -> list[str]:
    """Options given for a guest they do not apply to, and missing ones (pure)."""
    problems = [
        f"--{name.replace('_', '-')} applies only to --guest {' or '.join(guests)}, "
        f"not --guest {opts.guest}"
        for name, guests in GUEST_OPTIONS.items()
        if opts.guest not in guests
        and getattr(opts, name) != MigrateOptions.model_fields[name].default]
    if opts.guest == "kernel" and opts.kernel is None:
        problems.append("--guest kernel needs --kernel FILE (the image to boot)")
    return problems


TIMEOUTS = ("timeout", "hold_timeout", "boot_timeout", "guest_timeout")


def timeout_problems(opts: MigrateOptions) -> list[str]:
    """Timeouts must be finite seconds: NaN compares false with everything, so
    it would read as "no limit" (pure)."""
    problems = [f"--{name.replace('_', '-')} {value}: must be a positive number of seconds"
                for name in TIMEOUTS
                if not (math.isfinite(value := getattr(opts, name)) and value > 0)]
    if opts.migrate_after is not None and not (math.isfinite(opts.migrate_after)
                                               and opts.migrate_after >= 0):
        problems.append(f"--migrate-after {opts.migrate_after}: must be a number of seconds "
                        ">= 0")
    return problems


def ram_size_problem(ram_mib: int, total: int | None) -> str | None:
    """RAM more than this host has at all: said before anything else (pure)."""
    if total is None or ram_mib * MiB <= total:
        return None
    return (f"--ram {ram_mib} MiB: more than this host's memory ({total // MiB} MiB in all); "
            "guest RAM lives in tmpfs files, two copies of it during a migration")


def parse_exclusion(text: str) -> Region:
    """`START-END[:REASON]`, guest-physical, hex or decimal."""
    rng, _, reason = text.partition(":")
    lo, sep, hi = rng.partition("-")
    try:
        if not sep:
            raise ValueError
        start, end = int(lo, 0), int(hi, 0)
    except ValueError:
        raise UsageError(f"--exclude {text!r}: expected START-END[:REASON], e.g. "
                         "0xa0000-0x100000:vga") from None
    if end <= start:
        raise UsageError(f"--exclude 0x{start:x}-0x{end:x}: empty range")
    if start % PAGE_SIZE or end % PAGE_SIZE:
        # Pages are compared whole: rounding would hide bytes nobody asked to hide.
        first, last = start - start % PAGE_SIZE, -(-end // PAGE_SIZE) * PAGE_SIZE
        raise UsageError(f"--exclude 0x{start:x}-0x{end:x}: not aligned to {PAGE_SIZE // 1024} "
                         f"KiB pages, which are compared whole; the pages it touches are "
                         f"0x{first:x}-0x{last:x}")
    return Region(reason or "excluded by --exclude", start, end)


def user_settings(opts: MigrateOptions) -> MigrationSettings:
    """--capability / --parameter as settings (checked against QEMU later)."""
    return MigrationSettings(
        capabilities=dict(parse_capability(c) for c in opts.capability),
        parameters=dict(parse_setting(p) for p in opts.parameter))


@dataclass(frozen=True)
class Resolved:
    """Options checked against the host: everything needed to start."""

    options: MigrateOptions
    arch: Arch
    accel: Accel
    accel_reason: str
    ring: int
    guest: Guest
    forced: tuple[str, ...]
    qemu_src: QemuBinary
    qemu_dst: QemuBinary
    kvm: KvmInfo
    exclusions: tuple[Region, ...]
    settings: MigrationSettings  # the user's explicit --capability / --parameter
    faults: tuple[FaultSpec, ...] = ()
    # Pinned for a cross-version run (`pc-i440fx-7.2`); None: the unversioned default.
    machine_type: str | None = None
    machine_type_reason: str = "same QEMU on both sides: its default"
    cpu: str | None = None  # -cpu pinned for a cross-version run; None: the default
    features: tuple[Feature, ...] = ()
    # --trace-kernel: whether the kernel's ring tracepoints are recorded, and why
    kernel_trace: tuple[bool, str] = (False, "--trace-kernel off")
    # What options left at None (not given) mean for this run
    throttle: int = DEFAULT_THROTTLE  # MiB/s while convergence is held back
    transport: Transport = "unix"
    verify: Verify = "bytes"

    @property
    def machine(self) -> str:
        """The machine type both sides run."""
        return self.machine_type or DEFAULT_MACHINE[self.arch]


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def choose_accel(requested: AccelChoice, arch: Arch, kvm: KvmInfo,
                 needs_64bit: bool, needs_pae: bool = False) -> tuple[Accel, str]:
    """Pick KVM when it can run this guest here, and say why (pure)."""
    if requested == "tcg":
        return "tcg", "requested"
    problem = None
    if not kvm_can_run(arch):
        problem = f"KVM cannot run {arch} guests on this host"
    elif not kvm.accessible:
        problem = f"KVM unavailable ({kvm.error or 'no /dev/kvm'})"
    elif needs_64bit and kvm.runs_64bit_guests is False:
        problem = f"this host's KVM ({kvm.flavour}) cannot run 64-bit guests"
    elif needs_pae and kvm.runs_pae_guests is False:
        problem = (f"this host's KVM ({kvm.flavour}) resets a 32-bit guest that turns on PAE "
                   "paging, which the wave guest needs to reach RAM above 4 GiB; use --accel "
                   "tcg, or a wave below 4 GiB (--wave-end)")
    if problem is None:
        return "kvm", "requested" if requested == "kvm" else "auto: KVM can run this guest"
    if requested == "kvm":
        raise UsageError(f"--accel kvm: {problem}")
    return "tcg", f"auto: {problem}"


ITS_RING_NEEDS_BITMAP = (
    "arm64 with the in-kernel ITS and the dirty ring needs "
    "KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP (225), which this kernel lacks: the ITS tables "
    "KVM writes into guest RAM at stop, with no vCPU running, would not be migrated")


POSTCOPY_SKIPS_BACKUP_BITMAP = (
    "postcopy with the dirty ring on arm64 KVM: QEMU reads the ring's backup bitmap only in "
    "the last precopy stage, which postcopy never runs, so ITS table pages KVM rewrites at "
    "stop would not be re-sent")


def ring_safety(arch: Arch, accel: Accel, ring: int, kvm: KvmInfo, force: bool,
                postcopy: bool = False) -> tuple[str, ...]:
    """Refuse configurations known to lose pages, unless forced (then say so)."""
    if arch != "aarch64" or accel != "kvm" or not ring:
        return ()
    known = []
    if not kvm.has_ring_with_bitmap:
        known.append((f"--dirty-ring {ring}", ITS_RING_NEEDS_BITMAP, "--dirty-ring 0"))
    if postcopy:
        known.append(("--postcopy", POSTCOPY_SKIPS_BACKUP_BITMAP, "--dirty-ring 0 or precopy"))
    if known and not force:
        option, why, instead = known[0]
        raise UsageError(f"{option}: {why}; use {instead}, or --force to run it anyway")
    return tuple(why for _, why, _ in known)


def resolve(opts: MigrateOptions, kvm: KvmInfo | None = None) -> Resolved:
    """Check every option before any QEMU starts; raise UsageError/HostError."""
    if opts.arch not in ARCHES:
        raise UsageError(f"unknown arch {opts.arch!r}; choose one of {', '.join(ARCHES)}")
    arch: Arch = opts.arch
    if problems := option_problems(opts) + compare_method_problems(opts):
        raise UsageError("; ".join(problems))
    kvm = kvm or probe_kvm()
    ram_mib = opts.ram if opts.ram is not None else DEFAULT_RAM[opts.guest]
    if ram_mib < MIN_RAM_MIB:
        # No fixed upper bound: what does not fit on this host is refused
        # before launch, naming how much is missing (runner.check_space).
        raise UsageError(f"--ram {ram_mib} MiB: must be at least {MIN_RAM_MIB}")
    if (problem := ram_size_problem(ram_mib, mem_total())) is not None:
        raise HostError(problem)  # before the guest is built: its wave would fail first
    if opts.min_passes < 1:
        raise UsageError("--min-passes must be at least 1")
    if (opts.throttle is not None and opts.throttle < 1) or opts.downtime_limit < 1:
        raise UsageError("--throttle and --downtime-limit must be positive")
    if problems := timeout_problems(opts):
        raise UsageError("; ".join(problems))
    if opts.ram_dir is not None and (problem := run_root_problem(opts.ram_dir)):
        raise UsageError(f"--ram-dir {opts.ram_dir}: {problem}")
    if opts.dirty_ring is not None and opts.dirty_ring < 0:
        raise UsageError("--dirty-ring must be >= 0 (0 = dirty bitmap)")
    if opts.smp is not None and not 1 <= opts.smp <= MAX_SMP:
        raise UsageError(f"--smp {opts.smp}: must be 1..{MAX_SMP}")
    if problem := writers_problem(opts, arch):
        raise UsageError(problem)
    guest = build_guest(opts, arch, ram_mib)
    guest.validate()
    throttle = opts.throttle if opts.throttle is not None else default_throttle(guest, ram_mib)
    needs_pae = isinstance(guest, WaveGuest) and arch == "x86_64" and guest.above_4g
    accel, reason = choose_accel(opts.accel, arch, kvm, guest.needs_64bit_kvm, needs_pae)
    if accel == "tcg" and opts.dirty_ring is not None:
        raise UsageError(f"--dirty-ring {opts.dirty_ring}: only applies to KVM, and this run "
                         f"uses TCG ({reason}); TCG tracks dirty pages itself")
    ring = (DEFAULT_RING if opts.dirty_ring is None else opts.dirty_ring) if accel == "kvm" else 0
    if ring:
        check_ring(ring, kvm)
    forced = ring_safety(arch, accel, ring, kvm, opts.force, opts.postcopy)
    features = build_features(opts, accel, ring, ram_mib)
    exclusions = tuple(parse_exclusion(e) for e in opts.exclude)
    if problems := exclusion_problems(list(exclusions), guest.layout()):
        raise UsageError("; ".join(problems))
    faults = tuple(parse_fault(f) for f in opts.fault)
    if problems := (fault_problems(list(faults), opts.topology) + corrupt_problems(faults, guest)
                    + ssh_problems(opts, faults)):
        raise UsageError("; ".join(problems))
    settings = user_settings(opts)
    check_topology(opts)
    src = find_qemu(arch, opts.qemu_src or opts.qemu)
    dst_name = opts.qemu_dst or opts.qemu
    dst = find_qemu(arch, dst_name) if dst_name != (opts.qemu_src or opts.qemu) else src
    if ring:
        check_ring_support(arch, ring, src, dst)
    machine_type, machine_reason = choose_machine_type(arch, src, dst, machine_types)
    cpu = choose_cpu(arch, accel, src, dst, cpu_models)
    _ = guest.kernel, guest.initrd  # raise HostError when an image was not built
    return Resolved(opts, arch, accel, reason, ring, guest, forced, src, dst, kvm,
                    exclusions, settings, faults, machine_type, machine_reason, cpu, features,
                    kernel_trace(opts.trace_kernel, accel, ring, lab=inside_lab()),
                    throttle=throttle, transport=effective_transport(opts),
                    verify=effective_verify(opts))


def default_throttle(guest: Guest, ram_mib: int) -> int:
    """--throttle not given: 64 MiB/s; for a guest above 2 GiB, what its
    wave or working set dirties resent in about HELD_PASS_S seconds (pure)."""
    if ram_mib > SMALL_RAM_MIB:
        if isinstance(guest, WaveGuest):
            return big_guest_throttle(guest.wave)
        if isinstance(guest, LinuxGuest):  # guestload rewrites its whole working set
            return max(DEFAULT_THROTTLE, guest.workload.size_mib(ram_mib) // HELD_PASS_S)
    return DEFAULT_THROTTLE


def kernel_trace(choice: str, accel: Accel, ring: int,
                 unavailable: Callable[[], str | None] | None = None,
                 lab: str | None = None) -> tuple[bool, str]:
    """--trace-kernel: (engaged, why). `on` where it cannot be fails before
    anything starts: a usage error without the ring, a host error without
    root, tracefs or the tracepoints. `auto` is on where its cost is small:
    not inside a lab (`lab`: its architecture), whose nested KVM under TCG
    took twice as long to run the x86 KVM tests with tracing (docs/kernel-ring.md)."""
    if choice == "off":
        return False, "--trace-kernel off"
    if accel != "kvm" or not ring:
        if choice == "on":
            raise UsageError("--trace-kernel on: the run does not use KVM's dirty ring "
                             "(--accel kvm with --dirty-ring N > 0)")
        return False, "--trace-kernel auto: the run does not use KVM's dirty ring"
    if choice == "auto" and lab is not None:
        return False, (f"--trace-kernel auto: inside the {lab} lab, where tracing doubles a "
                       "nested run's time; --trace-kernel on records it")
    why_not = (unavailable or (lambda: ktrace.unavailable(KERNEL_EVENTS)))()
    if why_not is None:
        return True, f"--trace-kernel {choice}: root, tracefs and KVM's ring tracepoints"
    if choice == "on":
        raise HostError(f"--trace-kernel on: {why_not}")
    return False, f"--trace-kernel auto: {why_not}"


def build_features(opts: MigrateOptions, accel: Accel, ring: int,
                   ram_mib: int = 0) -> tuple[Feature, ...]:
    """The features the options ask for (`qmpctl.migration.features`: each
    checks its own options against the run), or a UsageError naming every
    problem."""
    return build_registry_features(RunFacts(accel, ring, ram_mib * MiB, opts.model_dump()))


# arm64 under TCG runs `-cpu max`, whose features grow with every QEMU
# release: a cross-version run needs a named model both sides offer.
CROSS_VERSION_ARM_CPUS = ("cortex-a57", "cortex-a72", "neoverse-n1")


def choose_cpu(arch: Arch, accel: Accel, src: QemuBinary, dst: QemuBinary,
               models: Callable[[QemuBinary], frozenset[str]]) -> str | None:
    """The -cpu of a cross-version arm64 TCG run (`-cpu help` of each binary:
    `models`); None where the default is right (pure but for `models`)."""
    if arch != "aarch64" or accel != "tcg" or src.release == dst.release:
        return None
    both = models(src) & models(dst)
    chosen = next((c for c in CROSS_VERSION_ARM_CPUS if c in both), None)
    if chosen is None:
        raise UsageError(f"cannot migrate {src.describe()} -> {dst.describe()} under TCG: "
                         f"they offer none of the CPU models {', '.join(CROSS_VERSION_ARM_CPUS)} "
                         "(`-cpu help`), and `max` differs between releases")
    return chosen


ARM64_RING_QEMU = (8, 1, 0)  # QEMU's dirty ring on arm64 (with its backup bitmap)


def check_ring_support(arch: Arch, ring: int, *binaries: QemuBinary) -> None:
    """A QEMU without the dirty ring for `arch` is refused before launch (pure)."""
    for b in binaries:
        if arch == "aarch64" and b.version < ARM64_RING_QEMU:
            raise UsageError(
                f"--dirty-ring {ring}: {b.describe()} has no dirty ring on arm64 (QEMU "
                f"{'.'.join(map(str, ARM64_RING_QEMU[:2]))} added it, with the backup bitmap "
                "the in-kernel ITS needs); use --dirty-ring 0")


def choose_machine_type(arch: Arch, src: QemuBinary, dst: QemuBinary,
                        types: Callable[[QemuBinary], dict[str, MachineType]],
                        ) -> tuple[str | None, str]:
    """The machine type a migration from `src` to `dst` runs, and why.

    One QEMU release on both sides: its unversioned default (`pc`, `virt`).
    Two releases: the older one's versioned type (what its `pc`/`virt` is an
    alias of, e.g. `pc-i440fx-7.2`), which the newer one must offer too; both
    facts come from each binary's `-machine help` (`types`). A pair with no
    such type is a UsageError before anything starts (pure but for `types`).
    """
    family = DEFAULT_MACHINE[arch]
    if src.release == dst.release:
        return None, f"QEMU {src.release} on both sides: its default {family}"
    older, newer = sorted((src, dst), key=lambda b: b.version)
    default = types(older).get(family)
    pinned = default.alias_of if default is not None else None
    pair = f"{src.describe()} -> {dst.describe()}"
    if pinned is None:
        raise UsageError(f"cannot pin a machine type for {pair}: `-machine help` of "
                         f"{older.describe()} has no '{family}' alias to a versioned type")
    if (offered := types(newer).get(pinned)) is None:
        raise UsageError(f"cannot migrate {pair}: {newer.describe()} does not offer "
                         f"{pinned} (the older QEMU's '{family}'), so no machine type both "
                         f"support is known; pick QEMUs closer in version")
    return pinned, (f"QEMU {src.release} -> {dst.release}: pinned to the older QEMU's "
                    f"'{family}' ({pinned}), which both offer"
                    + (f"; deprecated in QEMU {newer.release}" if offered.deprecated else ""))


def corrupt_problems(faults: tuple[FaultSpec, ...], guest: Guest) -> list[str]:
    """corrupt-dst must name a byte of guest RAM (pure)."""
    layout = guest.layout()
    return [f"--fault {f.text}: 0x{int(f.value or 0):x} is outside guest RAM "
            f"{layout.describe()}" for f in faults
            if f.kind == "corrupt-dst" and not layout.contains(int(f.value or 0))]


NETNS_NEEDS_TCP = (
    "--transport unix: --topology netns puts source and destination in two network "
    "namespaces and migrates over TCP across the veth between them (a unix socket would "
    "bypass that link); leave --transport out or use --transport tcp")


def remote_problems(opts: MigrateOptions) -> list[str]:
    """--dst-host and --dst-via: what does not fit (pure)."""
    problems = []
    ssh_only = [f"--{n.replace('_', '-')}" for n in ("dst_addr", "dst_root", "ssh_option")
                if getattr(opts, n)]
    if opts.dst_host is None and ssh_only:
        problems.append(f"{', '.join(ssh_only)}: only with --dst-host")
    if opts.dst_qmpctl is not None and not reached_by_ssh(opts):
        problems.append("--dst-qmpctl: only with --dst-host or --dst-via ssh")
    if opts.dst_via == "ssh" and opts.topology != "netns":
        problems.append("--dst-via ssh: only with --topology netns (its sshd runs in the "
                        "destination's namespace); for another machine use --dst-host")
    if opts.dst_host is None:
        return problems
    if not opts.dst_host or opts.dst_host.startswith("-") or any(
            c.isspace() for c in opts.dst_host):
        problems.append(f"--dst-host {opts.dst_host!r}: expected [USER@]HOST")
    if opts.topology == "netns":
        problems.append("--dst-host with --topology netns: the destination is either in the "
                        "run's namespace or on another host (try --dst-via ssh)")
    if opts.transport not in (None, "tcp"):
        problems.append(f"--transport {opts.transport}: --dst-host migrates over TCP to the "
                        "other host (implied)")
    if opts.verify == "bytes":
        problems.append("--verify bytes: the destination's RAM is on another host; qmpctl "
                        "agent hashes it there (--verify hash, implied)")
    if opts.dst_root is not None and not opts.dst_root.startswith("/"):
        problems.append(f"--dst-root {opts.dst_root!r}: must be an absolute path")
    problems += [f"--ssh-option {o!r}: expected NAME=VALUE (an ssh -o option)"
                 for o in opts.ssh_option if "=" not in o or o.startswith("-")]
    return problems


def ssh_problems(opts: MigrateOptions, faults: tuple[FaultSpec, ...]) -> list[str]:
    """What a destination reached through ssh cannot do (pure)."""
    if not reached_by_ssh(opts):
        return []
    return [f"--fault {f.text}: writes the destination's RAM file, which is on another host "
            "when it is reached through ssh" for f in faults if f.kind == "corrupt-dst"]


def reached_by_ssh(opts: MigrateOptions) -> bool:
    return opts.dst_host is not None or (opts.topology == "netns" and opts.dst_via == "ssh")


def check_topology(opts: MigrateOptions) -> None:
    """netns: refuse an explicit unix transport; the host must make namespaces."""
    if problems := remote_problems(opts):
        raise UsageError("; ".join(problems))
    if opts.topology != "netns":
        return
    if opts.transport == "unix":
        raise UsageError(NETNS_NEEDS_TCP)
    if opts.verify == "bytes":
        raise UsageError(NETNS_HASHES)
    check_netns_host()


NETNS_HASHES = (
    "--verify bytes: with --topology netns the destination is another host, reached only "
    "over the network; its RAM is hashed there by qmpctl agent (--verify hash, implied)")


def compare_method_problems(opts: MigrateOptions) -> list[str]:
    """--compare-method map/read needs both images' bytes here: not with
    --verify hash (given or implied by a remote destination) (pure)."""
    if opts.compare_method in ("map", "read") and effective_verify(opts) == "hash":
        why = ("--verify hash" if opts.verify == "hash" else
               "the destination's RAM is on another host")
        return [f"--compare-method {opts.compare_method}: {why}, so each side's pages are "
                "hashed where they live (only auto or hash apply)"]
    return []


def requested_method(opts: MigrateOptions) -> Literal["map", "read", "hash"] | None:
    """The compare method the user forced, or None for the probe's choice."""
    return None if opts.compare_method == "auto" else opts.compare_method


def effective_verify(opts: MigrateOptions) -> Verify:
    """netns, --dst-host: the destination is remote, so its pages are hashed where they live."""
    return "hash" if opts.topology == "netns" or opts.dst_host else opts.verify or "bytes"


def effective_transport(opts: MigrateOptions) -> Transport:
    """The transport a run uses: netns and --dst-host imply tcp."""
    return "tcp" if opts.topology == "netns" or opts.dst_host else opts.transport or "unix"


def writers_problem(opts: MigrateOptions, arch: Arch) -> str | None:
    """--writers: the arm64 ITS guest's, 1..MAX_SMP-1 (pure; more against
    --smp and the wave's blocks in ItsGuest.validate)."""
    if opts.writers is None:
        return None
    if arch != "aarch64":
        return (f"--writers {opts.writers}: only the arm64 ITS guest takes it; the x86 wave "
                f"runs a writer on every vCPU (--smp N)")
    if not 1 <= opts.writers <= MAX_SMP - 1:
        return (f"--writers {opts.writers}: must be 1..{MAX_SMP - 1} (vCPU 0 issues LPIs, "
                f"at most {MAX_SMP} vCPUs)")
    return None


def build_guest(opts: MigrateOptions, arch: Arch, ram_mib: int) -> Guest:
    """The guest the options describe (not yet validated)."""
    if opts.guest == "kernel":
        assert opts.kernel is not None  # option_problems
        return KernelGuest(arch, ram_mib, opts.kernel, opts.initrd, opts.append,
                           smp=opts.smp or 1, handshake=opts.handshake,
                           ready_line=opts.ready_line, migrate_after=opts.migrate_after,
                           machine_opts=opts.machine_opt)
    if opts.guest == "linux":
        workload = LinuxWorkload(opts.workload, opts.workload_size, opts.hot, opts.rate)
        return (LinuxGuest(arch, ram_mib, workload) if opts.smp is None
                else LinuxGuest(arch, ram_mib, workload, smp=opts.smp))
    base_wave = default_wave(arch, ram_mib)
    base = RAM_BASE[arch]  # --wave-start/--wave-end are MiB from RAM's first address
    if opts.wave_start is None and opts.wave_end is None and opts.stride is None:
        wave = replace(base_wave, delta=opts.delta)
    else:  # a range given as one stretch skips x86's PCI hole if it crosses it
        layout = ram_layout(arch, ram_mib)
        wave = with_hole(WaveParams(
            start=base_wave.start if opts.wave_start is None else base + opts.wave_start * MiB,
            end=base_wave.end if opts.wave_end is None else base + opts.wave_end * MiB,
            stride=opts.stride or PAGE_SIZE, delta=opts.delta,
        ), layout)
        if opts.stride is None and ram_mib > SMALL_RAM_MIB:  # as big_wave: a short pass
            wave = with_hole(replace(wave, stride=big_stride(wave.bytes_covered), hole_start=0,
                                     hole_end=0), layout)
    if arch == "aarch64":
        writers = opts.writers or 1
        smp = opts.smp if opts.smp is not None else max(ItsGuest.smp, writers + 1)
        return ItsGuest(arch, ram_mib, wave, smp=smp, writers=writers)
    return (WaveGuest(arch, ram_mib, wave) if opts.smp is None
            else WaveGuest(arch, ram_mib, wave, smp=opts.smp))


def big_guest_throttle(wave: WaveParams) -> int:
    """MiB/s held back for a wave guest above 2 GiB (pure): what one wave pass
    dirties, resent in about HELD_PASS_S seconds, so passes stay as short as
    a small guest's at 64 MiB/s while the guest still re-dirties sent memory
    within each; never below 64."""
    return max(64, wave.dirty_bytes // MiB // HELD_PASS_S)


def check_ring(ring: int, kvm: KvmInfo) -> None:
    if not _is_power_of_two(ring):
        raise UsageError(f"--dirty-ring {ring}: must be a power of two (or 0 for bitmap)")
    if kvm.dirty_ring_max_entries == 0:
        raise UsageError(f"--dirty-ring {ring}: this host's KVM has no dirty ring "
                         "(KVM_CAP_DIRTY_LOG_RING is 0); use --dirty-ring 0")
    if ring > kvm.dirty_ring_max_entries:
        raise UsageError(f"--dirty-ring {ring}: above this host's maximum of "
                         f"{kvm.dirty_ring_max_entries} entries")
    if ring < 1024:
        raise UsageError(f"--dirty-ring {ring}: QEMU needs at least 1024 entries")
