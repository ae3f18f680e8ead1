from pathlib import Path

import pytest

from qmpctl.verify.classify import KindSummary, MismatchClasses
from qmpctl.verify.timeline import (
    TIMELINE_TRACE_EVENTS,
    build_timeline,
    plot_timeline,
    relate,
    timeline_qemu_args,
)

# The source QEMU's stderr of a real KVM dirty-ring migration on this host
# (QEMU 10.0.2, -accel kvm,dirty-ring-size=4096, -msg timestamp=on, the
# TIMELINE_TRACE_EVENTS plus vm_state_notify and migration_completion_vm_stop),
# trimmed: ~210k kvm_dirty_ring_full lines cut to a few, out-of-order lines kept.
# QEMU ends argument-less events with a space (\x20 below).
# The caller's wall clock: migrate issued at START, completed seen at END.
START, END = 1795461257.297121, 1795461258.6045012
REAL_LOG = """\
14595@1795461252.845813:kvm_dirty_ring_reaper init
14595@1795461252.845857:kvm_dirty_ring_reaper wait
2026-11-23T19:14:12.847898Z qemu-system-x86_64: warning: host doesn't support \
requested feature: CPUID.01H:ECX.pni [bit 0]
14588@1795461252.877050:runstate_set current_run_state 6 (prelaunch) new_state 9 (running)
14588@1795461252.877081:vm_state_notify running 1 reason 9 (running)
14595@1795461256.846393:kvm_dirty_ring_reaper wakeup
14595@1795461256.846452:kvm_dirty_ring_reaper wait
14588@1795461257.297847:migrate_set_state new state setup
14602@1795461257.305094:migration_bitmap_sync_start\x20
14602@1795461257.305144:kvm_dirty_ring_flush 0
14602@1795461257.305836:kvm_dirty_ring_reap reaped 539 pages (took 34 us)
14602@1795461257.305844:kvm_dirty_ring_flush 1
14602@1795461257.305859:migration_bitmap_sync_end dirty_pages 0
14602@1795461257.306007:migrate_set_state new state active
14597@1795461257.324907:kvm_dirty_ring_full vcpu 0
14597@1795461257.325233:kvm_dirty_ring_reap reaped 4061 pages (took 245 us)
14597@1795461257.346521:kvm_dirty_ring_full vcpu 0
14597@1795461257.346734:kvm_dirty_ring_reap reaped 4096 pages (took 162 us)
14597@1795461257.366038:kvm_dirty_ring_full vcpu 0
14597@1795461257.366104:kvm_dirty_ring_full vcpu 0
14595@1795461257.846504:kvm_dirty_ring_reaper wakeup
14595@1795461257.846535:kvm_dirty_ring_reaper wait
14602@1795461257.996905:migration_bitmap_sync_start\x20
14602@1795461257.996924:kvm_dirty_ring_flush 0
14602@1795461257.997003:kvm_dirty_ring_flush 1
14602@1795461257.997024:migration_bitmap_sync_end dirty_pages 8043
14597@1795461258.599218:kvm_dirty_ring_full vcpu 0
14597@1795461258.599226:kvm_dirty_ring_full vcpu 0
14602@1795461258.599304:migration_bitmap_sync_start\x20
14602@1795461258.599324:kvm_dirty_ring_flush 0
14597@1795461258.599306:kvm_dirty_ring_full vcpu 0
14597@1795461258.599434:kvm_dirty_ring_full vcpu 0
14602@1795461258.599486:kvm_dirty_ring_flush 1
14602@1795461258.599519:migration_bitmap_sync_end dirty_pages 8043
14602@1795461258.599535:runstate_set current_run_state 9 (running) new_state 7 (finish-migrate)
14602@1795461258.599613:vm_state_notify running 0 reason 7 (finish-migrate)
14602@1795461258.599791:migration_completion_vm_stop ret 0
14602@1795461258.599798:migrate_set_state new state device
14602@1795461258.599814:migration_bitmap_sync_start\x20
14602@1795461258.599817:kvm_dirty_ring_flush 0
14602@1795461258.600208:kvm_dirty_ring_flush 1
14602@1795461258.600221:migration_bitmap_sync_end dirty_pages 0
14602@1795461258.602042:migrate_set_state new state completed
14602@1795461258.602058:runstate_set current_run_state 7 (finish-migrate) new_state 5 (postmigrate)
"""


def stale_classes(pages: int, steps: dict[str, int]) -> MismatchClasses:
    return MismatchClasses(classifier="wave", unit="pass", pages=pages,
                           stale=KindSummary(pages=pages, steps=steps), ahead=KindSummary(),
                           foreign=KindSummary(), unexplained=KindSummary())


def test_real_log_summary() -> None:
    tl = build_timeline(REAL_LOG, START, END)
    s = tl.summary
    assert tl.start_from == "caller" and tl.untimed_lines == 0
    # The setup sync's flush (539 pages), then two vCPU reaps within 50 ms; none after.
    assert (s.reaps, s.pages_reaped, s.reaps_before) == (3, 539 + 4061 + 4096, 0)
    assert s.last_reap_s == pytest.approx(1795461257.346734 - START, abs=1e-6)
    assert s.last_reap_pages == 4096
    assert s.ring_full_exits == 8 and s.ring_full_by_vcpu == {0: 8}
    assert s.ring_full_after_last_reap == 6  # up to the VM stop
    assert s.bitmap_syncs == 4
    assert s.final_flush_s == pytest.approx(1795461258.599817 - START, abs=1e-6)
    assert s.final_flush_pages == 0 and s.pages_reaped_after_final_flush == 0
    assert s.vm_stop_s == pytest.approx(1795461258.599535 - START, abs=1e-6)
    assert s.completed_s == pytest.approx(1795461258.602042 - START, abs=1e-6)
    assert s.final_state == "completed"


def test_real_log_events_in_order_with_reaps_attributed() -> None:
    tl = build_timeline(REAL_LOG, START, END)
    times = [e.t_s for e in tl.events]
    assert times == sorted(times)
    assert [e.kind for e in tl.events][:8] == [
        "reaper", "migration_state", "sync_start", "flush_begin", "reap", "flush_end",
        "sync_end", "migration_state"]
    reaps = [(e.by, e.vcpu, e.pages, e.took_us) for e in tl.events if e.kind == "reap"]
    assert reaps == [("flush", None, 539, 34), ("vcpu", 0, 4061, 245), ("vcpu", 0, 4096, 162)]
    assert [e.detail for e in tl.events if e.kind == "migration_state"] == [
        "setup", "active", "device", "completed"]
    assert [e.detail for e in tl.events if e.kind == "runstate"] == [
        "finish-migrate", "postmigrate"]
    assert [e.pages for e in tl.events if e.kind == "sync_end"] == [0, 8043, 8043, 0]
    # Boot-time events more than lead_s before the start are counted, not listed;
    # the reaper's 'wait' steps and ring-full exits are never listed.
    assert tl.events_outside == 2  # reaper init, boot runstate; the wakeup at -0.45 s is listed
    assert not any(e.detail == "wait" for e in tl.events)


def test_real_log_pass_windows() -> None:
    tl = build_timeline(REAL_LOG, START, END)
    rows = [(w.label, w.ring_full_exits, w.reaps, w.pages_reaped, w.closing_sync_dirty_pages)
            for w in tl.windows]
    assert rows == [
        ("pass 0", {}, 1, 539, 0),
        ("pass 1", {0: 4}, 2, 8157, 8043),
        ("pass 2", {0: 4}, 0, 0, 8043),
        ("pass 3", {}, 0, 0, 0),
        ("pass 4", {}, 0, 0, None),
    ]
    assert tl.windows[0].start_s == 0.0
    assert tl.windows[-1].end_s == pytest.approx(END - START, abs=1e-6)


def test_start_and_end_from_the_trace_when_not_given() -> None:
    tl = build_timeline(REAL_LOG)
    assert tl.start_from == "trace"
    assert tl.start_wall == 1795461257.297847 and tl.end_wall == 1795461258.602042
    assert tl.summary.completed_s == pytest.approx(1795461258.602042 - 1795461257.297847)


def test_relate_sentence() -> None:
    tl = build_timeline(REAL_LOG, START, END)
    assert relate(tl, stale_classes(1218, {"1": 1218})) == (
        "1218 stale pages (1 pass behind); last non-empty reap at +0.05 s "
        "(6 ring-full exits after it), the final flush reaped 0 pages, VM stopped at +1.30 s")
    mixed = stale_classes(3, {"1": 2, "2": 1})
    mixed.foreign.pages = 1
    assert relate(tl, mixed).startswith(
        "3 stale pages (1-2 passes behind, mostly 1) and 1 foreign; last non-empty reap")
    assert relate(tl, stale_classes(0, {})).startswith("no stale pages; ")


def test_boot_reaps_are_not_counted_in_the_migration() -> None:
    log = ("100@1000.000000:kvm_dirty_ring_reap reaped 77 pages (took 5 us)\n"
           "100@1009.000000:kvm_dirty_ring_reap reaped 5 pages (took 1 us)\n"
           "7@1010.000000:migrate_set_state new state setup\n"
           "100@1011.000000:kvm_dirty_ring_reap reaped 9 pages (took 2 us)\n"
           "7@1012.000000:migrate_set_state new state completed\n")
    s = build_timeline(log).summary
    assert (s.reaps, s.pages_reaped, s.reaps_before, s.pages_reaped_before) == (1, 9, 2, 82)
    assert s.last_reap_s == 1.0 and s.final_flush_pages is None
    assert relate(build_timeline(log), stale_classes(2, {"1": 2})) == (
        "2 stale pages (1 pass behind); last non-empty reap at +1.00 s, "
        "no ring flush traced, no VM stop traced")


def test_two_vcpus_aggregated_per_vcpu_and_per_pass() -> None:
    lines = ["1@100.0:migrate_set_state new state setup"]
    lines += [f"11@{100.1 + i * 0.001:.6f}:kvm_dirty_ring_full vcpu 0" for i in range(50)]
    lines += [f"12@{100.2 + i * 0.001:.6f}:kvm_dirty_ring_full vcpu 1" for i in range(30)]
    lines += ["12@100.25:kvm_dirty_ring_reap reaped 4096 pages (took 100 us)",
              "9@100.5:migration_bitmap_sync_start",
              "9@100.5:kvm_dirty_ring_flush 0",
              "12@100.500010:kvm_dirty_ring_reap reaped 3 pages (took 1 us)",
              "9@100.500020:kvm_dirty_ring_reap reaped 11 pages (took 2 us)",
              "9@100.6:kvm_dirty_ring_flush 1",
              "9@100.6:migration_bitmap_sync_end dirty_pages 4110",
              "9@100.9:runstate_set current_run_state 9 (running) new_state 7 (finish-migrate)",
              "12@100.95:kvm_dirty_ring_reap reaped 2 pages (took 1 us)",
              "1@101.0:migrate_set_state new state completed"]
    lines += [f"11@{100.7 + i * 0.001:.6f}:kvm_dirty_ring_full vcpu 0" for i in range(20)]
    tl = build_timeline("\n".join(lines) + "\n")
    s = tl.summary
    assert s.ring_full_by_vcpu == {0: 70, 1: 30} and s.ring_full_exits == 100
    assert [(w.label, w.ring_full_exits, w.reaps, w.pages_reaped) for w in tl.windows] == [
        ("pass 0", {0: 50, 1: 30}, 3, 4096 + 3 + 11), ("pass 1", {0: 20}, 1, 2)]
    reaps = [(e.by, e.vcpu, e.pages) for e in tl.events if e.kind == "reap"]
    # a vCPU thread's reap during the migration thread's flush is that vCPU's own
    assert reaps == [("vcpu", 1, 4096), ("vcpu", 1, 3), ("flush", None, 11), ("vcpu", 1, 2)]
    assert s.final_flush_pages == 11
    assert s.pages_reaped_after_final_flush == 2 + 0  # the reap at +0.95 s
    assert s.ring_full_after_last_reap == 0  # last reap at +0.95, after the stop
    assert s.vm_stop_s == pytest.approx(0.9)


def test_iso8601_timestamps_of_newer_qemu() -> None:
    # qemu_log() in QEMU > 10.0 prefixes glib's ISO 8601 UTC time, no thread id.
    log = ("2026-11-23T19:14:17.297847Z migrate_set_state new state setup\n"
           "2026-11-23T19:14:17.325233Z kvm_dirty_ring_reap reaped 4061 pages (took 245 us)\n"
           "2026-11-23T19:14:17.366038Z kvm_dirty_ring_full vcpu 0\n"
           "2026-11-23T19:14:17.366104Z kvm_dirty_ring_full vcpu 1\n"
           "2026-11-23T19:14:18.599535Z runstate_set current_run_state 9 (running) "
           "new_state 7 (finish-migrate)\n"
           "2026-11-23T19:14:18.602042Z migrate_set_state new state completed\n")
    tl = build_timeline(log)
    s = tl.summary
    assert s.pages_reaped == 4061 and s.ring_full_by_vcpu == {0: 1, 1: 1}
    assert s.last_reap_s == pytest.approx(0.027386, abs=1e-6)
    assert s.vm_stop_s == pytest.approx(1.301688, abs=1e-6)
    assert s.ring_full_after_last_reap == 2
    assert [e.by for e in tl.events if e.kind == "reap"] == ["other"]


def test_untimed_log_is_refused_with_the_reason() -> None:
    # What qmpctl's runner writes today: -trace without -msg timestamp=on.
    log = ("kvm_dirty_ring_reap reaped 532 pages (took 44 us)\n"
           "kvm_dirty_ring_full vcpu 0\n")
    with pytest.raises(ValueError, match=r"2 trace lines have no timestamp.*timestamp=on"):
        build_timeline(log)
    tl = build_timeline(log, start_wall=0.0)
    assert tl.untimed_lines == 2 and tl.events == [] and tl.summary.reaps == 0


def test_trace_events_to_enable() -> None:
    assert "kvm_dirty_ring_page" not in TIMELINE_TRACE_EVENTS  # one line per page
    assert "kvm_dirty_ring_reap_vcpu" not in TIMELINE_TRACE_EVENTS
    assert {"kvm_dirty_ring_reap", "kvm_dirty_ring_full", "kvm_dirty_ring_flush",
            "migration_bitmap_sync_end", "runstate_set"} <= set(TIMELINE_TRACE_EVENTS)
    args = timeline_qemu_args()
    assert args[:2] == ["-msg", "timestamp=on"]
    assert args[2:] == [x for e in TIMELINE_TRACE_EVENTS for x in ("-trace", e)]


def test_json_round_trip() -> None:
    tl = build_timeline(REAL_LOG, START, END)
    assert type(tl).model_validate_json(tl.model_dump_json()) == tl


def test_plot_timeline_draws_the_marks(tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = build_timeline(REAL_LOG, START, END)
    fig, ax = plt.subplots()
    plot_timeline(tl, ax)
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["final flush (0 pages)", "VM stop", "completed",
                      "non-empty reaps (3 in migration)"]
    fig.savefig(tmp_path / "timeline.png")
    plt.close(fig)
    assert (tmp_path / "timeline.png").stat().st_size > 1000
