"""What a test needs to drive qmpctl from pytest (see `qmpctl.pytest_plugin`).

    from qmpctl.testing import assert_verified, corrupt_destination

    async def test_migration(qmpctl_migrate):
        report = await qmpctl_migrate(accel="tcg", ram=64, wave_end=18)
        assert_verified(report)

`assert_verified` fails with a short readable message: the verdict, the
error, the failed guest checks and the first differing pages (guest-physical
address, region, source and destination bytes). The hook factories build
`Hooks` for the usual fault injections; write your own `Hooks` for anything
else (`on_pass(pass_no, src, dst)` and `before_verify(src_ram, dst_ram)`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from .core.errors import ExitCode
from .host.kvm import Arch
from .qemu.memmap import VIRT_RAM_BASE, ram_segments
from .report.models import FIRST_SHOWN, RunReport
from .scenario.runner import Hooks
from .verify.digest import DIGEST_ONLY
from .verify.ramblocks import parse_ramblocks
from .verify.ramimage import RamLayout, flip_byte
from .verify.ranges import describe_ranges

__all__ = [
    "RAM_BASE",
    "ExitCode",
    "Hooks",
    "LostPages",
    "Machine",
    "MigrateFn",
    "NotVerified",
    "RunReport",
    "assert_verified",
    "corrupt_destination",
    "corrupt_destination_ramblock",
    "kill_destination_at_pass",
    "not_verified_message",
]

# Guest-physical address of the first byte of RAM: the RAM file's offset 0.
# x86 `pc` maps RAM from 0; arm64 `virt` from 1 GiB.
RAM_BASE: dict[str, int] = {"x86_64": 0, "aarch64": VIRT_RAM_BASE}


class Machine(Protocol):
    """What a hook may do with a QEMU it is handed (source or destination)."""

    @property
    def console(self) -> Any: ...  # `.view()`: the serial output so far, parsed

    def kill(self) -> None: ...  # SIGKILL now

    async def execute(self, command: str, arguments: dict[str, Any] | None = None,
                      timeout: float = 30.0) -> Any: ...  # one QMP command

    async def hmp(self, command_line: str) -> str: ...  # one human-monitor command

    def read_host_memory(self, address: int, size: int) -> bytes: ...  # QEMU's own memory

    def write_host_memory(self, address: int, data: bytes) -> None: ...  # fault injection


class MigrateFn(Protocol):
    """The `qmpctl_migrate` fixture: `qmpctl migrate` options as keyword arguments."""

    async def __call__(self, *, hooks: Hooks | None = None, **options: Any) -> RunReport: ...


class NotVerified(AssertionError):
    """`assert_verified` failed; `report` is the run's report."""

    def __init__(self, report: RunReport) -> None:
        super().__init__(not_verified_message(report))
        self.report = report


class LostPages(NotVerified):
    """The destination's RAM differs from the source's: pages were lost."""


def not_verified_message(report: RunReport) -> str:
    """A few lines saying why a run is not verified (the JSON report has the rest)."""
    lines = [f"qmpctl run not verified: {report.verdict.upper()} (exit {report.exit_code})"]
    if report.error:
        lines.append(f"  error: {report.error}")
    if (m := report.migration) is not None:
        lines.append(f"  migration: {m.status}, {m.passes} passes"
                     + (f", downtime {m.downtime_ms} ms" if m.downtime_ms is not None else ""))
    for check in report.failed_checks:
        lines.append(f"  check {check.name} [{check.stage}] FAILED: {check.detail}")
    if report.migration is not None and report.migration.error_desc:
        lines.append(f"  QEMU: {report.migration.error_desc}")
    if (memory := report.memory) is not None and memory.pages_differing:
        lines.append(f"  {memory.pages_differing} of {memory.pages_compared} pages differ:")
        for page in memory.mismatches[:FIRST_SHOWN]:
            where = ("" if page.src_hex.startswith(DIGEST_ONLY) else
                     f", first differing byte +0x{page.first_diff:x}")
            lines.append(f"  page gpa 0x{page.gpa:x} ({page.region}){where}: "
                         f"src {page.src_hex} | dst {page.dst_hex}")
        if (more := memory.pages_differing - min(len(memory.mismatches), FIRST_SHOWN)) > 0:
            lines.append(f"  ... and {more} more")
        if memory.location is not None:
            lines.append(f"  where: {describe_ranges(memory.location, limit=3)}")
        if memory.classes is not None:
            lines.append(f"  what: {memory.classes.headline()}")
        if memory.explanation:
            lines.append(f"  when: {memory.explanation}")
    # the last migration's guest RAM is detailed above
    lines += [f"  {loss.text()}" for loss in report.losses()
              if not (loss.last and loss.in_guest_ram)]
    return "\n".join(lines)


def assert_verified(report: RunReport) -> None:
    """Pass only when the run's verdict is `verified`.

    Raises `LostPages` when the source and destination differ where the
    platform does not explain it (guest RAM, another RAMBlock, an ITS table,
    in any of the run's migrations: `RunReport.losses()`), `NotVerified` (an
    AssertionError) for any other verdict.
    """
    __tracebackhide__ = True
    if report.verdict == "verified":
        return
    if report.verdict == "mismatch" and report.losses():
        raise LostPages(report)
    raise NotVerified(report)


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
    async def corrupt(_src: Machine, dst: Machine) -> None:
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

    async def kill(pass_no: int, _src: Machine, dst: Machine) -> None:
        if pass_no == n:
            dst.kill()

    return Hooks(on_pass=kill)
