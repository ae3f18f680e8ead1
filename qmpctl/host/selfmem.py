"""The controller's own memory, from /proc/self/status.

VmHWM (peak RSS) counts the pages of guest RAM files the comparison maps,
which are the page cache, not copies; RssAnon is what qmpctl itself holds,
so a run samples it and reports its peak beside VmHWM.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

STATUS = Path("/proc/self/status")


def status_kib(text: str, field: str) -> int | None:
    """A `Field:   123 kB` value of /proc/PID/status, in KiB (pure)."""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    return None


def read_mib(field: str) -> float | None:
    kib = status_kib(STATUS.read_text(), field)
    return None if kib is None else round(kib / 1024, 1)


class AnonPeak:
    """Samples RssAnon while a run goes on (`sample()` as a task)."""

    def __init__(self) -> None:
        self.peak_mib = read_mib("RssAnon") or 0.0

    async def sample(self, interval: float = 0.2) -> None:
        while True:
            self.peak_mib = max(self.peak_mib, read_mib("RssAnon") or 0.0)
            await asyncio.sleep(interval)
