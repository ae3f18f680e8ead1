"""What each phase of a run returns, and the one function that turns them
into the report.

The runner records each result as its phase ends, in `PhaseResults`; a run
that fails stops recording, so `assemble_report` shows the phases that
finished and nothing of the rest, whatever failed and wherever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..guests.base import GuestCheck, GuestResult
from ..guests.its import ItsSaveEvidence, ItsTableVerdict
from ..guests.linux import GuestThroughput
from ..migration.dirtyrate import DirtyRateProbe
from ..migration.models import FeatureEvidence, MigrationStats
from ..verify.compare import MemoryVerdict
from ..verify.kring import KernelRing
from ..verify.ramblocks import RamBlockVerdict
from ..verify.ring import DirtyRingEvidence
from ..verify.sweep import SweepEvidence
from ..verify.timeline import DirtyTimeline
from .models import Hop, RunReport


@dataclass(frozen=True)
class TrackingResult:
    """The source's dirty tracking during a completed migration, from its trace."""

    dirty_timeline: DirtyTimeline
    sweep: SweepEvidence | None = None  # arm64 KVM
    dirty_ring: DirtyRingEvidence | None = None  # dirty-ring runs
    evidence_missing: list[str] = field(default_factory=list)  # what the ring's evidence lacks


@dataclass(frozen=True)
class MemoryResult:
    """Both RAM images compared, and the ITS tables among them (arm64 ITS guests)."""

    memory: MemoryVerdict
    its_tables: list[ItsTableVerdict] = field(default_factory=list)
    its_tables_source: str | None = None
    its_save: ItsSaveEvidence | None = None
    its_pending_unexplained: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ResumeResult:
    """The guest's checks once resumed on the destination, and how fast it went."""

    checks: list[GuestCheck]
    throughput: GuestThroughput | None = None


@dataclass
class HopResults:
    """One migration's phases, in the order they run; each is None until it
    ended. The stats are the exception: recorded as the migration starts,
    because the driver fills them in as it goes and a failed migration's
    figures are evidence too."""

    number: int
    source: str
    destination: str
    checks_before: list[GuestCheck] | None = None  # the guest's, on this source
    cancelled: MigrationStats | None = None  # --cancel-at, first migration only
    checks_after_cancel: list[GuestCheck] | None = None
    migration: MigrationStats | None = None
    tracking: TrackingResult | None = None
    memory: MemoryResult | None = None
    ramblocks: list[RamBlockVerdict] | None = None
    features: list[FeatureEvidence] | None = None  # read once the migration ended
    image_checks: list[GuestCheck] | None = None  # the destination's image, before resume
    resumed: GuestCheck | None = None
    after_resume: ResumeResult | None = None

    def guest_checks(self) -> list[GuestCheck]:
        """This migration's guest checks, in run order."""
        resumed = [self.resumed] if self.resumed is not None else []
        after = self.after_resume.checks if self.after_resume is not None else []
        return [*(self.checks_before or []), *(self.checks_after_cancel or []),
                *(self.image_checks or []), *resumed, *after]

    def evidence(self) -> dict[str, Any]:
        """The fields a report's `Hop`, or its top level for the last one, carries."""
        memory, tracking = self.memory, self.tracking
        migration = self.migration
        if migration is not None and self.features is not None:
            migration = migration.model_copy(update={"features": self.features})
        return {
            "migration": migration,
            "dirty_timeline": tracking.dirty_timeline if tracking else None,
            "dirty_ring": tracking.dirty_ring if tracking else None,
            "sweep": tracking.sweep if tracking else None,
            "memory": memory.memory if memory else None,
            "ramblocks": self.ramblocks or [],
            "its_tables": memory.its_tables if memory else [],
            "its_tables_source": memory.its_tables_source if memory else None,
            "its_save": memory.its_save if memory else None,
            "its_pending_unexplained": memory.its_pending_unexplained if memory else [],
        }


@dataclass
class PhaseResults:
    """Every phase's result so far: the one place a run records what it found."""

    ring: KernelRing | None = None  # --trace-kernel, or why not: its figures once read
    boot_s: float | None = None  # the source, launched until its workload runs
    dirty_rate: DirtyRateProbe | None = None  # --dirty-rate-probe, once it booted
    hops: list[HopResults] = field(default_factory=list)  # one a migration, begun in turn
    skipped_migration: str | None = None  # kvm-unit-tests' migrate_skip()
    guest_result: GuestResult | None = None  # a foreign guest's own verdict
    source_state_after: str | None = None  # cleanup's, once it settled the source

    @property
    def migration(self) -> MigrationStats | None:
        """The latest migration's stats, live while it runs; None between two."""
        return self.hops[-1].migration if self.hops else None


def assemble_report(header: RunReport, results: PhaseResults) -> RunReport:
    """The run's report: `header` says what ran and how it ended (version,
    error, configuration, host, timings); each recorded phase adds its
    evidence, the last migration's at the top level and those before it in
    `hops` (pure)."""
    hops = results.hops
    last = hops[-1].evidence() if hops else {}
    resumed = [h.after_resume for h in hops if h.after_resume]
    return header.model_copy(update={
        "boot_s": results.boot_s,
        "dirty_rate": results.dirty_rate,
        "kernel_ring": results.ring,
        "cancelled_migration": hops[0].cancelled if hops else None,
        "hops": [Hop(number=h.number, source=h.source, destination=h.destination,
                     **h.evidence()) for h in hops[:-1]],
        **last,
        "skipped_migration": results.skipped_migration,
        "guest_result": results.guest_result,
        "guest_checks": [c for h in hops for c in h.guest_checks()],
        "guest_throughput": resumed[-1].throughput if resumed else None,
        "evidence_missing": [why for h in hops if h.tracking
                             for why in h.tracking.evidence_missing],
        "source_state_after": results.source_state_after,
    })
