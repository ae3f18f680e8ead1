"""What qmpctl learned by running something, kept between runs.

A QEMU binary's version and data directory, its QMP schema, and the compare
engine's speed on this host each cost a subprocess or a measurement; a run
asks for them every time. Each kind is one JSON file under
$XDG_CACHE_HOME/qmpctl (else ~/.cache/qmpctl), a map from a key naming
everything the entry holds for (the binary's inode, size and mtime; the
boot) to the entry. Best effort both ways: a missing, unreadable or corrupt
file reads as empty, and one that cannot be written costs the probe again
next time. Writes replace the file atomically, so two qmpctl runs at once
never read half a file (the later write wins).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

T = TypeVar("T")


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/qmpctl, else ~/.cache/qmpctl."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qmpctl"


def file_key(path: Path) -> str:
    """This very file: its path, inode, size and mtime (a rebuilt or replaced
    binary is another key)."""
    st = path.stat()
    return f"{path} ino={st.st_ino} size={st.st_size} mtime={st.st_mtime_ns}"


class JsonCache(Generic[T]):
    """One cache file of `entry` values (a pydantic model or a dataclass)."""

    def __init__(self, name: str, entry: type[T], path: Path | None = None) -> None:
        self.name, self.entry, self._path = name, entry, path

    @functools.cached_property
    def _entries(self) -> TypeAdapter[dict[str, T]]:
        """Built at first use, not when the module holding the cache is imported."""
        return TypeAdapter(dict[str, self.entry])  # type: ignore[name-defined]

    def at(self, path: Path | None) -> JsonCache[T]:
        """This cache kept at `path` instead (None: where it is): tests and
        callers that name their own file."""
        return self if path is None else JsonCache(self.name, self.entry, path)

    @property
    def path(self) -> Path:
        """Read at each use: XDG_CACHE_HOME may change after construction."""
        return self._path or cache_dir() / self.name

    def load(self) -> dict[str, T]:
        try:
            return self._entries.validate_json(self.path.read_bytes())
        except (OSError, ValueError, ValidationError):
            return {}

    def get(self, key: str) -> T | None:
        return self.load().get(key)

    def store(self, key: str, entry: T,
              keep: Callable[[str, T], bool] = lambda _key, _entry: True) -> None:
        """Add `entry` under `key`; of the older entries, those `keep` says
        can still match stay (the rest would only grow the file)."""
        entries = {k: v for k, v in self.load().items() if k != key and keep(k, v)}
        entries[key] = entry
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_bytes(self._entries.dump_json(entries, indent=1))
            os.replace(tmp, path)
        except OSError:
            pass
