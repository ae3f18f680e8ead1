"""The guests qmpctl can launch: their images, launch pieces, RAM layout, how
to tell that their workload runs, and the checks they run on themselves.

Images are built by `make -C images` into images/out (or $QMPCTL_IMAGES).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from .console import ConsoleView, Record, SerialConsole
from .errors import HostError, UsageError
from .host import Arch
from .ramimage import MiB, RamImage, RamLayout, Region
from .report import GuestCheck
from .wave import WaveParams, check_wave

RAM_BASE: dict[Arch, int] = {"x86_64": 0, "aarch64": 0x4000_0000}
# Below this offset into RAM live firmware, DTB, the guest image and (arm64)
# the GIC/ITS tables; the wave stays above it.
RESERVED_LOW: dict[Arch, int] = {"x86_64": 2 * MiB, "aarch64": 16 * MiB}


def images_dir() -> Path:
    env = os.environ.get("QMPCTL_IMAGES")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "images" / "out"


def image_path(*parts: str) -> Path:
    path = images_dir().joinpath(*parts)
    if not path.is_file():
        raise HostError(f"guest image {path} is missing; build it with `make -C images` "
                        "(the README's set-up command does this)")
    return path


def default_wave(arch: Arch, ram_mib: int) -> WaveParams:
    """migration-test's idea: ~100 MiB of RAM above the guest's own area."""
    base, low = RAM_BASE[arch], RESERVED_LOW[arch]
    end = base + min(ram_mib * MiB - 16 * MiB, low + 100 * MiB)
    return WaveParams(start=base + low, end=max(end, base + low + MiB))


@dataclass(frozen=True)
class WaveGuest:
    """A bare-metal guest running the wave (x86_64: 32-bit multiboot ELF)."""

    arch: Arch
    ram_mib: int
    wave: WaveParams
    smp: int = 1

    name = "wave"
    image = "wave.elf"
    min_smp = 1
    needs_64bit_kvm = False  # stays in 32-bit protected mode
    progress_unit = "wave passes"
    initrd: ClassVar[Path | None] = None  # a bare kernel, parameters over fw_cfg
    append: ClassVar[str | None] = None

    @property
    def kernel(self) -> Path:
        return image_path(self.arch, self.image)

    def fw_cfg(self) -> tuple[tuple[str, str], ...]:
        return (("opt/qmpctl/params", self.wave.fw_cfg_string()),)

    def devices(self, udp_port: int) -> tuple[str, ...]:
        return ()

    def work_done(self, view: ConsoleView) -> int:
        """Monotonic measure of the workload's writes as the console reports them."""
        return view.passes

    async def wait_resumed(self, console: SerialConsole, timeout: float) -> str:
        """Wait for the workload to progress on a resumed guest; say what was seen."""
        await console.wait_passes(2, timeout)
        return "2 more wave passes reported on the destination's serial port"

    def image_checks(self, ram: Path, stage: str) -> list[GuestCheck]:
        """Checks that read the workload's state from a RAM image (paused guest)."""
        with RamImage(ram) as image:
            res = check_wave(image, self.layout(), self.wave)
        detail = f"{res.blocks} blocks, {res.detail}, value 0x{res.value:02x}"
        if res.first_bad_gpa is not None:
            detail += f", first bad block at gpa 0x{res.first_bad_gpa:x}"
        return [GuestCheck(name="wave-invariant", stage=stage, ok=res.ok, detail=detail)]

    def base_regions(self) -> tuple[Region, ...]:
        return (
            Region("real-mode RAM (IVT, BDA, EBDA)", 0, 0xA0000),
            Region("legacy VGA/option-ROM/BIOS shadow", 0xA0000, 0x100000),
        )

    def layout(self, view: ConsoleView | None = None) -> RamLayout:
        """Where things are; guests that report their tables refine it from `view`."""
        return RamLayout(RAM_BASE[self.arch], self.ram_mib * MiB,
                         (*self.base_regions(), Region("wave workload", self.wave.start,
                                                       self.wave.end)))

    def validate(self) -> None:
        problems = self.wave.problems()
        base, top = RAM_BASE[self.arch], RAM_BASE[self.arch] + self.ram_mib * MiB
        if self.arch == "x86_64" and self.ram_mib > 2048:
            problems.append("x86_64 guests are limited to 2048 MiB (RAM stays below the PCI hole)")
        if self.smp < self.min_smp:
            problems.append(f"the {self.name} guest needs at least {self.min_smp} vCPUs")
        low = base + RESERVED_LOW[self.arch]
        if self.wave.start < low or self.wave.end > top:
            problems.append(
                f"wave range 0x{self.wave.start:x}-0x{self.wave.end:x} must lie in RAM "
                f"0x{low:x}-0x{top:x} (below it: firmware, the guest and its tables)")
        if problems:
            raise UsageError("; ".join(problems))

    def ready(self, view: ConsoleView) -> bool | None:
        """Running once it has echoed its parameters and finished a pass."""
        return True if view.find("wave") and view.passes >= 1 else None

    async def before_migration(self, console: SerialConsole, timeout: float) -> list[GuestCheck]:
        return []

    async def after_resume(self, console: SerialConsole, timeout: float) -> list[GuestCheck]:
        return []


@dataclass(frozen=True)
class ItsTable:
    name: str
    base: int
    size: int


def its_tables(view: ConsoleView) -> list[ItsTable]:
    """The ITS/LPI tables the guest announced (`table` records)."""
    return [ItsTable(r.fields["name"], r.int("base"), r.int("size"))
            for r in view.find("table")]


def its_check(record: Record, stage: str) -> GuestCheck:
    detail = " ".join(f"{k}={v}" for k, v in record.fields.items() if k not in ("name", "result"))
    return GuestCheck(name=f"its-{record.fields.get('name', '?')}", stage=stage,
                      ok=record.fields.get("result") == "PASS", detail=detail)


@dataclass(frozen=True)
class ItsGuest(WaveGuest):
    """arm64 `virt` bare-metal guest: GICv3 + ITS with LPIs in flight, the wave
    on another vCPU, and kvm-unit-tests' three ITS migration checks on `V`."""

    smp: int = 2
    name = "its"
    image = "its.elf"
    min_smp = 2
    needs_64bit_kvm = False  # KVM only for arm64 hosts, where 64-bit is native

    def base_regions(self) -> tuple[Region, ...]:
        base = RAM_BASE["aarch64"]
        return (Region("device tree blob", base, base + 2 * MiB),)

    def layout(self, view: ConsoleView | None = None) -> RamLayout:
        layout = super().layout()
        if view is None:
            return layout
        regions: list[Region] = []
        if (head := view.last("its-guest")) is not None:
            lo, _, hi = head.fields.get("image", "").partition("-")
            if lo and hi:
                regions.append(Region("guest image", int(lo, 16), int(hi, 16)))
        regions += [Region(f"ITS table {t.name}", t.base, t.base + t.size)
                    for t in its_tables(view)]
        return layout.with_regions(*regions)

    def ready(self, view: ConsoleView) -> bool | None:
        return True if view.find("ready") and view.passes >= 1 else None

    async def before_migration(self, console: SerialConsole, timeout: float) -> list[GuestCheck]:
        """LPIs must be flowing, all delivered on the right PE, before we migrate."""
        seen = len(console.view().find("lpi-status"))
        await console.send(b"S")
        status = await console.wait_for(
            lambda v: v.find("lpi-status")[seen] if len(v.find("lpi-status")) > seen else None,
            timeout, "the guest's LPI status")
        issued, delivered, wrong = (status.int(k) for k in ("issued", "delivered", "wrong-pe"))
        return [GuestCheck(
            name="lpis-flowing", stage="source, before migration",
            ok=issued > 0 and wrong == 0 and delivered <= issued,
            detail=f"issued={issued} delivered={delivered} wrong-pe={wrong}")]

    async def after_resume(self, console: SerialConsole, timeout: float) -> list[GuestCheck]:
        """Send `V`: mapped, pending and unmapped-collection LPI checks."""
        seen = len(console.view().find("its-verify"))
        checks_before = len(console.view().find("its-check"))
        await console.send(b"V")
        await console.wait_for(
            lambda v: True if len(v.find("its-verify")) > seen else None,
            timeout, "the guest's ITS verdict (its-verify)")
        checks = console.view().find("its-check")[checks_before:]
        if not checks:
            return [GuestCheck(name="its-verify", stage="destination, after resume", ok=False,
                               detail="the guest gave a verdict without any its-check record")]
        return [its_check(r, "destination, after resume") for r in checks]


LINUX_WORKLOADS = ("wave", "random", "hotset", "rate", "readmostly")
LINUX_CONSOLE: dict[Arch, str] = {"x86_64": "ttyS0", "aarch64": "ttyAMA0"}


@dataclass(frozen=True)
class LinuxWorkload:
    """guestload's parameters (guestload/linux/guestload.c), as kernel args."""

    kind: str = "wave"
    size: str = "64M"  # MiB/GiB or % of RAM
    hot: str | None = None  # hotset: "X,Y"
    rate_mib_s: int | None = None  # rate

    def problems(self) -> list[str]:
        out = []
        if self.kind not in LINUX_WORKLOADS:
            out.append(f"--workload {self.kind!r}: choose one of {', '.join(LINUX_WORKLOADS)}")
        num, unit = self.size[:-1], self.size[-1:]
        if not (num.isdigit() and unit in "MG%" and int(num) > 0) or \
                (unit == "%" and int(num) > 90):
            out.append(f"--workload-size {self.size!r}: expected e.g. 64M, 1G or 25% (<= 90%)")
        return out

    def cmdline(self) -> str:
        args = [f"qmpctl.workload={self.kind}", f"qmpctl.size={self.size}"]
        if self.hot:
            args.append(f"qmpctl.hot={self.hot}")
        if self.rate_mib_s:
            args.append(f"qmpctl.rate={self.rate_mib_s}")
        return " ".join(args)


@dataclass(frozen=True)
class LinuxGuest:
    """Debian's cloud kernel + busybox initramfs running guestload, with a
    virtio-net-pci NIC whose frames loop back through a UDP socket on
    127.0.0.1 (on arm64 its MSI-X interrupts go through the ITS)."""

    arch: Arch
    ram_mib: int
    workload: LinuxWorkload
    smp: int = 2

    name = "linux"
    needs_64bit_kvm = True
    progress_unit = "pages written"
    wave = None
    # What the guest said before migrating, needed after resume (mutable on purpose).
    seen: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def kernel(self) -> Path:
        return image_path(self.arch, "linux", "vmlinuz")

    @property
    def initrd(self) -> Path:
        return image_path(self.arch, "linux", "initrd.img")

    @property
    def append(self) -> str:
        return (f"console={LINUX_CONSOLE[self.arch]} quiet panic=-1 "
                f"{self.workload.cmdline()}")

    def fw_cfg(self) -> tuple[tuple[str, str], ...]:
        return ()

    def devices(self, udp_port: int) -> tuple[str, ...]:
        # Each side's netdev sends to itself: traffic never leaves QEMU.
        loop = f"127.0.0.1,local.port={udp_port}"
        return ("-netdev", f"dgram,id=n0,local.type=inet,local.host={loop},"
                           f"remote.type=inet,remote.host={loop.replace('local', 'remote')}",
                "-device", "virtio-net-pci,netdev=n0")

    def layout(self, view: ConsoleView | None = None) -> RamLayout:
        return RamLayout(RAM_BASE[self.arch], self.ram_mib * MiB,
                         (Region("Linux RAM", RAM_BASE[self.arch],
                                 RAM_BASE[self.arch] + self.ram_mib * MiB),))

    def validate(self) -> None:
        problems = self.workload.problems()
        if not 256 <= self.ram_mib <= 2048:
            problems.append(f"--ram {self.ram_mib}: Linux guests need 256..2048 MiB")
        if self.smp < 1:
            problems.append("--smp must be at least 1")
        if problems:
            raise UsageError("; ".join(problems))

    def ready(self, view: ConsoleView) -> bool | None:
        head = view.last("guestload")
        return True if head is not None and "ready" in head.fields else None

    def work_done(self, view: ConsoleView) -> int:
        last = view.last("progress")
        return last.int("pages") if last is not None else 0

    async def wait_resumed(self, console: SerialConsole, timeout: float) -> str:
        def advanced(v: ConsoleView) -> str | None:
            pages = [r.int("pages") for r in v.find("progress")]
            return (f"guestload progress resumed on the destination: {pages[-1] - pages[0]} "
                    f"pages written across {len(pages)} progress records"
                    if len(pages) >= 2 and pages[-1] > pages[0] else None)
        return await console.wait_for(advanced, timeout, "guestload progress after resume")

    async def _net(self, console: SerialConsole, timeout: float) -> tuple[Record, Record]:
        """`N`: the NIC's interrupt count (`net`) and which irqchip delivers them (`netinfo`)."""
        seen = len(console.view().find("netinfo"))
        await console.send(b"N")
        info = await console.wait_for(
            lambda v: v.find("netinfo")[seen] if len(v.find("netinfo")) > seen else None,
            timeout, "the guest's NIC interrupt count")
        net = console.view().last("net")
        assert net is not None  # guestload prints `net` right before `netinfo`
        return net, info

    async def before_migration(self, console: SerialConsole, timeout: float) -> list[GuestCheck]:
        # A few progress records first, so the report has a throughput baseline.
        await console.wait_for(lambda v: True if len(v.find("progress")) >= 4 else None,
                               timeout, "guestload progress before migration")
        self.seen["irqs"] = (await self._net(console, timeout))[0].int("irqs")
        return []

    async def after_resume(self, console: SerialConsole, timeout: float) -> list[GuestCheck]:
        checks = []
        seen = len(console.view().find("selfcheck"))
        await console.send(b"C")
        result = await console.wait_for(
            lambda v: v.find("selfcheck")[seen] if len(v.find("selfcheck")) > seen else None,
            timeout, "guestload's self-check")
        checks.append(GuestCheck(
            name="guest-selfcheck", stage="destination, after resume",
            ok=result.fields.get("result") == "PASS",
            detail=" ".join(f"{k}={v}" for k, v in result.fields.items() if k != "result")))
        before = self.seen.get("irqs", -1)
        net, info = await self._net(console, timeout)
        chip = info.fields.get("chip", "?")
        want_chip = "ITS-MSI" if self.arch == "aarch64" else "PCI-MSI"
        checks.append(GuestCheck(
            name="nic-interrupts", stage="destination, after resume",
            ok=net.int("irqs") > before >= 0 and chip == want_chip,
            detail=f"virtio-net interrupts {before} before migration, {net.int('irqs')} "
                   f"after resume, delivered via {chip} (expected {want_chip})"))
        return checks

    def image_checks(self, ram: Path, stage: str) -> list[GuestCheck]:
        return []  # guestload checks itself (`C`), from inside the guest
