"""`--resume`: the results file records each finished task as it comes back
(`--json PATH` writes `PATH.journal`, a JSON line per task after a header
naming the matrix), so a controller that was killed loses nothing that
finished; rerunning the same command with `--resume` skips those tasks.
The scheduler keeps its state in memory only: this file is the record."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, ValidationError

from ..core.errors import UsageError
from ..core.model import Model
from .task import TaskOutcome


class JournalHeader(Model):
    """Which matrix a journal belongs to: a resume must be the same one."""

    source: str
    repeat: int
    cells: list[str] = Field(description="every cell id of the matrix, in order")


class JournalEntry(Model):
    """One finished task: its outcome, or the cell refused on a worker."""

    outcome: TaskOutcome | None = None
    refused: tuple[str, str] | None = Field(None, description="(cell, reason)")


def journal_path(results: Path) -> Path:
    return results.with_name(results.name + ".journal")


class Journal:
    """Append-only; each line flushed and fsynced as it is written."""

    def __init__(self, path: Path, header: JournalHeader, resume: bool) -> None:
        self.path = path
        self.entries: list[JournalEntry] = []
        if resume:
            self.entries = load(path, header)
            self._file = path.open("a")
        else:
            self._file = path.open("w")
            self._write(header.model_dump_json())

    def _write(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def add(self, entry: JournalEntry) -> None:
        self._write(entry.model_dump_json())

    def close(self) -> None:
        self._file.close()


def load(path: Path, header: JournalHeader) -> list[JournalEntry]:
    """The finished tasks of `path`, if it is this matrix's journal."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"--resume: cannot read {path} ({exc.strerror}); the first run "
                         "writes it (with --json)") from exc
    try:
        found = JournalHeader.model_validate_json(lines[0]) if lines else None
    except ValidationError:
        found = None
    if found is None:
        raise UsageError(f"--resume: {path} is not a qmpctl matrix journal")
    if found != header:
        raise UsageError(f"--resume: {path} is the journal of another matrix "
                         f"({found.source}, {len(found.cells)} cells, repeat {found.repeat}; "
                         f"this one: {header.source}, {len(header.cells)} cells, "
                         f"repeat {header.repeat})")
    entries = []
    for n, line in enumerate(lines[1:], 2):
        try:
            entries.append(JournalEntry.model_validate_json(line))
        except ValidationError:
            if n == len(lines):  # the controller died writing it: that task runs again
                break
            raise UsageError(f"--resume: {path} line {n} is not a journal entry") from None
    return entries
