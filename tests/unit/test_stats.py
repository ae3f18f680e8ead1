"""Pure pieces of the migration driver and report assembly."""

import time

from qmpctl.guests.linux import guest_throughput
from qmpctl.migration.models import pages_resent, sample_from
from qmpctl.qemu.console import ConsoleView, Record, parse_record
from qmpctl.verify.ring import ring_evidence
from qmpctl.verify.timeline import build_timeline

QUERY = {"status": "active", "ram": {
    "transferred": 5 << 20, "remaining": 1 << 20, "total": 160 << 20, "page-size": 4096,
    "normal": 30000, "duplicate": 20000, "dirty-pages-rate": 1234, "mbps": 512.5,
    "dirty-sync-count": 3}}


def test_sample_and_resent_pages() -> None:
    s = sample_from(QUERY, 3, 1.23456)
    assert (s.pass_no, s.elapsed_s, s.pages_sent, s.dirty_sync_count) == (3, 1.235, 50000, 3)
    assert pages_resent(QUERY) == 50000 - 40960
    assert pages_resent({"ram": {"total": 160 << 20, "normal": 10}}) == 0


def test_ring_evidence_counts_only_the_migration_window() -> None:
    log = ("7@99.500000:kvm_dirty_ring_reap reaped 999 pages (took 5 us)\n"  # boot
           "7@100.100000:kvm_dirty_ring_reap reaped 100 pages (took 5 us)\n"
           "8@100.200000:kvm_dirty_ring_full vcpu 0\n"
           "7@100.300000:kvm_dirty_ring_reap reaped 23 pages (took 1 us)\n"
           "7@102.500000:kvm_dirty_ring_reap reaped 50 pages (took 1 us)\n")  # after
    ev = ring_evidence(build_timeline(log, 100.0, 101.0), pages_resent=120)
    assert (ev.reaps, ev.pages_reaped, ev.full_exits) == (2, 123, 1)
    assert (ev.reaps_before_migration, ev.pages_resent, ev.trace_events_seen) == (1, 120, True)
    assert not ring_evidence(build_timeline("", 100.0, 101.0), 0).trace_events_seen


def progress(t: float, pages: int) -> Record:
    r = parse_record(f"progress t_ms=0 written_mib={pages * 4096 >> 20} pages={pages}")
    return Record(r.kind, r.fields, r.raw, at=t)


def test_throughput_before_during_after_and_stall() -> None:
    src = ConsoleView([progress(0.0, 0), progress(1.0, 256), progress(2.0, 512),
                       progress(2.2, 600), progress(3.5, 700)])
    dst = ConsoleView([progress(5.0, 800), progress(6.0, 1056)])
    tp = guest_throughput(src, dst, t_start=1.5, t_end=4.0, t_cont=4.5)
    assert tp.before_mib_s == 1.0  # 256 pages/s = 1 MiB/s
    assert tp.after_mib_s == 1.0
    assert tp.during_mib_s is not None and tp.during_mib_s < 1.0
    assert tp.max_gap_during_ms == 1300
    assert [s.side for s in tp.samples] == ["src"] * 5 + ["dst"] * 2


def test_a_pass_sample_keeps_qemus_time_of_the_sync() -> None:
    from qmpctl.migration.driver import _Driver

    driver = _Driver(None, None, None, None)  # type: ignore[arg-type]
    driver.started_wall = 1700000000.0
    event = {"event": "MIGRATION_PASS", "data": {"pass": 2},
             "timestamp": {"seconds": 1700000001, "microseconds": 250000}}
    assert driver.stamped(event) == 1.25
    assert driver.stamped({"event": "MIGRATION_PASS", "data": {"pass": 2}}) is None
    assert sample_from(QUERY, 2, 1.6, 1.2504).synced_s == 1.25
    assert sample_from(QUERY, 2, 1.6).synced_s is None


def test_the_driver_counts_from_the_origin_it_is_given() -> None:
    # The run's fault times count from the same origin: a recovery attempt a
    # fault set off was once stamped 1 ms before the fault (a CI flake).
    from qmpctl.migration.driver import Started, _Driver

    origin = Started(time.monotonic() - 5.0, 1700000000.0)
    driver = _Driver(None, None, None, None, started=origin)  # type: ignore[arg-type]
    assert 5.0 <= driver.elapsed() < 6.0
    event = {"event": "MIGRATION", "timestamp": {"seconds": 1700000002, "microseconds": 0}}
    assert driver.stamped(event) == 2.0
    assert _Driver(None, None, None, None).elapsed() < 1.0  # type: ignore[arg-type]


def test_a_migration_that_cannot_converge_says_why_in_rates() -> None:
    from qmpctl.migration.driver import convergence_detail
    from qmpctl.migration.models import Decision, MigrationStats

    released = MigrationStats(status="timeout", decisions=[
        Decision(pass_no=4, elapsed_s=3.0, action="EndHoldBack", why="")])
    info = {"status": "active", "expected-downtime": 8300,
            "ram": {"dirty-pages-rate": 51200, "mbps": 838.8608, "remaining": 300 << 20,
                    "dirty-sync-count": 40, "page-size": 4096}}
    text = convergence_detail(released, info)
    assert text == ("40 dirty syncs; the guest dirties 200.0 MiB/s, the migration sends "
                    "100.0 MiB/s, 300.0 MiB remain: the guest dirties memory as fast as it "
                    "is sent, so precopy cannot converge (try --postcopy or --auto-converge); "
                    "expected downtime 8300 ms")
    held = convergence_detail(MigrationStats(status="timeout"), info)
    assert "convergence was still held back" in held


def test_a_failed_migrations_totals_agree_with_its_samples() -> None:
    """kill-dst at pass 2: QEMU's last query-migrate has no `ram` any more."""
    from qmpctl.migration.models import MigrationStats, absorb_final, absorb_samples
    from qmpctl.report.models import RunReport
    from qmpctl.report.text import summary_lines

    stats = MigrationStats(status="failed", samples=[sample_from(QUERY, 1, 0.5),
                                                     sample_from(QUERY, 3, 1.5)])
    stats.wall_s = 2.0
    absorb_final(stats, {"status": "failed", "error-desc": "Unable to write to socket"})
    absorb_samples(stats)
    assert (stats.passes, stats.transferred_bytes, stats.pages_resent) == (3, 5 << 20,
                                                                            50000 - 40960)
    rep = RunReport(qmpctl_version="x", started_at="now", verdict="migration-failed",
                    exit_code=4, migration=stats)
    line = next(x for x in summary_lines(rep) if x.startswith("migration: "))
    assert line.startswith("migration: failed, 3 passes (0 throttled), 9040 pages re-sent, "
                           "5.0 MiB transferred, 2.0 s (QEMU gave no total), "), line
    assert "None" not in line
