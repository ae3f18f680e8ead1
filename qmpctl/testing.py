"""What a test needs to drive qmpctl from pytest (see `qmpctl.pytest_plugin`).

    from qmpctl.testing import assert_verified, corrupt_destination

    async def test_migration(qmpctl_migrate):
        report = await qmpctl_migrate(accel="tcg", ram=64, wave_end=18)
        assert_verified(report)

`assert_verified` fails with a short readable message: the verdict, the
error, the failed guest checks and the first differing pages (guest-physical
address, region, source and destination bytes). The hook factories (from
`qmpctl.scenario.hooks`, where the `--fault` injector's are made too) build
`Hooks` for the usual fault injections; write your own `Hooks` for anything
else (`on_pass(pass_no, src, dst)` and `before_verify(src_ram, dst_ram)`),
and join several with `chain`.
"""

from __future__ import annotations

from typing import Any, Protocol

from .core.errors import ExitCode
from .guests.base import RAM_BASE
from .report.expect import VERIFIED, Expect
from .report.models import FIRST_SHOWN, RunReport
from .scenario.hooks import (
    Hooks,
    chain,
    corrupt_destination,
    corrupt_destination_ramblock,
    kill_destination_at_pass,
)
from .verify.digest import DIGEST_ONLY
from .verify.ranges import describe_ranges

__all__ = [
    "RAM_BASE",
    "ExitCode",
    "Expect",
    "Hooks",
    "LostPages",
    "Machine",
    "MigrateFn",
    "NotVerified",
    "RunReport",
    "UnexpectedVerdict",
    "assert_expected",
    "assert_verified",
    "chain",
    "corrupt_destination",
    "corrupt_destination_ramblock",
    "kill_destination_at_pass",
    "not_verified_message",
]



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

    async def __call__(self, *, hooks: Hooks | None = None, expect: Expect | None = None,
                       **options: Any) -> RunReport: ...


class NotVerified(AssertionError):
    """`assert_verified` failed; `report` is the run's report."""

    def __init__(self, report: RunReport) -> None:
        super().__init__(not_verified_message(report))
        self.report = report


class LostPages(NotVerified):
    """The destination's RAM differs from the source's: pages were lost."""


class UnexpectedVerdict(AssertionError):
    """`assert_expected` failed on a run expected to end otherwise than verified."""

    def __init__(self, report: RunReport, problem: str) -> None:
        super().__init__(problem if report.verdict == "verified"
                         else f"{problem}\n{not_verified_message(report)}")
        self.report = report


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


def assert_expected(report: RunReport, expect: Expect = VERIFIED) -> None:
    """Pass when the run ended as the scenario expects (`Expect`). Expecting
    `verified` is `assert_verified` (`LostPages`, `NotVerified`); any other
    expectation unmet raises `UnexpectedVerdict`."""
    __tracebackhide__ = True
    if expect == VERIFIED:
        assert_verified(report)
    elif (problem := expect.problem(report)) is not None:
        raise UnexpectedVerdict(report, problem)
