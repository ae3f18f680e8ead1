"""The x86_64 bare-metal wave guest (guestload/x86): QEMU migration-test's
workload, one byte per page incremented pass after pass, with parameters
chosen by the controller and passed over fw_cfg. With --smp N every vCPU
writes its own slice of the wave (verify.wave.wave_slices), so N vCPUs
dirty memory at once (ring-full storms with the KVM dirty ring)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from ..core.errors import UsageError
from ..core.units import PAGE_SIZE, MiB
from ..host.kvm import Arch
from ..qemu.console import ConsoleView, SerialConsole
from ..qemu.memmap import ABOVE_4G
from ..verify.classify import PageClassifier, WaveClassifier
from ..verify.ramimage import RamImage, RamLayout, Region, Sampled
from ..verify.wave import WaveParams, check_wave
from .base import (
    RAM_BASE,
    RESERVED_HIGH,
    RESERVED_LOW,
    GuestCheck,
    OwnGuest,
    ram_layout,
)
from .images import image_path
from .linux import GuestThroughput

GUEST_IMAGE = "wave guest image (code, stacks, pass counters)"
SMALL_RAM_MIB = 2048  # up to here the defaults are what they always were
# Below the end of RAM under 4 GiB, SeaBIOS keeps its tables and leaves its
# POST heap dirty: a wave that goes on above 4 GiB skips this much of it.
FIRMWARE_TOP = 32 * MiB
# A big guest's default wave: at most this many blocks per pass (the stride
# grows in powers of two instead), so a TCG pass stays short: see docs/big-guests.md.
BIG_WAVE_BLOCKS = 1 << 18


def default_wave(arch: Arch, ram_mib: int) -> WaveParams:
    """migration-test's idea: ~100 MiB of RAM above the guest's own area.

    Guests above SMALL_RAM_MIB get a wave over most of their RAM instead,
    above 4 GiB too (`big_wave`)."""
    base, low = RAM_BASE[arch], RESERVED_LOW[arch]
    if ram_mib > SMALL_RAM_MIB:
        layout = ram_layout(arch, ram_mib)
        if arch == "x86_64":
            return big_wave(layout)
        # arm64 virt: one piece of RAM from 1 GiB; keep clear of its top 16 MiB
        # as the small default does.
        top = layout.start + ram_mib * MiB - 16 * MiB
        stride = big_stride(top - (base + low))
        return WaveParams(start=base + low, end=top - (top - base - low) % stride,
                          stride=stride)
    end = base + min(ram_mib * MiB - RESERVED_HIGH[arch], low + 100 * MiB)
    return WaveParams(start=base + low, end=max(end, base + low + MiB))


def big_wave(layout: RamLayout, max_blocks: int = BIG_WAVE_BLOCKS) -> WaveParams:
    """All of RAM from 2 MiB up, but for the firmware's top of RAM below 4 GiB
    (skipped as the wave's hole when RAM goes on above 4 GiB), one block per
    `stride`: the smallest power of two from 4 KiB keeping the pass within
    `max_blocks` writes (pure)."""
    low, top = layout.segments[0], layout.segments[-1]
    start, low_end = RESERVED_LOW["x86_64"], low.gpa_end - FIRMWARE_TOP
    stride = big_stride(low_end - start + (top.size if len(layout.segments) > 1 else 0),
                        max_blocks)
    start = -(-start // stride) * stride
    if len(layout.segments) == 1:
        return WaveParams(start=start, end=low_end - low_end % stride, stride=stride)
    return WaveParams(start=start, end=top.gpa_end - top.gpa_end % stride, stride=stride,
                      hole_start=low_end - low_end % stride, hole_end=top.gpa)


def big_stride(covered: int, max_blocks: int = BIG_WAVE_BLOCKS) -> int:
    """The smallest power of two from 4 KiB giving at most `max_blocks` blocks
    over `covered` bytes (pure)."""
    stride = PAGE_SIZE
    while covered // stride > max_blocks:
        stride *= 2
    return stride


def writer_passes(console_view: ConsoleView, seen: int) -> list[int] | None:
    """Per-CPU pass counts of the first `wave-status` record after `seen` ones."""
    found = console_view.find("wave-status")
    if len(found) <= seen:
        return None
    return [int(n, 0) for n in found[seen].fields.get("passes", "").split(",") if n]


async def writer_passes_now(console: SerialConsole, timeout: float) -> list[int]:
    """Ask the guest ('S') for every CPU's pass count."""
    seen = len(console.view().find("wave-status"))
    await console.send(b"S")
    return await console.wait_for(lambda v: writer_passes(v, seen), timeout,
                                  "the wave's per-CPU pass counts (wave-status)")


WRITERS_POLL_S = 0.1
WRITERS_WAIT_S = 30.0


async def writers_check(console: SerialConsole, writers: int, stage: str,
                        timeout: float) -> GuestCheck:
    """Every CPU's own pass count goes up: N writers really write (a 'B' only
    says the slowest one moved)."""
    first = await writer_passes_now(console, timeout)
    now = first
    deadline = time.monotonic() + min(timeout, WRITERS_WAIT_S)
    while len(now) == writers and not all(b > a for a, b in zip(first, now, strict=True)):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(WRITERS_POLL_S)
        now = await writer_passes_now(console, timeout)
    moved = (sum(b > a for a, b in zip(first, now, strict=True))
             if len(now) == len(first) else 0)
    counts = ", ".join(f"{a}->{b}" for a, b in zip(first, now, strict=False))
    return GuestCheck(name="writers", stage=stage,
                      ok=len(now) == writers and moved == writers,
                      detail=f"{moved} of {writers} vCPUs advanced their slice; "
                             f"passes per vCPU {counts}")


def with_hole(wave: WaveParams, layout: RamLayout) -> WaveParams:
    """A wave given as one range over x86 RAM on both sides of the PCI hole
    skips the hole and the firmware's top of RAM below it (pure; a wave
    that already has a hole, or needs none, is returned as it is)."""
    if wave.has_hole or len(layout.segments) < 2:
        return wave
    low, high = layout.segments[0], layout.segments[1]
    if not (wave.start < low.gpa_end and wave.end > high.gpa):
        return wave
    align = max(wave.stride, PAGE_SIZE)
    hole_start = low.gpa_end - FIRMWARE_TOP
    return replace(wave, hole_start=hole_start - hole_start % align,
                   hole_end=-(-high.gpa // align) * align)


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

    @property
    def writers(self) -> int:
        """vCPUs running the wave: every one on x86 (the arm64 guest's is one)."""
        return self.smp if self.arch == "x86_64" else 1

    @property
    def writers_option(self) -> str:
        """The option that chose the writers, as an error names it."""
        return f"--smp {self.smp}"

    def fw_cfg(self) -> tuple[tuple[str, str], ...]:
        cpus = f" cpus={self.writers}" if self.writers > 1 else ""
        return (("opt/qmpctl/params", self.wave.fw_cfg_string() + cpus),)

    def devices(self, udp_port: int) -> tuple[str, ...]:
        return ()

    def workload_summary(self) -> dict[str, int | str]:
        hole = ({"hole_start": self.wave.hole_start, "hole_end": self.wave.hole_end}
                if self.wave.has_hole else {})
        return {"kind": self.name, "start": self.wave.start, "end": self.wave.end,
                "stride": self.wave.stride, "delta": self.wave.delta, **hole,
                "writers": self.writers}

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

    def image_checks(self, ram: Path | Sampled, stage: str) -> list[GuestCheck]:
        """Checks that read the workload's state from a RAM image (paused guest)."""
        if isinstance(ram, Path):
            with RamImage(ram) as image:
                res = check_wave(image, self.layout(), self.wave, self.writers)
        else:  # an image read elsewhere (qmpctl agent)
            res = check_wave(ram, self.layout(), self.wave, self.writers)
        detail = f"{res.blocks} blocks, {res.detail}"
        if len(res.slices) == 1:  # several: the detail lists each slice's value
            detail += f", value 0x{res.value:02x}"
        if res.first_bad_gpa is not None:
            detail += f", first bad block at gpa 0x{res.first_bad_gpa:x}"
        return [GuestCheck(name="wave-invariant", stage=stage, ok=res.ok, detail=detail)]

    def base_regions(self) -> tuple[Region, ...]:
        return (
            Region("real-mode RAM (IVT, BDA, EBDA)", 0, 0xA0000),
            Region("legacy VGA/option-ROM/BIOS shadow", 0xA0000, 0x100000),
        )

    def layout(self, view: ConsoleView | None = None) -> RamLayout:
        """Where things are; with `view`, the x86 guest's image as it announced
        it: with several writers its pass counters and stacks change every
        pass, so a page lost there is named, not just "other RAM"."""
        wave = tuple(Region("wave workload", start, end) for start, end in self.wave.parts)
        layout = ram_layout(self.arch, self.ram_mib, (*self.base_regions(), *wave))
        if view is not None and (head := view.last("wave-guest")) is not None:
            lo, _, hi = head.fields.get("image", "").partition("-")
            if lo and hi:
                return layout.with_regions(Region(GUEST_IMAGE, int(lo, 16), int(hi, 16)))
        return layout

    @property
    def above_4g(self) -> bool:
        """The wave reaches RAM above 4 GiB: the x86 guest then pages (PAE)."""
        return self.wave.end > ABOVE_4G

    def validate(self) -> None:
        problems = self.wave.problems()
        if self.smp < self.min_smp:
            problems.append(f"the {self.name} guest needs at least {self.min_smp} vCPUs")
        if self.arch == "x86_64" and self.writers > 1 and (self.above_4g
                                                           or self.wave.has_hole):
            problems.append(
                f"--smp {self.smp}: one wave writer per vCPU needs a wave below 4 GiB "
                f"without a hole (the guest's PAE window above 4 GiB is one for all "
                f"vCPUs); this wave ends at 0x{self.wave.end:x}: use --smp 1 or "
                f"--wave-end below the PCI hole")
        elif self.writers > self.wave.blocks:
            problems.append(f"{self.writers_option}: the wave has only {self.wave.blocks} "
                            f"blocks, fewer than its {self.writers} writers")
        layout = self.layout()
        low = layout.start + RESERVED_LOW[self.arch]
        if self.wave.start < low or not all(layout.covers(start, end)
                                            for start, end in self.wave.parts):
            problems.append(
                f"wave range 0x{self.wave.start:x}-0x{self.wave.end:x} must lie in RAM from "
                f"0x{low:x} (below it: firmware, the guest and its tables); RAM is "
                f"{layout.describe()}")
        if problems:
            raise UsageError("; ".join(problems))

    def ready(self, view: ConsoleView) -> bool | None:
        """Running once it has echoed its parameters and finished a pass."""
        return True if view.find("wave") and view.passes >= 1 else None

    async def before_migration(self, console: SerialConsole, timeout: float) -> list[GuestCheck]:
        """Several writers: each must be writing before we migrate."""
        if self.writers == 1:  # the 'B' stream is the evidence already
            return []
        return [await writers_check(console, self.writers, "source, before migration",
                                    timeout)]

    async def after_resume(self, console: SerialConsole, timeout: float) -> list[GuestCheck]:
        """Several writers: each goes on writing on the destination."""
        if self.writers == 1:
            return []
        return [await writers_check(console, self.writers, "destination, after resume",
                                    timeout)]
