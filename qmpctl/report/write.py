"""Writing a report so that a reader never sees half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ..core.errors import ReportUnwritten

# Each run's report in its --artifacts directory, beside the logs: what makes
# the directory a qmpctl run (`qmpctl repro DIR`).
ARTIFACTS_REPORT = "report.json"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_report(path: Path, text: str, what: str = "--report") -> None:
    """Write `text` to `path` whole or not at all. A new or regular file is
    written beside it and renamed over it, so a full disk leaves the old file
    (or none), never a truncated one; anything else (/dev/stdout, a FIFO,
    /dev/full) cannot be replaced and is written in place."""
    try:
        if path.exists() and not path.is_file():
            with path.open("w") as f:
                f.write(text)
            return
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise ReportUnwritten(f"{what} {path}: could not be written "
                              f"({exc.strerror or exc})") from exc
