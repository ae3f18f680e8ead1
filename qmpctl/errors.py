"""The one error hierarchy of qmpctl, and the exit codes it maps to.

Every failure the user can see is a `QmpctlError`; its class decides the exit
code, its fields carry what is needed to understand it without a debugger.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of the `qmpctl` CLI (documented in the README)."""

    VERIFIED = 0
    MISMATCH = 1  # memory, guest invariant or ITS check found a difference
    USAGE = 2  # bad option or input; nothing was started
    ENVIRONMENT = 3  # host lacks something, or QEMU could not be launched
    MIGRATION_FAILED = 4  # QEMU reported the migration failed or it timed out
    GUEST_FAILED = 5  # the guest did not boot, stopped progressing or reported an error
    INTERRUPTED = 130  # Ctrl-C / SIGTERM; migration cancelled, everything cleaned up


class QmpctlError(Exception):
    """Root of every error qmpctl raises on purpose."""

    exit_code = ExitCode.ENVIRONMENT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
        if stderr_tail:
            detail += f": {stderr_tail.strip().splitlines()[-1]}"
        super().__init__(detail)
        self.argv = list(argv)
        self.qemu_exit_code = exit_code
        self.stderr_tail = stderr_tail


class QMPCommandError(QmpctlError):
    """A QMP command returned an error, or the monitor went away mid-command."""

    def __init__(self, machine: str, command: str, desc: str) -> None:
        super().__init__(f"{machine}: {command}: {desc}")
        self.machine = machine
        self.command = command
        self.desc = desc


class MigrationFailed(QmpctlError):
    """The migration did not complete; `error_desc` is QEMU's own reason."""

    exit_code = ExitCode.MIGRATION_FAILED

    def __init__(self, message: str, error_desc: str | None = None) -> None:
        super().__init__(f"{message}: {error_desc}" if error_desc else message)
        self.error_desc = error_desc


class GuestError(QmpctlError):
    """The guest did not boot, stopped making progress, or reported an error."""

    exit_code = ExitCode.GUEST_FAILED


class Interrupted(QmpctlError):
    """The run was interrupted by the user or a signal."""

    exit_code = ExitCode.INTERRUPTED
