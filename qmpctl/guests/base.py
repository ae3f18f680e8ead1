"""What every guest qmpctl launches shares: where its image is, where its RAM
starts, and the `GuestCheck` model of a check the guest (or its image) passed.

Where images are found: `guests.images` (image_path, images_dir live there).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..core.model import Model
from ..core.units import MiB
from ..host.kvm import Arch
from ..qemu.console import ConsoleView
from ..qemu.machine import QemuMachine
from ..qemu.memmap import VIRT_RAM_BASE, ram_segments
from ..verify.ramimage import RamLayout, Region
from .gic import ItsTable

# Guest-physical address of the first byte of RAM: the RAM file's offset 0.
# x86 `pc` maps RAM from 0; arm64 `virt` from 1 GiB.
RAM_BASE: dict[Arch, int] = {"x86_64": 0, "aarch64": VIRT_RAM_BASE}
# Below this offset into RAM live firmware, DTB, the guest image and (arm64)
# the GIC/ITS tables; the wave stays above it.
RESERVED_LOW: dict[Arch, int] = {"x86_64": 2 * MiB, "aarch64": 16 * MiB}
# Kept clear at the top of a small guest's RAM: x86's SeaBIOS leaves its freed
# POST-time heap dirty a few MiB below RAM - 16 MiB yet reports it as RAM (a
# default wave of --ram 64 or 96 reached it and the guest refused to start).
RESERVED_HIGH: dict[Arch, int] = {"x86_64": 32 * MiB, "aarch64": 16 * MiB}


def ram_layout(arch: Arch, ram_mib: int, regions: tuple[Region, ...] = ()) -> RamLayout:
    """The guest's RAM as the machine maps it (x86 RAM above 3 GiB sits above 4 GiB)."""
    return RamLayout(ram_segments(arch, ram_mib * MiB), regions)


class GuestCheck(Model):
    """One check of the guest's own state: what, when, and what was seen."""

    name: str
    stage: str
    ok: bool
    detail: str


class GuestResult(Model):
    """What a foreign guest said of itself, by kvm-unit-tests' conventions."""

    status: Literal["PASS", "FAIL", "SKIP", "NONE", "NO-RESULT"] = Field(
        description="PASS/FAIL/SKIP: the guest's own verdict; NONE: a guest whose handshake "
                    "promises no verdict printed none; NO-RESULT: one that promised a verdict "
                    "(kvm-unit-tests) did not give it")
    passed: int = 0
    failed: int = Field(0, description="FAIL and XPASS lines")
    skipped: int = 0
    expected_failures: int = Field(0, description="XFAIL lines")
    summary: str | None = None
    exit_status: int | None = Field(
        None, description="the test's exit code: from `EXIT: STATUS=S` or QEMU's exit code "
                          "through the test device, both (code << 1) | 1")
    qemu_exit_code: int | None = None
    migrations_requested: int = 0
    failures: list[str] = Field(default_factory=list, description="the FAIL lines (first 20)")
    detail: str = ""


class OwnGuest:
    """What the guests qmpctl builds (guestload/) share: qmpctl sees their
    writes, pauses them after the resume to check their image again, and
    migrates them once; they give no verdict of their own beyond their checks."""

    measures_progress: ClassVar[bool] = True
    checks_image_after_resume: ClassVar[bool] = True
    machine_opts: ClassVar[tuple[str, ...]] = ()

    async def next_migration(self, machine: QemuMachine, timeout: float) -> bool:
        return False

    def result(self, transcript: bytes, qemu_exit_code: int | None, requests: int
               ) -> GuestResult | None:
        return None

    def announced_tables(self, view: ConsoleView) -> tuple[ItsTable, ...] | None:
        return None
