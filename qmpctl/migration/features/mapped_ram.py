"""`--transport file`: migration to a file with `mapped-ram`.

The transport is the scenario's (the runner migrates to a file, then loads
it into the destination), so it is a `MigrateOptions` field of its own; this
module holds what a file migration cannot be combined with and what it must
prove."""

from __future__ import annotations

from dataclasses import dataclass

from ..models import FeatureEvidence
from ..settings import MigrationSettings
from . import DocRow, Feature, FeatureOptions, Observed, RunFacts, outcome


@dataclass(frozen=True)
class MappedRam:
    """Migration to a file with `mapped-ram`: each page at its own offset,
    rewritten in place when dirtied again; the destination loads the file."""

    ram_bytes: int
    name: str = "mapped-ram"

    def settings(self) -> MigrationSettings:
        return MigrationSettings(capabilities={"mapped-ram": True})

    def trace_events(self) -> tuple[str, ...]:
        return ()

    def evidence(self, seen: Observed) -> FeatureEvidence:
        s = seen.stats
        size, used = s.file_bytes or 0, s.file_allocated_bytes or 0
        figures = {"file_bytes": size, "file_allocated_bytes": used,
                   "restore_s": s.restore_s or 0.0}
        detail = (f"file of {size} bytes ({used} allocated) for {self.ram_bytes} bytes of "
                  f"guest RAM; the destination loaded it in {s.restore_s} s")
        problems = []
        if size < self.ram_bytes:
            problems.append("the file is smaller than guest RAM: pages are not at fixed offsets")
        if s.restore_s is None:
            problems.append("the destination did not load the file")
        return outcome(self.name, problems, detail, figures)


class MappedRamOptions(FeatureOptions):
    """Migration to a file, each page at a fixed offset."""

    order = 110
    matrix = {"file": {"transport": "file"}, "file-multifd": {"transport": "file", "multifd": 2}}
    doc = DocRow("`--transport file`",
                 "`mapped-ram`, `migrate file:…`, then `migrate-incoming file:…` into the "
                 "paused destination",
                 "a file at least as large as guest RAM (pages at fixed offsets), loaded by "
                 "the destination (`restore_s`)")

    def problems(self, run: RunFacts) -> list[str]:
        if run.transport != "file":
            return []
        conflicts = {
            "--postcopy": (run.postcopy, "postcopy needs a live channel to the destination"),
            "--topology netns": (run.values.get("topology") == "netns",
                                 "the destination reads the source's file on this host"),
            "--cancel-at": (run.given("cancel_at"), "cancel a migration to a socket"),
        }
        return [f"--transport file with {option}: {why}"
                for option, (given, why) in conflicts.items() if given]

    def build(self, run: RunFacts) -> Feature | None:
        return MappedRam(run.ram_bytes) if run.transport == "file" else None
