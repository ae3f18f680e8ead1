"""What the user asked for, checked against the host before anything starts.

`resolve()` turns `MigrateOptions` into a `Resolved` run: every option
validated, the accelerator chosen (and why), the guest built, the QEMU
binaries found. Bad input raises UsageError here, never mid-run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import migration
from .cmdline import Accel
from .errors import UsageError
from .guests import RAM_BASE, ItsGuest, LinuxGuest, LinuxWorkload, WaveGuest, default_wave
from .host import ARCHES, Arch, KvmInfo, QemuBinary, find_qemu, kvm_can_run, probe_kvm
from .ramimage import MiB
from .wave import WaveParams

AccelChoice = Literal["auto", "kvm", "tcg"]


@dataclass(frozen=True)
class MigrateOptions:
    """What the user asked for, as typed values (validated by `resolve`)."""

    arch: str = "x86_64"
    guest: str = "baremetal"  # or "linux"
    accel: AccelChoice = "auto"
    dirty_ring: int = 4096
    ram_mib: int | None = None  # None: 160 MiB bare-metal, 512 MiB Linux
    smp: int | None = None  # None: the guest's own default (x86 wave 1, arm64 ITS 2)
    wave_start_mib: int | None = None  # offsets into RAM
    wave_end_mib: int | None = None
    stride: int = 4096
    delta: int = 1
    transport: migration.Transport = "unix"
    min_passes: int = 3
    throttle_mib_s: int = 64
    downtime_limit_ms: int = 1000
    timeout_s: float = 300.0
    boot_timeout_s: float = 60.0
    qemu_src: str | None = None
    qemu_dst: str | None = None
    exclude: tuple[tuple[int, int, str], ...] = ()  # guest-physical [start, end), reason
    dirty_rate_probe: bool = False  # calc-dirty-rate before migrating (see README)
    force: bool = False  # run even where a safety check says pages would be lost
    postcopy: bool = False  # switch to postcopy once memory was re-dirtied
    workload: LinuxWorkload = field(default_factory=LinuxWorkload)  # Linux guests only
    artifacts: Path | None = None


@dataclass(frozen=True)
class Resolved:
    """Options checked against the host: everything needed to start."""

    options: MigrateOptions
    arch: Arch
    accel: Accel
    accel_reason: str
    ring: int
    guest: WaveGuest | LinuxGuest
    forced: tuple[str, ...]
    qemu_src: QemuBinary
    qemu_dst: QemuBinary
    kvm: KvmInfo


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def choose_accel(requested: AccelChoice, arch: Arch, kvm: KvmInfo,
                 needs_64bit: bool) -> tuple[Accel, str]:
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
    if problem is None:
        return "kvm", "requested" if requested == "kvm" else "auto: KVM can run this guest"
    if requested == "kvm":
        raise UsageError(f"--accel kvm: {problem}")
    return "tcg", f"auto: {problem}"


ITS_RING_NEEDS_BITMAP = (
    "arm64 with the in-kernel ITS and the dirty ring needs "
    "KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP (225), which this kernel lacks: the ITS tables "
    "KVM writes into guest RAM at stop, with no vCPU running, would not be migrated")


def ring_safety(arch: Arch, accel: Accel, ring: int, kvm: KvmInfo, force: bool) -> tuple[str, ...]:
    """Refuse a configuration known to lose pages, unless forced (then say so)."""
    if arch == "aarch64" and accel == "kvm" and ring and not kvm.has_ring_with_bitmap:
        if not force:
            raise UsageError(f"--dirty-ring {ring}: {ITS_RING_NEEDS_BITMAP}; "
                             "use --dirty-ring 0, or --force to run it anyway")
        return (ITS_RING_NEEDS_BITMAP,)
    return ()


def resolve(opts: MigrateOptions, kvm: KvmInfo | None = None) -> Resolved:
    """Check every option before any QEMU starts; raise UsageError/HostError."""
    if opts.arch not in ARCHES:
        raise UsageError(f"unknown arch {opts.arch!r}; choose one of {', '.join(ARCHES)}")
    arch: Arch = opts.arch
    kvm = kvm or probe_kvm()
    if opts.guest not in ("baremetal", "linux"):
        raise UsageError(f"--guest {opts.guest!r}: choose baremetal or linux")
    ram_mib = opts.ram_mib or (512 if opts.guest == "linux" else 160)
    if not 32 <= ram_mib <= 2048:
        raise UsageError(f"--ram {ram_mib} MiB: must be 32..2048")
    if opts.min_passes < 1:
        raise UsageError("--min-passes must be at least 1")
    if opts.throttle_mib_s < 1 or opts.downtime_limit_ms < 1:
        raise UsageError("--throttle and --downtime-limit must be positive")
    if opts.dirty_ring < 0:
        raise UsageError("--dirty-ring must be >= 0 (0 = dirty bitmap)")
    base_wave = default_wave(arch, ram_mib)
    base = RAM_BASE[arch]  # --wave-start/--wave-end are MiB into RAM
    wave = WaveParams(
        start=base_wave.start if opts.wave_start_mib is None else base + opts.wave_start_mib * MiB,
        end=base_wave.end if opts.wave_end_mib is None else base + opts.wave_end_mib * MiB,
        stride=opts.stride, delta=opts.delta,
    )
    guest: WaveGuest | LinuxGuest
    if opts.guest == "linux":
        guest = (LinuxGuest(arch, ram_mib, opts.workload) if opts.smp is None
                 else LinuxGuest(arch, ram_mib, opts.workload, smp=opts.smp))
    else:
        guest_type = ItsGuest if arch == "aarch64" else WaveGuest
        guest = (guest_type(arch, ram_mib, wave) if opts.smp is None
                 else guest_type(arch, ram_mib, wave, smp=opts.smp))
    guest.validate()
    accel, reason = choose_accel(opts.accel, arch, kvm, guest.needs_64bit_kvm)
    ring = opts.dirty_ring if accel == "kvm" else 0
    if ring:
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
    forced = ring_safety(arch, accel, ring, kvm, opts.force)
    for start, end, _ in opts.exclude:
        if end <= start:
            raise UsageError(f"--exclude 0x{start:x}-0x{end:x}: empty range")
    src = find_qemu(arch, opts.qemu_src)
    dst = find_qemu(arch, opts.qemu_dst) if opts.qemu_dst != opts.qemu_src else src
    _ = guest.kernel, guest.initrd  # raise HostError when an image was not built
    return Resolved(opts, arch, accel, reason, ring, guest, forced, src, dst, kvm)
