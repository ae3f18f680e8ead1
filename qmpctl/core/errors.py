"""The one error hierarchy of qmpctl, its verdicts and the exit codes they map to.

    QmpctlError
     +-- UsageError            bad input; nothing was started            (exit 2)
     +-- HostError             the host lacks something                  (exit 3)
     |    +-- LaunchError      QEMU did not start (argv, exit code, stderr tail)
     +-- QmpError              a QMP command did not succeed             (exit 3)
     |    +-- QmpReplyError    QEMU answered with an error (error_class, desc)
     |    +-- QmpTimeout       no reply within the command's timeout
     |    +-- MonitorLost      the monitor connection went away
     +-- MigrationFailed       QEMU's migration failed (error_desc)      (exit 4)
     |    +-- SideLost         a QEMU died, lost its monitor or stopped answering
     +-- GuestError            the guest failed or stopped progressing   (exit 5)
     |    +-- MigrationSkipped the guest asked for none (caught: inconclusive)
     +-- ReportUnwritten       the run ended, its --report could not be written (exit 8)
     +-- Interrupted           SIGINT / SIGTERM                          (exit 130)

Two verdicts have no error class: `inconclusive` (exit 6: nothing was lost,
but the run did not prove dirty tracking was exercised) is decided from the
evidence, and `error` (exit 7) is any unexpected exception, still reported.

Every error keeps its cause (`raise ... from exc`); its class decides the exit
code, and `VERDICTS` is the single table of verdict names and exit codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import Any, Literal


class ExitCode(IntEnum):
    """Process exit codes of the `qmpctl` CLI (the table in README.md and docs/verdicts.md)."""

    VERIFIED = 0
    MISMATCH = 1  # memory, guest invariant or ITS check found a difference
    USAGE = 2  # bad option or input; nothing was started
    ENVIRONMENT = 3  # host lacks something, or QEMU could not be launched
    MIGRATION_FAILED = 4  # QEMU reported the migration failed or it timed out
    GUEST_FAILED = 5  # the guest did not boot, stopped progressing or reported an error
    INCONCLUSIVE = 6  # nothing lost, but nothing proved dirty tracking was exercised
    ERROR = 7  # qmpctl itself failed (a bug, or verification could not run); see `error`
    REPORT_UNWRITTEN = 8  # the run verified, but --report could not be written
    INTERRUPTED = 130  # Ctrl-C / SIGTERM; migration cancelled, everything cleaned up


Verdict = Literal[
    "verified", "mismatch", "usage-error", "environment-error", "migration-failed",
    "guest-failed", "inconclusive", "error", "report-unwritten", "interrupted",
]

# The one table: verdict <-> exit code.
VERDICTS: Mapping[Verdict, ExitCode] = {
    "verified": ExitCode.VERIFIED,
    "mismatch": ExitCode.MISMATCH,
    "usage-error": ExitCode.USAGE,
    "environment-error": ExitCode.ENVIRONMENT,
    "migration-failed": ExitCode.MIGRATION_FAILED,
    "guest-failed": ExitCode.GUEST_FAILED,
    "inconclusive": ExitCode.INCONCLUSIVE,
    "error": ExitCode.ERROR,
    "report-unwritten": ExitCode.REPORT_UNWRITTEN,
    "interrupted": ExitCode.INTERRUPTED,
}


def verdict_for(code: int) -> Verdict:
    """The verdict of an exit code (unknown codes are environment errors)."""
    for verdict, exit_code in VERDICTS.items():
        if exit_code == code:
            return verdict
    return "environment-error"


class QmpctlError(Exception):
    """Root of every error qmpctl raises on purpose."""

    exit_code = ExitCode.ENVIRONMENT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def verdict(self) -> Verdict:
        return verdict_for(self.exit_code)


class UsageError(QmpctlError):
    """Invalid user input, detected before any QEMU process starts."""

    exit_code = ExitCode.USAGE


class HostError(QmpctlError):
    """The host cannot do what was asked (missing binary, no KVM, no capability)."""

    exit_code = ExitCode.ENVIRONMENT


class LaunchError(HostError):
    """A QEMU process failed to start or to accept QMP."""

    def __init__(
        self, message: str, argv: Sequence[str], exit_code: int | None, stderr_tail: str
    ) -> None:
        detail = f"{message} (exit code {exit_code})" if exit_code is not None else message
        if stderr_tail.strip():
            detail += f": {stderr_tail.strip().splitlines()[-1]}"
        super().__init__(detail)
        self.argv = list(argv)
        self.qemu_exit_code = exit_code
        self.stderr_tail = stderr_tail


class QmpError(QmpctlError):
    """A QMP command on `machine` did not succeed; subclasses say why."""

    def __init__(self, machine: str, command: str, desc: str,
                 arguments: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{machine}: {command}: {desc}")
        self.machine = machine
        self.command = command
        self.arguments = dict(arguments or {})
        self.desc = desc


class QmpReplyError(QmpError):
    """QEMU answered the command with an error reply."""

    def __init__(self, machine: str, command: str, error_class: str, desc: str,
                 arguments: Mapping[str, Any] | None = None) -> None:
        super().__init__(machine, command, desc, arguments)
        self.error_class = error_class


class QmpTimeout(QmpError):
    """No reply within the command's timeout (QEMU may be stopped or hung)."""


class MonitorLost(QmpError):
    """The monitor connection is gone (QEMU exited or the socket was cut)."""


class MigrationFailed(QmpctlError):
    """The migration did not complete; `error_desc` is QEMU's own reason."""

    exit_code = ExitCode.MIGRATION_FAILED

    def __init__(self, message: str, error_desc: str | None = None) -> None:
        super().__init__(f"{message}: {error_desc}" if error_desc else message)
        self.error_desc = error_desc


class SideLost(MigrationFailed):
    """A QEMU of the run died, lost its monitor or stopped answering. While
    migrating that is a failed migration (exit 4); before, the environment."""

    def __init__(self, side: str, detail: str, qemu_exit_code: int | None,
                 migrating: bool = True) -> None:
        super().__init__(detail)
        self.side = side
        self.qemu_exit_code = qemu_exit_code
        if not migrating:
            self.exit_code = ExitCode.ENVIRONMENT


class GuestError(QmpctlError):
    """The guest did not boot, stopped making progress, or reported an error."""

    exit_code = ExitCode.GUEST_FAILED


class MigrationSkipped(GuestError):
    """The guest asked for no migration (kvm-unit-tests' migrate_skip()): none
    runs, and the guest's own result is the run's evidence."""


class ReportUnwritten(QmpctlError):
    """The run ended but its report could not be written (a full disk,
    /dev/full): a CI job must not take a missing report for a verified run."""

    exit_code = ExitCode.REPORT_UNWRITTEN


class Interrupted(QmpctlError):
    """The run was interrupted by the user or a signal."""

    exit_code = ExitCode.INTERRUPTED
