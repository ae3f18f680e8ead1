"""The one hook protocol a run calls at fixed points, and every factory of
hooks: the `--fault` injector's and the corruption helpers `qmpctl.testing`
offers. A run calls one `Hooks` (`chain` joins several), so a fault given on
the command line and a test's own hook act at the same points, in order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..faults.injector import FaultInjector
from ..guests.base import RAM_BASE
from ..host.kvm import Arch
from ..qemu.machine import QemuMachine
from ..qemu.memmap import ram_segments
from ..verify.ramblocks import parse_ramblocks
from ..verify.ramimage import RamLayout, flip_byte

Pair = Callable[[QemuMachine, QemuMachine], Awaitable[None]]

@dataclass
class Hooks:
    """Test seams, called at fixed points of a real run (see `qmpctl.testing`)."""

    # both QEMUs launched and set up, just before `migrate`
    before_migration: Pair | None = None
    # the moment `migrate` is issued: what is timed from the migration's start
    at_migrate: Pair | None = None
    on_pass: Callable[[int, QemuMachine, QemuMachine], Awaitable[None]] | None = None
    # each source MIGRATION status event (setup, active, postcopy-active, ...)
    on_status: Callable[[str, QemuMachine, QemuMachine], Awaitable[None]] | None = None
    # the migration ended, however it ended (completed, failed, cancelled)
    migration_ended: Callable[[], Awaitable[None]] | None = None
    # after completion, before anything is compared: both QEMUs, stopped
    after_migration: Pair | None = None
    before_verify: Callable[[Path, Path], Awaitable[None]] | None = None


def chain(*hooks: Hooks) -> Hooks:
    """One `Hooks` calling each given one's hook at every point, in order."""
    joined = Hooks()
    for f in fields(Hooks):
        calls = [c for h in hooks if (c := getattr(h, f.name)) is not None]
        if calls:
            setattr(joined, f.name, _in_order(calls))
    return joined


def _in_order(calls: list[Callable[..., Awaitable[None]]]) -> Callable[..., Awaitable[None]]:
    async def each(*args: Any) -> None:
        for call in calls:
            await call(*args)
    return each


def fault_hooks(injector: FaultInjector) -> Hooks:
    """The `--fault` specs, fired from the run's own points (the injector
    times `after` faults from the `migrate` command)."""

    async def begin(src: QemuMachine, dst: QemuMachine) -> None:
        injector.begin(src, dst)

    async def on_pass(n: int, _src: QemuMachine, _dst: QemuMachine) -> None:
        await injector.on_pass(n)

    async def on_status(status: str, _src: QemuMachine, _dst: QemuMachine) -> None:
        await injector.on_status(status)

    async def ended() -> None:
        injector.end()

    async def completed(_src: QemuMachine, _dst: QemuMachine) -> None:
        await injector.after_migration()

    return Hooks(at_migrate=begin, on_pass=on_pass, on_status=on_status,
                 migration_ended=ended, after_migration=completed)


def corrupt_destination(gpa: int, xor: int = 0x5A, arch: str = "x86_64") -> Hooks:
    """Flip bits of the destination's byte at guest-physical `gpa` after the
    migration completed and before the RAM images are compared: the run must
    then report exactly that page. The byte is found through the machine's
    memory map for the RAM file's size (x86 RAM above 3 GiB sits from 4 GiB)."""
    if not 1 <= xor <= 0xFF:
        raise ValueError(f"xor 0x{xor:x}: must change the byte (1..0xff)")
    if arch not in RAM_BASE:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(RAM_BASE)}")
    if gpa < RAM_BASE[arch]:
        raise ValueError(f"gpa 0x{gpa:x} is below {arch} RAM (0x{RAM_BASE[arch]:x})")
    machine: Arch = "aarch64" if arch == "aarch64" else "x86_64"

    async def corrupt(_src: Path, dst: Path) -> None:
        _flip_ram_byte(dst, machine, gpa, xor)

    return Hooks(before_verify=corrupt)


def _flip_ram_byte(ram: Path, arch: Arch, gpa: int, xor: int) -> None:
    layout = RamLayout(ram_segments(arch, ram.stat().st_size))
    if not layout.contains(gpa):
        raise ValueError(f"gpa 0x{gpa:x} is not in the destination's RAM ({layout.describe()})")
    flip_byte(ram, layout.offset(gpa), xor)


def corrupt_destination_ramblock(block: str, offset: int = 0, xor: int = 0x5A) -> Hooks:
    """Flip bits of one byte of a RAMBlock other than guest RAM (e.g. `pc.rom`)
    in the destination QEMU after the migration: the run must name that block."""
    async def corrupt(_src: QemuMachine, dst: QemuMachine) -> None:
        blocks = {b.name: b for b in parse_ramblocks(await dst.hmp("info ramblock"))}
        if block not in blocks or not 0 <= offset < blocks[block].used:
            raise ValueError(f"no byte {offset} in RAMBlock {block!r} of the destination")
        if (hva := blocks[block].hva) is None:
            raise ValueError(f"the destination's `info ramblock` gives no address for {block!r}")
        address = hva + offset
        old = dst.read_host_memory(address, 1)
        dst.write_host_memory(address, bytes([old[0] ^ xor]))

    return Hooks(after_migration=corrupt)


def kill_destination_at_pass(n: int) -> Hooks:
    """SIGKILL the destination QEMU when the migration reaches pass `n`: the
    run must report the migration failed and leave the source running."""

    async def kill(pass_no: int, _src: QemuMachine, dst: QemuMachine) -> None:
        if pass_no == n:
            dst.kill()

    return Hooks(on_pass=kill)
