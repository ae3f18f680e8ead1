"""`--postcopy`: the migration must really run in postcopy.

The option itself is the scenario's (the policy's ending switches, faults
fire on `postcopy`), so it is a `MigrateOptions` field of its own; this
module holds what it must prove."""

from __future__ import annotations

from dataclasses import dataclass

from ..models import FeatureEvidence
from ..settings import MigrationSettings
from . import DocRow, Feature, FeatureOptions, Observed, RunFacts


@dataclass(frozen=True)
class PostcopySwitch:
    """`--postcopy`: the migration must really run in postcopy. QEMU takes
    migrate-start-postcopy and may still complete in precopy when little is
    left to send; then nothing about postcopy was exercised."""

    name: str = "postcopy"

    def settings(self) -> MigrationSettings:
        return MigrationSettings()  # the policy's ending sets postcopy-ram

    def trace_events(self) -> tuple[str, ...]:
        return ()

    def evidence(self, seen: Observed) -> FeatureEvidence:
        s = seen.stats
        figures = {"postcopy_requests": s.postcopy_requests}
        if s.mode != "postcopy":
            return FeatureEvidence(feature=self.name, engaged=False, figures=figures, detail=(
                "the migration completed in precopy: "
                + ("migrate-start-postcopy was issued, but the source never reported "
                   "postcopy-active" if s.postcopy_at_pass is not None else
                   "it converged before the policy issued migrate-start-postcopy")
                + f" ({' -> '.join(s.statuses)})"))
        return FeatureEvidence(feature=self.name, engaged=True, figures=figures, detail=(
            f"postcopy-active from pass {s.postcopy_at_pass}; {s.postcopy_requests} pages "
            "requested by the destination"))


class PostcopyOptions(FeatureOptions):
    """Postcopy: `migrate-start-postcopy` once memory was re-dirtied."""

    order = 10
    matrix = {"postcopy": {"postcopy": True}}
    doc = DocRow("`--postcopy`", "`postcopy-ram`, then `migrate-start-postcopy` once the "
                 "guest re-dirtied sent memory",
                 "the source reported `postcopy-active` (a migration that completes in "
                 "precopy exercised nothing of postcopy)")

    def build(self, run: RunFacts) -> Feature | None:
        return PostcopySwitch() if run.postcopy else None
