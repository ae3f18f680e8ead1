"""A foreign guest: any kernel image the user brings (kvm-unit-tests' `*.flat`
tests, a distro kernel with a test initramfs), booted unchanged.

qmpctl cannot decode such a guest's memory, so it compares every page and
RAMBlock without classifying them, locates arm64 ITS tables from the
interrupt controller's registers (`gic.py`), and takes the guest's own
verdict from what it prints. How it knows when to migrate is a handshake:

* `kvm-unit-tests`: the guest prints "Now migrate the VM, then press a key
  to continue..." (lib/migrate.c) and waits for a key; qmpctl migrates,
  verifies, resumes the destination, sends "\\n", and does it again for every
  further request, until the guest ends with its `SUMMARY:` and `EXIT:
  STATUS=` lines or exits through its test device.
* `line`: migrate once the guest prints a line matching `--ready-line`.
* `none`: migrate `--migrate-after` seconds after launch.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from ..core.errors import GuestError, MigrationSkipped, UsageError
from ..core.units import MiB
from ..host.kvm import Arch
from ..qemu.console import ConsoleView, SerialConsole, parse_console
from ..qemu.machine import QemuMachine
from ..verify.classify import PageClassifier
from ..verify.ramimage import RamLayout, Region, Sampled
from .base import RAM_BASE, GuestCheck, GuestResult, ram_layout
from .gic import ItsTable
from .its import its_tables as announced_tables
from .kimage import image_problem
from .linux import GuestThroughput

Handshake = Literal["kvm-unit-tests", "line", "none"]

# kvm-unit-tests lib/migrate.c and scripts/arch-run.bash: the harness greps
# for these anywhere in a line ("(quiet)" variants included).
MIGRATE_REQUEST = "Now migrate the VM"
SKIPPED_MIGRATION = "Skipped VM migration"
BEGIN_CONTINUOUS = "Begin continuous migration"
KEY = b"\n"
# kvm-unit-tests' report lines; the status of EXIT is (code << 1) | 1.
_REPORT = re.compile(r"^B*(PASS|FAIL|SKIP|XPASS|XFAIL): ")
_SUMMARY = re.compile(r"^B*SUMMARY: ")
_EXIT = re.compile(r"^B*EXIT: STATUS=(\d+)")
SKIP_CODE = 77  # kvm-unit-tests: every test skipped


def migration_request(lines: Sequence[str]) -> str | None:
    """The first line asking to be migrated (kvm-unit-tests), if any (pure)."""
    for line in lines:
        if MIGRATE_REQUEST in line or BEGIN_CONTINUOUS in line or SKIPPED_MIGRATION in line:
            return line.strip()
    return None


def exit_status_line(lines: Sequence[str]) -> int | None:
    """The STATUS of the guest's `EXIT: STATUS=` line (pure)."""
    for line in lines:
        if (m := _EXIT.match(line)) is not None:
            return int(m.group(1))
    return None


def _exit_code(status: int | None) -> int | None:
    return None if status is None or status % 2 == 0 else status >> 1


def guest_result(lines: Sequence[str], qemu_exit_code: int | None, promised: bool,
                 requests: int) -> GuestResult:
    """The guest's verdict from everything it printed and how its last QEMU
    ended (pure). `promised`: the handshake promises a verdict."""
    kinds = [m.group(1) for line in lines if (m := _REPORT.match(line)) is not None]
    fails = [line.strip() for line in lines
             if (m := _REPORT.match(line)) is not None and m.group(1) in ("FAIL", "XPASS")]
    summary = next((line.strip() for line in lines if _SUMMARY.match(line)), None)
    status_line = exit_status_line(lines)
    # The test device's exit code and the EXIT line carry the same encoding.
    # QEMU also exits 1 on its own errors, so its code counts only after the
    # guest's SUMMARY (kvm-unit-tests prints it right before exiting).
    raw = status_line if status_line is not None else (
        qemu_exit_code if qemu_exit_code is not None and qemu_exit_code % 2 == 1
        and summary is not None else None)
    code = _exit_code(raw)
    result = GuestResult(
        status="NONE", passed=kinds.count("PASS"), failed=len(fails),
        skipped=kinds.count("SKIP"), expected_failures=kinds.count("XFAIL"), summary=summary,
        exit_status=raw, qemu_exit_code=qemu_exit_code, migrations_requested=requests,
        failures=fails[:20])
    if result.failed or (code is not None and code not in (0, SKIP_CODE)):
        result.status = "FAIL"
        result.detail = (f"{result.failed} failing report line(s)" if result.failed
                         else f"exit code {code}")
    elif code == SKIP_CODE or (code is None and not result.passed and result.skipped):
        result.status, result.detail = "SKIP", "the guest skipped its tests"
    elif code == 0 or (code is None and result.passed and summary is not None):
        result.status, result.detail = "PASS", f"{result.passed} passed"
    elif promised:
        result.status = "NO-RESULT"
        result.detail = "the guest ended without its SUMMARY/EXIT lines"
    else:
        result.detail = "the guest printed no verdict of its own"
    return result


@dataclass(frozen=True)
class KernelGuest:
    """A kernel image qmpctl did not build, with its migration handshake."""

    arch: Arch
    ram_mib: int
    kernel: Path
    initrd: Path | None = None
    append: str | None = None
    smp: int = 1
    handshake: Handshake = "kvm-unit-tests"
    ready_line: str | None = None
    migrate_after: float | None = None
    machine_opts: tuple[str, ...] = ()

    name: ClassVar[str] = "kernel"
    progress_unit: ClassVar[str] = "not measured (foreign guest)"
    # qmpctl cannot see this guest's writes: QEMU's own re-sent pages are the
    # evidence that memory was re-dirtied during the migration.
    measures_progress: ClassVar[bool] = False
    checks_image_after_resume: ClassVar[bool] = False

    @property
    def needs_64bit_kvm(self) -> bool:
        return self.arch == "x86_64"  # kvm-unit-tests' x86_64 tests run in long mode

    @property
    def promises_result(self) -> bool:
        return self.handshake == "kvm-unit-tests"

    def fw_cfg(self) -> tuple[tuple[str, str], ...]:
        return ()

    def devices(self, udp_port: int) -> tuple[str, ...]:
        """kvm-unit-tests' own test devices, so its exit() ends QEMU with its code."""
        if self.arch == "x86_64":
            return ("-device", "isa-debug-exit,iobase=0xf4,iosize=0x4")
        return ("-device", "virtio-serial-device", "-device", "virtconsole,chardev=ctd",
                "-chardev", "testdev,id=ctd")

    def validate(self) -> None:
        problems = []
        for option, path in (("--kernel", self.kernel), ("--initrd", self.initrd)):
            if path is not None and not path.is_file():
                problems.append(f"{option} {path}: no such file")
        if self.kernel.is_file() and (problem := image_problem(self.kernel, self.arch)):
            problems.append(f"--kernel {self.kernel}: {problem}")
        if self.smp < 1:
            problems.append("--smp must be at least 1")
        if self.handshake == "line" and not self.ready_line:
            problems.append("--handshake line needs --ready-line REGEX (the line the guest "
                            "prints once its workload runs)")
        if self.ready_line is not None:
            if self.handshake != "line":
                problems.append(f"--ready-line applies only to --handshake line, not "
                                f"{self.handshake}")
            else:
                try:
                    re.compile(self.ready_line)
                except re.error as exc:
                    problems.append(f"--ready-line {self.ready_line!r}: {exc}")
        if self.handshake == "none" and self.migrate_after is None:
            problems.append("--handshake none needs --migrate-after SECONDS")
        if self.migrate_after is not None:
            if self.handshake != "none":
                problems.append(f"--migrate-after applies only to --handshake none, not "
                                f"{self.handshake}")
            elif self.migrate_after < 0:
                problems.append("--migrate-after must be >= 0")
        for opt in self.machine_opts:
            if "=" not in opt or opt.startswith("="):
                problems.append(f"--machine-opt {opt!r}: expected KEY=VALUE")
            elif opt.partition("=")[0] == "max-ram-below-4g":
                problems.append(f"--machine-opt {opt!r}: qmpctl maps guest RAM by the "
                                "machine's default split below/above 4 GiB (qemu/memmap.py); "
                                "this would move it")
        if problems:
            raise UsageError("; ".join(problems))

    def workload_summary(self) -> dict[str, int | str]:
        summary: dict[str, int | str] = {"kind": self.name, "kernel": str(self.kernel),
                                         "handshake": self.handshake}
        for key, value in (("initrd", self.initrd), ("append", self.append),
                           ("ready_line", self.ready_line),
                           ("machine_opts", ",".join(self.machine_opts))):
            if value:
                summary[key] = str(value)
        return summary

    def layout(self, view: ConsoleView | None = None) -> RamLayout:
        regions = ((Region("device tree blob", RAM_BASE["aarch64"],
                           RAM_BASE["aarch64"] + 2 * MiB),) if self.arch == "aarch64" else
                   (Region("real-mode RAM (IVT, BDA, EBDA)", 0, 0xA0000),
                    Region("legacy VGA/option-ROM/BIOS shadow", 0xA0000, 0x100000)))
        return ram_layout(self.arch, self.ram_mib, regions)

    def classifier(self) -> PageClassifier | None:
        return None  # the values of a foreign guest's pages mean nothing to us

    def throughput(self, src: ConsoleView, dst: ConsoleView, t_start: float, t_end: float,
                   t_cont: float) -> GuestThroughput | None:
        return None

    def work_done(self, view: ConsoleView) -> int:
        return 0

    def ready(self, view: ConsoleView) -> bool | None:
        """Ready to migrate: the handshake's request (an early end is an error)."""
        if self.handshake == "none":
            return True
        if self.handshake == "line":
            assert self.ready_line is not None
            pattern = re.compile(self.ready_line)
            return True if any(pattern.search(line) for line in view.lines) else None
        if migration_request(view.lines) is not None:
            return True
        if (status := exit_status_line(view.lines)) is not None:
            raise GuestError(f"the guest ended (EXIT: STATUS={status}) without asking to be "
                             "migrated")
        return None

    async def before_migration(self, console: SerialConsole, timeout: float
                               ) -> list[GuestCheck]:
        if self.handshake == "none":
            assert self.migrate_after is not None
            await asyncio.sleep(self.migrate_after)
            return []
        if self.handshake == "kvm-unit-tests":
            request = migration_request(console.view().lines) or ""
            if SKIPPED_MIGRATION in request:  # as arch-run.bash: no migration, the key
                raise MigrationSkipped(f"the guest skipped its migration ({request!r})")
            if BEGIN_CONTINUOUS in request:
                # Continuous migration (newer kvm-unit-tests) is not driven yet:
                # fail loudly rather than migrate wrongly.
                raise GuestError(f"the guest asked for {request!r}: qmpctl drives only "
                                 f"{MIGRATE_REQUEST!r} and skipped-migration requests")
        return []

    async def wait_resumed(self, console: SerialConsole, timeout: float) -> str:
        """kvm-unit-tests: press the key and see the guest go on; others: nothing to press."""
        if self.handshake != "kvm-unit-tests":
            return "cont accepted (no handshake: the guest is not asked to confirm)"
        seen = len(console.view().lines)
        await console.send(KEY)
        line = await console.wait_for(
            lambda v: v.lines[seen] if len(v.lines) > seen else None, timeout,
            "the guest to go on after the key")
        return f"key sent; the guest went on: {line.strip()!r}"

    async def after_resume(self, console: SerialConsole, timeout: float) -> list[GuestCheck]:
        return []

    def image_checks(self, ram: Path | Sampled, stage: str) -> list[GuestCheck]:
        return []

    async def next_migration(self, machine: QemuMachine, timeout: float) -> bool:
        """After a resume: does the guest ask to be migrated again? False once it
        ended (EXIT line, QEMU exited) or said nothing more within `timeout`."""
        if self.handshake != "kvm-unit-tests":
            return False

        def probe(view: ConsoleView) -> bool | None:
            if migration_request(view.lines) is not None:
                return True
            return False if exit_status_line(view.lines) is not None else None

        try:
            again = await machine.console.wait_for(probe, timeout, "the guest's next step")
        except GuestError:
            return False  # console closed (QEMU exited) or silence: result() says which
        if not again:
            await machine.wait_exit(5)  # the guest powers off right after EXIT
        return again

    def result(self, transcript: bytes, qemu_exit_code: int | None, requests: int
               ) -> GuestResult | None:
        return guest_result(parse_console(transcript).lines, qemu_exit_code,
                            self.promises_result, requests)

    def announced_tables(self, view: ConsoleView) -> tuple[ItsTable, ...] | None:
        """arm64: what the guest announced (`table` records), often nothing:
        the runner locates the tables from the GIC itself."""
        return tuple(announced_tables(view)) if self.arch == "aarch64" else None
