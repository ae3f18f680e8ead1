"""The per-run directory holding RAM files, sockets and logs.

RAM files go on tmpfs (/dev/shm) when it is there, so guest memory never hits
a disk and reading it back for comparison runs at memory speed. The whole
directory is removed when the run ends, whatever happened; logs are copied
out first when the user asked for artifacts. Each directory names its owner
(pid and start time) so that the directory of a qmpctl that was SIGKILLed is
swept by the next run, or by `qmpctl doctor --clean`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self


def default_root() -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return Path(tempfile.gettempdir())


PREFIX = "qmpctl-"
OWNER = "owner"


def _start_time(pid: int) -> str | None:
    """Kernel start time of `pid` (distinguishes a reused pid), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def owner_alive(run_dir: Path) -> bool | None:
    """Whether the qmpctl that made `run_dir` still runs; None if unknown."""
    try:
        pid_text, _, started = (run_dir / OWNER).read_text().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return _start_time(pid) == started.strip()


def sweep_stale(root: Path | None = None) -> list[Path]:
    """Remove run directories whose owner is dead; return what was removed."""
    removed = []
    for d in sorted((root or default_root()).glob(f"{PREFIX}*")):
        if d.is_dir() and owner_alive(d) is False:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@dataclass
class RunDir:
    path: Path

    @classmethod
    def create(cls, root: Path | None = None) -> RunDir:
        path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root or default_root()))
        (path / OWNER).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
        return cls(path)

    def side(self, side: str, what: str) -> Path:
        """Per-side file, e.g. side("src", "ram") -> <dir>/src.ram."""
        return self.path / f"{side}.{what}"

    def keep_logs(self, dest: Path) -> list[Path]:
        """Copy every log and serial transcript (not RAM) to `dest`."""
        dest.mkdir(parents=True, exist_ok=True)
        kept = []
        for f in sorted(self.path.iterdir()):
            if f.suffix in (".log", ".serial", ".json") and f.is_file():
                kept.append(Path(shutil.copy2(f, dest / f.name)))
        return kept

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()
