"""The verdict is decided from the evidence, never optimistically (pure)."""

from __future__ import annotations

import pytest

from qmpctl.core.errors import ExitCode, UsageError
from qmpctl.guests.base import GuestCheck, GuestResult
from qmpctl.guests.its import ItsSaveEvidence, ItsTableVerdict
from qmpctl.host.kvm import KvmInfo
from qmpctl.matrix.results import loss_summary
from qmpctl.migration.models import MigrationStats
from qmpctl.report.models import Hop, RunReport
from qmpctl.report.verdict import before_migration_failure, conclude
from qmpctl.scenario.options import POSTCOPY_SKIPS_BACKUP_BITMAP, ring_safety
from qmpctl.testing import LostPages, NotVerified, assert_verified, not_verified_message
from qmpctl.verify.compare import MemoryVerdict, PageMismatch
from qmpctl.verify.ring import DirtyRingEvidence, ring_problems, stall_detail
from qmpctl.verify.timeline import DirtyTimeline, TimelineSummary


def report(**migration: object) -> RunReport:
    stats = MigrationStats(**{"status": "completed", "passes": 5, "pages_resent": 100,  # type: ignore[arg-type]
                              **migration})
    return RunReport(qmpctl_version="t", started_at="t", verdict="verified", exit_code=0,
                     migration=stats)


def test_a_sound_run_is_verified() -> None:
    rep = report()
    conclude(rep)
    assert (rep.verdict, rep.exit_code, rep.inconclusive) == ("verified", 0, [])


@pytest.mark.parametrize(("stats", "reason"), [
    ({"workload_stalled": True}, "the workload rewrote no memory"),
    ({"pages_resent": 0}, "no page was sent twice"),
    ({"passes": 1}, "only 1 dirty sync(s); at least 2 are needed"),
])
def test_runs_that_prove_nothing_are_inconclusive(stats: dict[str, object], reason: str) -> None:
    rep = report(**stats)
    conclude(rep)
    assert (rep.verdict, rep.exit_code) == ("inconclusive", ExitCode.INCONCLUSIVE)
    assert any(reason in why for why in rep.inconclusive), rep.inconclusive


def test_a_difference_beats_inconclusive_and_missing_evidence() -> None:
    rep = report(workload_stalled=True)
    rep.evidence_missing = ["no ring trace"]
    rep.guest_checks = [GuestCheck(name="wave-invariant", stage="dst", ok=False, detail="x")]
    conclude(rep)
    assert (rep.verdict, rep.exit_code) == ("mismatch", ExitCode.MISMATCH)


def test_missing_ring_evidence_is_an_environment_error_not_a_mismatch() -> None:
    problems = ring_problems(DirtyRingEvidence(reaps=0, pages_reaped=0, full_exits=0,
                                               trace_events_seen=False))
    assert problems and "no kvm_dirty_ring_* trace event" in problems[0]
    assert ring_problems(DirtyRingEvidence(reaps=0, pages_reaped=0, full_exits=9,
                                           reaps_before_migration=2)) == [
        "no ring reap collected a page during the migration (9 ring-full exits, 2 non-empty "
        "reaps before it): the ring did not carry the dirty pages"]
    assert ring_problems(DirtyRingEvidence(reaps=2, pages_reaped=50, full_exits=9)) == []
    rep = report()
    rep.evidence_missing = problems
    conclude(rep)
    assert (rep.verdict, rep.exit_code) == ("environment-error", ExitCode.ENVIRONMENT)
    assert rep.error is not None and "trace event" in rep.error


def test_earlier_errors_stand() -> None:
    rep = report()
    rep.exit_code, rep.error = int(ExitCode.ERROR), "unexpected ValueError: short read"
    conclude(rep)
    assert rep.verdict == "error"


def test_arm64_postcopy_with_the_ring_is_refused_unless_forced() -> None:
    kvm = KvmInfo(device="/dev/kvm", accessible=True, flavour="arm64",
                  caps={"dirty-log-ring-acq-rel": 1 << 20, "dirty-log-ring-with-bitmap": 1})
    with pytest.raises(UsageError, match=r"^--postcopy: postcopy with the dirty ring on arm64"):
        ring_safety("aarch64", "kvm", 4096, kvm, force=False, postcopy=True)
    assert ring_safety("aarch64", "kvm", 4096, kvm, force=True, postcopy=True) == (
        POSTCOPY_SKIPS_BACKUP_BITMAP,)
    assert ring_safety("aarch64", "kvm", 0, kvm, force=False, postcopy=True) == ()
    assert ring_safety("aarch64", "kvm", 4096, kvm, force=False, postcopy=False) == ()


def test_failed_checks_before_migration_are_guest_failures() -> None:
    ok = GuestCheck(name="nic-interrupting", stage="source", ok=True, detail="irqs 5")
    silent = GuestCheck(name="lpis-flowing", stage="source, before migration", ok=False,
                        detail="issued=0 delivered=0 wrong-pe=0")
    assert before_migration_failure([ok]) is None
    err = before_migration_failure([ok, silent])
    assert err is not None and err.exit_code == ExitCode.GUEST_FAILED
    assert err.verdict == "guest-failed"
    assert err.message == ("the guest failed its checks before migration: lpis-flowing: "
                           "issued=0 delivered=0 wrong-pe=0")


def test_room_for_both_sides_is_checked_before_launch() -> None:
    from pathlib import Path

    from qmpctl.scenario.runner import space_problem

    assert space_problem(160, 1 << 30, Path("/dev/shm")) is None
    assert space_problem(2048, 3 << 30, Path("/dev/shm")) == (
        "not enough room for 2 copies of guest RAM in /dev/shm: 4160 MiB needed, 3072 MiB "
        "free (1088 MiB missing)")


def test_memory_for_both_sides_is_checked_before_launch() -> None:
    from qmpctl.host.memory import mem_available, memory_problem

    assert mem_available("MemTotal: 100 kB\nMemAvailable:   2048 kB\n") == 2 << 20
    assert mem_available("MemTotal: 100 kB\n") is None
    assert memory_problem(8192, 23 << 30) is None
    assert memory_problem(11264, 22 << 30) == (
        "not enough memory for 2 copies of guest RAM (tmpfs pages are RAM and QEMU fills both "
        "RAM files): 22784 MiB needed, 22528 MiB available (256 MiB missing)")
    assert memory_problem(11264, None) is None


def summary(**figures: object) -> TimelineSummary:
    base: dict[str, object] = dict(
        reaps=3, pages_reaped=412, reaps_before=2, pages_reaped_before=9000, last_reap_s=0.1,
        last_reap_pages=412, ring_full_exits=60745, ring_full_by_vcpu={0: 60745},
        ring_full_after_last_reap=60700, bitmap_syncs=4, final_flush_s=2.0,
        final_flush_pages=0, pages_reaped_after_final_flush=0, vm_stop_s=2.0,
        completed_s=2.1, final_state="completed")
    return TimelineSummary.model_validate({**base, **figures})


@pytest.mark.parametrize(("figures", "detail"), [
    ({}, "the ring was last harvested at +0.10 s (412 pages), then its vCPUs took 60700 "
         "ring-full exits up to the VM stop"),
    ({"last_reap_s": None, "last_reap_pages": None, "reaps": 0, "pages_reaped": 0},
     "no ring reap collected a page during the migration while its vCPUs took 60745 "
     "ring-full exits"),
    ({"ring_full_after_last_reap": 0}, None),  # harvested to the end: not a stall
    ({"ring_full_exits": 0, "ring_full_after_last_reap": 0}, None),
])
def test_a_stalled_ring_is_told_from_the_timeline(figures: dict[str, object],
                                                   detail: str | None) -> None:
    assert stall_detail(summary(**figures)) == detail


def test_a_guest_held_by_its_ring_is_inconclusive_and_says_how() -> None:
    rep = report(workload_progress_during=0, workload_progress_unit="wave passes")
    rep.dirty_timeline = DirtyTimeline.model_construct(summary=summary())
    conclude(rep)
    assert rep.verdict == "inconclusive"
    assert ("the workload made no progress (wave passes) during the migration: the ring was "
            "last harvested at +0.10 s (412 pages), then its vCPUs took 60700 ring-full exits "
            "up to the VM stop: a stalled dirty ring kept the guest from running") in \
        rep.inconclusive[0]
    plain = report(workload_progress_during=0, workload_progress_unit="wave passes")
    plain.dirty_timeline = DirtyTimeline.model_construct(
        summary=summary(ring_full_exits=0, ring_full_after_last_reap=0))
    conclude(plain)  # no ring-full exits: nothing to blame on the ring
    assert plain.inconclusive[0] == ("the workload made no progress (wave passes) during "
                                     "the migration")


def _its(pages_differing: int) -> ItsTableVerdict:
    return ItsTableVerdict(name="device", base=0x4008_0000, size=0x10000, pages=16,
                           pages_differing=pages_differing, identical=not pages_differing)


def test_one_decision_of_lost_for_the_verdict_assert_verified_and_the_matrix() -> None:
    """A differing ITS table, or a difference in an earlier migration, is a
    loss everywhere: the verdict, assert_verified (LostPages, not merely
    NotVerified) and the matrix's summary say the same thing."""
    for build in (lambda r: setattr(r, "its_tables", [_its(2)]),
                  lambda r: r.hops.append(Hop(number=1, source="src", destination="dst1",
                                              its_tables=[_its(1)]))):
        rep = report()
        build(rep)
        conclude(rep)
        assert (rep.verdict, rep.exit_code) == ("mismatch", ExitCode.MISMATCH)
        losses = rep.losses()
        assert len(losses) == 1 and "ITS table device at 0x40080000" in losses[0].where
        with pytest.raises(LostPages) as err:
            assert_verified(rep)
        assert losses[0].text() in str(err.value)
        assert loss_summary(rep) == losses[0].text()
    rep = report()
    rep.its_tables = [_its(0)]
    conclude(rep)
    assert rep.losses() == [] and rep.verdict == "verified"


def test_a_failed_guest_check_is_a_mismatch_but_not_lost_pages() -> None:
    rep = report()
    rep.guest_checks = [GuestCheck(name="wave-invariant", stage="dst", ok=False, detail="x")]
    conclude(rep)
    assert rep.verdict == "mismatch" and rep.losses() == []
    with pytest.raises(NotVerified) as err:
        assert_verified(rep)
    assert not isinstance(err.value, LostPages)
    assert loss_summary(rep) == "guest check wave-invariant failed: x"


def test_two_dirty_syncs_are_enough_and_one_is_not() -> None:
    """MIN_SYNCS is inclusive: the bulk pass plus one pass that re-sent."""
    rep = report(passes=2)
    conclude(rep)
    assert rep.verdict == "verified"
    rep = report(passes=1)
    conclude(rep)
    assert rep.inconclusive == ["only 1 dirty sync(s); at least 2 are needed"]


def test_the_reasons_are_said_exactly() -> None:
    rep = report(workload_stalled=True, pages_resent=0)
    conclude(rep)
    assert rep.inconclusive == [
        "the workload rewrote no memory while convergence was held back",
        "no page was sent twice: no dirty page was ever re-sent"]


def _save(**figures: object) -> ItsSaveEvidence:
    return ItsSaveEvidence(**{"snapshot": "+0.5 s", "pages_changed": 3,  # type: ignore[arg-type]
                              "by_table": {"device": 3}, "pages_arrived": 3, **figures})


def test_an_unproven_its_save_makes_the_run_inconclusive_naming_its_migration() -> None:
    rep = report()
    rep.its_save = _save()
    conclude(rep)
    assert rep.verdict == "verified"  # a save that wrote pages which all arrived
    rep = report()
    rep.its_save = _save(pages_changed=0, by_table={}, pages_arrived=0)
    conclude(rep)
    assert rep.inconclusive == [
        "ITS save: the save changed no table page since +0.5 s: nothing proves the save's "
        "writes travel (inconclusive for this check)"]
    rep = report()
    rep.hops.append(Hop(number=1, source="src", destination="dst1",
                        migration=report().migration, its_save=_save(snapshot=None)))
    rep.its_save = _save()
    conclude(rep)
    assert rep.inconclusive == [
        "migration 1: ITS save: no before-image of the tables was read while the source "
        "still ran: what the save at the stop wrote cannot be shown (inconclusive for this "
        "check)"]


def test_its_tables_not_located_are_compared_only_as_ram() -> None:
    rep = report()
    rep.its_tables_source = "not located: the guest announced none"
    conclude(rep)
    assert rep.inconclusive == [
        "the ITS tables were not located: the guest announced none; their pages were "
        "compared only as RAM, with no verdict per table"]
    rep = report()
    rep.its_tables_source = "announced by the guest"
    conclude(rep)
    assert rep.verdict == "verified"


@pytest.mark.parametrize(("status", "verdict"), [
    ("FAIL", "guest-failed"), ("NO-RESULT", "guest-failed"), ("PASS", "verified"),
    ("SKIP", "verified"), ("NONE", "verified")])
def test_a_guest_that_failed_or_gave_no_promised_result_is_guest_failed(
        status: str, verdict: str) -> None:
    rep = report()
    rep.guest_result = GuestResult(status=status, detail="3 tests",  # type: ignore[arg-type]
                                   failures=["FAIL a", "FAIL b", "FAIL c", "FAIL d"])
    conclude(rep)
    assert rep.verdict == verdict
    if verdict == "guest-failed":
        assert rep.error == (f"the guest reported {status} (3 tests): FAIL a; FAIL b; FAIL c")
    rep = report()
    rep.guest_result = GuestResult(status="FAIL", detail="d")
    conclude(rep)
    assert rep.error == "the guest reported FAIL (d)"


def test_missing_evidence_is_joined_into_the_error() -> None:
    rep = report()
    rep.evidence_missing = ["no ring trace", "no sweep"]
    conclude(rep)
    assert (rep.verdict, rep.error) == ("environment-error", "no ring trace; no sweep")


def test_a_guest_that_never_migrated_says_so_with_its_own_result() -> None:
    rep = report()
    rep.skipped_migration = "the guest asked for no migration"
    rep.guest_result = GuestResult(status="PASS")
    conclude(rep)
    assert rep.inconclusive == ["the guest asked for no migration: nothing was migrated; "
                                "the guest's own result: PASS"]
    rep = report()
    rep.skipped_migration = "the guest asked for no migration"
    conclude(rep)
    assert rep.inconclusive[-1].endswith("the guest's own result: none")


def test_checks_failed_before_migration_are_named_in_one_line() -> None:
    err = before_migration_failure([
        GuestCheck(name="lpi", stage="src", ok=False, detail="no LPI"),
        GuestCheck(name="nic", stage="src", ok=True, detail="ok"),
        GuestCheck(name="wave", stage="src", ok=False, detail="stuck")])
    assert err is not None and err.message == (
        "the guest failed its checks before migration: lpi: no LPI; wave: stuck")


def _memory(gpa: int) -> MemoryVerdict:
    page = PageMismatch(page=gpa // 4096, offset=gpa, gpa=gpa, region="wave",
                        differing_bytes=1, first_diff=0, src_hex="01", dst_hex="00")
    return MemoryVerdict(bytes_compared=1 << 20, pages_total=256, pages_compared=256,
                         pages_excluded=0, pages_differing=1, exclusions=[],
                         mismatches=[page], seconds=0.1, gib_per_s=1.0)


def test_each_migration_s_guest_ram_loss_is_said_once_and_named_by_its_migration() -> None:
    """Two migrations that both lost guest RAM: the message details the last
    one's pages and sums up the first one's in a line of its own (never the
    last one's twice); the matrix names both, each by its migration."""
    rep = report()
    rep.hops.append(Hop(number=1, source="src", destination="dst1", memory=_memory(0x1000)))
    rep.memory = _memory(0x2000)
    conclude(rep)
    assert [(loss.migration, loss.last, loss.in_guest_ram) for loss in rep.losses()] == [
        (1, False, True), (2, True, True)]
    message = not_verified_message(rep)
    assert "page gpa 0x2000 (wave)" in message
    assert "migration 1: 1 of 256 pages of guest RAM differ, first at gpa 0x1000" in message
    assert "migration 2:" not in message  # detailed above, not repeated
    assert loss_summary(rep) == ("migration 1: 1 of 256 pages of guest RAM differ, first at "
                                 "gpa 0x1000 (wave); migration 2: 1 of 256 pages of guest RAM "
                                 "differ, first at gpa 0x2000 (wave)")
