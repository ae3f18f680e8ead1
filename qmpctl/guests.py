"""The guests qmpctl can launch: their images, launch pieces, RAM layout and
how to tell that their workload is running.

Images are built by `make -C images` into images/out (or $QMPCTL_IMAGES).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .console import ConsoleView
from .errors import HostError, UsageError
from .host import Arch
from .ramimage import RamLayout, Region
from .wave import WaveParams

MiB = 1 << 20
RAM_BASE: dict[Arch, int] = {"x86_64": 0, "aarch64": 0x4000_0000}


def images_dir() -> Path:
    env = os.environ.get("QMPCTL_IMAGES")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "images" / "out"


def image_path(*parts: str) -> Path:
    path = images_dir().joinpath(*parts)
    if not path.is_file():
        raise HostError(f"guest image {path} is missing; build it with `make -C images` "
                        "(the README's set-up command does this)")
    return path


@dataclass(frozen=True)
class WaveGuest:
    """A bare-metal guest running the wave workload (x86_64: 32-bit multiboot)."""

    arch: Arch
    ram_mib: int
    wave: WaveParams
    smp: int = 1

    name = "wave"
    needs_64bit_kvm = False  # stays in 32-bit protected mode

    @property
    def kernel(self) -> Path:
        return image_path(self.arch, "wave.elf")

    def fw_cfg(self) -> tuple[tuple[str, str], ...]:
        return (("opt/qmpctl/params", self.wave.fw_cfg_string()),)

    def layout(self) -> RamLayout:
        base = RAM_BASE[self.arch]
        regions: tuple[Region, ...] = ()
        if self.arch == "x86_64":
            regions = (
                Region("real-mode RAM (IVT, BDA, EBDA)", 0, 0xA0000),
                Region("legacy VGA/option-ROM/BIOS shadow", 0xA0000, 0x100000),
            )
        return RamLayout(base, self.ram_mib * MiB,
                         (*regions, Region("wave workload", self.wave.start, self.wave.end)))

    def validate(self) -> None:
        problems = self.wave.problems()
        base, top = RAM_BASE[self.arch], RAM_BASE[self.arch] + self.ram_mib * MiB
        if self.arch == "x86_64" and self.ram_mib > 2048:
            problems.append("x86_64 guests are limited to 2048 MiB (RAM stays below the PCI hole)")
        if self.wave.start < base + 2 * MiB or self.wave.end > top:
            problems.append(
                f"wave range 0x{self.wave.start:x}-0x{self.wave.end:x} must lie in RAM "
                f"0x{base + 2 * MiB:x}-0x{top:x} (the first 2 MiB hold firmware and the guest)")
        if problems:
            raise UsageError("; ".join(problems))

    @staticmethod
    def ready(view: ConsoleView) -> bool | None:
        """Running once it has echoed its parameters and finished a pass."""
        return True if view.find("wave") and view.passes >= 1 else None


def default_wave(arch: Arch, ram_mib: int) -> WaveParams:
    """migration-test's range: from 1 MiB past the guest's own area to ~100 MiB."""
    base = RAM_BASE[arch]
    start = base + 2 * MiB
    end = base + min(ram_mib - 16, 102) * MiB
    return WaveParams(start=start, end=max(end, start + MiB))
