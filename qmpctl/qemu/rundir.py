"""The per-run directory holding RAM files, sockets and logs.

RAM files go on tmpfs (/dev/shm when it is there, or the tmpfs the user
names), so guest memory never hits a disk and reading it back for comparison
runs at memory speed (fastest on a tmpfs mounted `huge=always`, whose
files the kernel backs with 2 MiB pages). The whole
directory is removed when the run ends, whatever happened; logs are copied
out first when the user asked for artifacts. Each directory names its owner
(pid and start time) so that the directory of a qmpctl that was SIGKILLed is
swept by the next run, or by `qmpctl doctor --clean`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from ..host.owner import PREFIX, claim, sweep_dead


def default_root() -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return Path(tempfile.gettempdir())


def sweep_stale(root: Path | None = None) -> list[Path]:
    """Remove run directories whose owner is dead; return what was removed."""
    return sweep_dead(root or default_root())


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@dataclass(frozen=True)
class Mount:
    """The mount a path lives on, from /proc/self/mountinfo."""

    point: str
    fstype: str
    options: str  # the file system's own (super block) options (huge=...)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_of(path: str, mountinfo: str) -> Mount | None:
    """The mount holding absolute, resolved `path` (pure): the deepest mount
    point above it; of several at one point, the last mounted."""
    best: Mount | None = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        point = _unescape(fields[4])
        holds = path == point or path.startswith(point.rstrip("/") + "/")
        if holds and (best is None or len(point) >= len(best.point)):
            best = Mount(point, tail[0], tail[2])
    return best


def run_root_problem(root: Path) -> str | None:
    """Why `root` cannot hold run directories (None if it can): it must be an
    existing directory on tmpfs that takes files, or guest RAM would go to a
    disk (or nowhere) and the run would fail or crawl halfway."""
    if not root.is_absolute():
        return "must be an absolute path"
    if not root.is_dir():
        return "does not exist" if not root.exists() else "is not a directory"
    mount = mount_of(str(root.resolve()), Path("/proc/self/mountinfo").read_text())
    if mount is None or mount.fstype != "tmpfs":
        where = f"{mount.fstype} (mounted at {mount.point})" if mount else "an unknown mount"
        return (f"is on {where}, not tmpfs: guest RAM must live in memory (e.g. `mount -t tmpfs "
                "-o huge=always,size=32G qmpctl /mnt/qmpctl`)")
    try:
        with tempfile.NamedTemporaryFile(dir=root, prefix=".qmpctl-probe-"):
            pass
    except OSError as exc:
        return f"cannot create files there ({exc.strerror})"
    return None


def _make(root: Path) -> Path:
    """A fresh run directory under `root`, naming its owner."""
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    claim(path)
    return path


@dataclass
class RunDir:
    path: Path
    ram: Path | None = None  # the guest RAM files' own directory (--ram-dir), else `path`

    @classmethod
    def create(cls, root: Path | None = None, ram_root: Path | None = None) -> RunDir:
        """The run's directory under `root` (default /dev/shm); with `ram_root`,
        a second one there for the guest RAM files only (swept the same way)."""
        path = _make(root or default_root())
        try:
            return cls(path, _make(ram_root) if ram_root is not None else None)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
            raise

    def side(self, side: str, what: str) -> Path:
        """Per-side file, e.g. side("src", "ram") -> <dir>/src.ram."""
        where = self.ram if what == "ram" and self.ram is not None else self.path
        return where / f"{side}.{what}"

    def keep_logs(self, dest: Path) -> list[Path]:
        """Copy every log and serial transcript (not RAM) to `dest`."""
        dest.mkdir(parents=True, exist_ok=True)
        kept = []
        for f in sorted(self.path.iterdir()):
            if f.suffix in (".log", ".serial", ".json") and f.is_file():
                kept.append(Path(shutil.copy2(f, dest / f.name)))
        return kept

    def remove(self) -> None:
        for d in (self.path, self.ram):
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()
