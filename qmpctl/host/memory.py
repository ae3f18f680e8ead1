"""Host memory a run needs beyond room on /dev/shm.

Guest RAM files live on tmpfs, whose pages are RAM (no swap here): QEMU
fills both sides' files entirely during a migration (the source reads every
page to find zero pages, the destination checks each page it is sent), so
an 8 GiB guest takes 16 GiB of memory whatever /dev/shm's size says, and
this host's /dev/shm (24 GiB) is larger than its RAM (23 GiB).
"""

from __future__ import annotations

from pathlib import Path

from ..core.units import KiB, MiB

MEMINFO = Path("/proc/meminfo")
QEMU_SLACK = 256 * MiB  # both QEMU processes and qmpctl besides guest RAM


def _meminfo(field: str, meminfo: str | None) -> int | None:
    text = MEMINFO.read_text() if meminfo is None else meminfo
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) * KiB
    return None


def mem_available(meminfo: str | None = None) -> int | None:
    """MemAvailable in bytes (None where the kernel does not say)."""
    return _meminfo("MemAvailable", meminfo)


def mem_total(meminfo: str | None = None) -> int | None:
    """MemTotal in bytes: what no guest's RAM can exceed here."""
    return _meminfo("MemTotal", meminfo)


def memory_problem(ram_mib: int, available: int | None, copies: int = 2) -> str | None:
    """Why `copies` of guest RAM on tmpfs would not fit in host memory (pure)."""
    if available is None:
        return None
    need = copies * ram_mib * MiB + QEMU_SLACK
    if available >= need:
        return None
    return (f"not enough memory for {copies} copies of guest RAM (tmpfs pages are RAM and "
            f"QEMU fills both RAM files): {need // MiB} MiB needed, {available // MiB} MiB "
            f"available ({-(-(need - available) // MiB)} MiB missing)")
