"""Facts about processes (and the socket buffers) from /proc, and the one
prctl qmpctl needs. Standard library only: `qmpctl tether` uses it on the
destination host."""

from __future__ import annotations

import ctypes
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child before exec: SIGKILL it when its parent dies, however that
    parent died (a QEMU must never outlive the process that holds it)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (which may hold spaces), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of `pid` (R, S, D, T stopped, Z, ...)."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def start_time(pid: int) -> str | None:
    """Kernel start time of `pid` (distinguishes a reused pid), None if gone."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


SEND_BUFFER_DEFAULT = 4 << 20  # the kernel's own default tcp_wmem maximum


def send_buffer_max() -> int:
    """The most a TCP socket buffers for sending (tcp_wmem's maximum): what a
    sender may write before it blocks on a link that does not drain."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return SEND_BUFFER_DEFAULT
