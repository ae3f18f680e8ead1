"""The report assembled from the phases' results (report.phases.assemble_report):
pure, no QEMU. A run that fails part-way shows the phases that finished."""

from __future__ import annotations

from qmpctl.core.errors import MigrationFailed
from qmpctl.guests.base import GuestCheck
from qmpctl.guests.linux import GuestThroughput
from qmpctl.migration.models import FeatureEvidence, MigrationStats
from qmpctl.report.models import Hop, RunReport
from qmpctl.report.phases import (
    HopResults,
    MemoryResult,
    PhaseResults,
    ResumeResult,
    TrackingResult,
    assemble_report,
)
from qmpctl.report.verdict import conclude
from qmpctl.scenario.runner import new_report
from qmpctl.verify.compare import MemoryVerdict
from qmpctl.verify.kring import KernelRing
from qmpctl.verify.ring import DirtyRingEvidence
from qmpctl.verify.timeline import build_timeline


def _check(name: str, ok: bool = True) -> GuestCheck:
    return GuestCheck(name=name, stage="test", ok=ok, detail=name)


def _memory(differing: int) -> MemoryResult:
    return MemoryResult(memory=MemoryVerdict(
        bytes_compared=4 << 12, pages_total=4, pages_compared=4, pages_excluded=0,
        pages_differing=differing, exclusions=[], mismatches=[], seconds=0.1, gib_per_s=1.0),
        its_tables_source=f"located {differing}")


def _stats(resent: int = 9) -> MigrationStats:
    return MigrationStats(status="completed", passes=5, pages_resent=resent)


def _tracking(problem: str | None = None) -> TrackingResult:
    return TrackingResult(dirty_timeline=build_timeline("", 0.0, 1.0),
                          dirty_ring=DirtyRingEvidence(reaps=1, pages_reaped=2, full_exits=0),
                          evidence_missing=[problem] if problem else [])


def _done(number: int, source: str, destination: str, before: str) -> HopResults:
    """A migration whose every phase ended."""
    return HopResults(
        number=number, source=source, destination=destination, checks_before=[_check(before)],
        migration=_stats(), tracking=_tracking(f"problem {number}"), memory=_memory(number - 1),
        ramblocks=[], features=[FeatureEvidence(feature=f"f{number}", engaged=True, detail="")],
        image_checks=[_check(f"image {number}")], resumed=_check(f"resumed {number}"),
        after_resume=ResumeResult(checks=[_check(f"after {number}")], throughput=GuestThroughput(
            before_mib_s=float(number), during_mib_s=None, after_mib_s=None,
            max_gap_during_ms=None, samples=[])))


def test_nothing_recorded_gives_the_header_alone() -> None:
    header = new_report(MigrationFailed("refused"))
    report = assemble_report(header, PhaseResults())
    assert report == header


def test_a_failure_part_way_shows_only_the_phases_that_finished() -> None:
    hop = HopResults(number=1, source="src", destination="dst",
                     checks_before=[_check("nic-interrupting")],
                     migration=MigrationStats(status="failed", error_desc="socket closed"))
    results = PhaseResults(ring=KernelRing(engaged=False, reason="not asked"), boot_s=1.5,
                           hops=[hop], source_state_after="running")
    report = assemble_report(new_report(MigrationFailed("migration failed")), results)
    conclude(report)
    assert (report.verdict, report.error) == ("migration-failed", "migration failed")
    assert report.boot_s == 1.5 and report.kernel_ring == results.ring
    assert report.migration is not None and report.migration.error_desc == "socket closed"
    assert [c.name for c in report.guest_checks] == ["nic-interrupting"]
    assert report.source_state_after == "running"
    assert report.memory is None and report.dirty_timeline is None and report.ramblocks == []
    assert report.hops == [] and report.guest_throughput is None


def test_guest_checks_appear_in_run_order() -> None:
    first = _done(1, "src", "dst", "before 1")
    first.cancelled = MigrationStats(status="cancelled")
    first.checks_after_cancel = [_check("after the cancel")]
    second = HopResults(number=2, source="dst", destination="dst2",
                        checks_before=[_check("before 2")], migration=_stats(),
                        image_checks=[_check("image 2", ok=False)])
    report = assemble_report(new_report(), PhaseResults(hops=[first, second]))
    assert [c.name for c in report.guest_checks] == [
        "before 1", "after the cancel", "image 1", "resumed 1", "after 1",
        "before 2", "image 2"]
    assert report.cancelled_migration == first.cancelled
    conclude(report)
    assert report.verdict == "mismatch"  # a failed check is a loss


def test_every_migration_but_the_last_is_a_hop() -> None:
    results = PhaseResults(hops=[_done(1, "src", "dst", "b1"), _done(2, "dst", "dst2", "b2"),
                                 _done(3, "dst2", "dst3", "b3")])
    report = assemble_report(new_report(), results)
    assert [(h.number, h.source, h.destination) for h in report.hops] == [
        (1, "src", "dst"), (2, "dst", "dst2")]
    assert [h.memory.pages_differing for h in report.hops if h.memory] == [0, 1]
    assert report.hops[1].its_tables_source == "located 1"
    # the top level is the last migration's
    assert report.memory is not None and report.memory.pages_differing == 2
    assert report.its_tables_source == "located 2" and report.dirty_ring is not None
    assert report.migration is not None
    assert [f.feature for f in report.migration.features] == ["f3"]
    assert [f.feature for h in report.hops if h.migration for f in h.migration.features] == [
        "f1", "f2"]
    assert report.evidence_missing == ["problem 1", "problem 2", "problem 3"]
    assert [loss.migration for loss in report.losses()] == [2, 3]
    # what was assembled is a report as the schema has it
    dumped = report.model_dump_json()
    assert RunReport.model_validate_json(dumped).model_dump_json() == dumped


def test_a_migration_begun_but_not_run_leaves_the_top_level_empty() -> None:
    """The guest asked for a second migration, which failed before it started."""
    results = PhaseResults(hops=[_done(1, "src", "dst", "b1"),
                                 HopResults(number=2, source="dst", destination="dst2")])
    report = assemble_report(new_report(MigrationFailed("x")), results)
    assert [h.number for h in report.hops] == [1]
    assert report.migration is None and report.memory is None and report.its_tables == []
    # the guest's throughput is the last resumed migration's
    assert report.guest_throughput is not None and report.guest_throughput.before_mib_s == 1
    assert report.guest_checks[-1].name == "after 1"


def test_a_migrations_evidence_is_every_field_a_hop_carries() -> None:
    """Hop (and the top level) take it by name: a name that slipped would be dropped."""
    evidence = HopResults(number=1, source="src", destination="dst").evidence()
    assert set(evidence) == set(Hop.model_fields) - {"number", "source", "destination"}
    assert set(evidence) <= set(RunReport.model_fields)
