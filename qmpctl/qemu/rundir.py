"""The per-run directory holding RAM files, sockets and logs.

RAM files go on tmpfs (/dev/shm) when it is there, so guest memory never hits
a disk and reading it back for comparison runs at memory speed. The whole
directory is removed when the run ends, whatever happened; logs are copied
out first when the user asked for artifacts.
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


@dataclass
class RunDir:
    path: Path

    @classmethod
    def create(cls, root: Path | None = None) -> RunDir:
        return cls(Path(tempfile.mkdtemp(prefix="qmpctl-", dir=root or default_root())))

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
