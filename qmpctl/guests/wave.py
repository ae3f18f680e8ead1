"""The x86_64 bare-metal wave guest (guestload/x86): QEMU migration-test's
workload, one byte per page incremented pass after pass, with parameters
chosen by the controller and passed over fw_cfg."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..core.errors import UsageError
from ..core.units import MiB
from ..host.kvm import Arch
from ..qemu.console import ConsoleView, SerialConsole
from ..verify.classify import PageClassifier, WaveClassifier
from ..verify.ramimage import RamImage, RamLayout, Region
from ..verify.wave import WaveParams, check_wave
from .base import RAM_BASE, RESERVED_LOW, GuestCheck, OwnGuest, image_path, ram_layout
from .linux import GuestThroughput


def default_wave(arch: Arch, ram_mib: int) -> WaveParams:
    """migration-test's idea: ~100 MiB of RAM above the guest's own area."""
    base, low = RAM_BASE[arch], RESERVED_LOW[arch]
    end = base + min(ram_mib * MiB - 16 * MiB, low + 100 * MiB)
    return WaveParams(start=base + low, end=max(end, base + low + MiB))




@dataclass(frozen=True)
class WaveGuest(OwnGuest):
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

    def workload_summary(self) -> dict[str, int | str]:
        hole = ({"hole_start": self.wave.hole_start, "hole_end": self.wave.hole_end}
                if self.wave.has_hole else {})
        return {"kind": self.name, "start": self.wave.start, "end": self.wave.end,
                "stride": self.wave.stride, "delta": self.wave.delta, **hole}

    def classifier(self) -> PageClassifier | None:
        return WaveClassifier(self.wave)

    def throughput(self, src: ConsoleView, dst: ConsoleView, t_start: float, t_end: float,
                   t_cont: float) -> GuestThroughput | None:
        return None  # the wave reports passes, not a rate

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
        wave = tuple(Region("wave workload", start, end) for start, end in self.wave.parts)
        return ram_layout(self.arch, self.ram_mib, (*self.base_regions(), *wave))

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
