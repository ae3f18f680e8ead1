"""Who owns a run directory: a file naming the owner's pid and kernel start
time, so a directory whose owner died (SIGKILL, a lost host) is told apart
from a live one and swept. Standard library only: `qmpctl tether` uses it on
the destination host and must start fast.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .proc import start_time

PREFIX = "qmpctl-"  # every run directory's name starts so, on every host
OWNER = "owner"


def claim(directory: Path) -> None:
    """Name this process the owner of `directory`."""
    (directory / OWNER).write_text(f"{os.getpid()} {start_time(os.getpid())}\n")


def owner_alive(directory: Path) -> bool | None:
    """Whether the process that claimed `directory` still runs; None if unknown."""
    try:
        pid_text, _, started = (directory / OWNER).read_text().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return start_time(pid) == started.strip()


def sweep_dead(root: Path) -> list[Path]:
    """Remove the run directories under `root` whose owner is dead (not those
    without an owner file: not ours to judge); return what was removed."""
    removed = []
    for d in sorted(root.glob(f"{PREFIX}*")):
        if d.is_dir() and owner_alive(d) is False:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed
