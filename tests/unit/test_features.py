"""Feature evidence (pure): a feature engages only on QEMU's own figure."""

from __future__ import annotations

import pytest

from qmpctl.core.errors import UsageError
from qmpctl.migration.features import Observed, feature_settings, trace_args
from qmpctl.migration.features.auto_converge import AutoConverge
from qmpctl.migration.features.dirty_limit import DirtyLimit
from qmpctl.migration.features.multifd import Multifd
from qmpctl.migration.features.postcopy_preempt import PostcopyPreempt
from qmpctl.migration.features.xbzrle import Xbzrle
from qmpctl.migration.features.zero_pages import ZeroPages
from qmpctl.migration.models import MigrationStats, PassSample, XbzrleStats
from qmpctl.report.verdict import inconclusive_reasons
from qmpctl.scenario.options import MigrateOptions, build_features


def sample(n: int, **kw: int) -> PassSample:
    return PassSample(pass_no=n, elapsed_s=n, status="active", transferred=0, remaining=0,
                      total=0, dirty_pages_rate=0, mbps=0, dirty_sync_count=n, pages_sent=0,
                      **kw)


def test_auto_converge_needs_a_throttle() -> None:
    idle = MigrationStats(status="completed", samples=[sample(1), sample(2)])
    assert not AutoConverge().evidence(Observed(idle)).engaged
    busy = MigrationStats(status="completed",
                          samples=[sample(1), sample(2, cpu_throttle_percentage=30)])
    ev = AutoConverge(20, 10).evidence(Observed(busy))
    assert ev.engaged and ev.figures["max_cpu_throttle_percentage"] == 30
    assert AutoConverge(20, 10).settings().parameters == {
        "cpu-throttle-initial": 20, "cpu-throttle-increment": 10}


def test_xbzrle_needs_encoded_pages() -> None:
    cache = XbzrleStats(cache_size=1 << 25, pages=0, bytes=0, cache_miss=5, overflow=0)
    missed = MigrationStats(status="completed", xbzrle=cache)
    assert not Xbzrle(32).evidence(Observed(missed)).engaged
    assert not Xbzrle(32).evidence(Observed(MigrationStats(status="completed"))).engaged
    hit = cache.model_copy(update={"pages": 7})
    assert Xbzrle(32).evidence(Observed(MigrationStats(status="completed", xbzrle=hit))).engaged
    assert Xbzrle(32).settings().parameters == {"xbzrle-cache-size": 32 << 20}


SEND = ("1@1.0:multifd_send_thread_end channel 0 packets 10\n"
        "2026-11-23T19:09:20.319993Z multifd_send_thread_end channel 1 packets 4\n")


def test_trace_args_reads_both_timestamp_forms() -> None:
    assert trace_args(SEND, "multifd_send_thread_end") == [
        "channel 0 packets 10", "channel 1 packets 4"]
    assert trace_args("x@1:postcopy_preempt_new_channel\n", "postcopy_preempt_new_channel") == [""]


def test_multifd_counts_channels_and_compression() -> None:
    stats = MigrationStats(status="completed", multifd_bytes=1000, normal_pages=100)
    assert Multifd(2).evidence(Observed(stats, SEND)).engaged
    three = Multifd(3).evidence(Observed(stats, SEND))
    assert not three.engaged and "2 of 3 channels" in three.detail
    nothing = stats.model_copy(update={"multifd_bytes": 0})
    assert not Multifd(2).evidence(Observed(nothing, SEND)).engaged
    squeezed = Multifd(2, "zstd").evidence(Observed(stats, SEND))
    assert squeezed.engaged and squeezed.figures["compression_ratio"] < 0.01
    whole = stats.model_copy(update={"multifd_bytes": 100 * 4096})
    assert not Multifd(2, "zlib").evidence(Observed(whole, SEND)).engaged


def test_zero_page_detection_none_means_no_zero_pages() -> None:
    some = MigrationStats(status="completed", zero_pages=5, normal_pages=10)
    assert not ZeroPages("none").evidence(Observed(some)).engaged
    assert ZeroPages("legacy").evidence(Observed(some)).engaged
    assert ZeroPages("none").evidence(Observed(some.model_copy(update={"zero_pages": 0}))).engaged


def test_dirty_limit_and_preempt() -> None:
    idle = MigrationStats(status="completed", samples=[sample(1)])
    assert not DirtyLimit(50).evidence(Observed(idle)).engaged
    limited = MigrationStats(status="completed", samples=[
        sample(1, dirty_limit_throttle_time_per_round=800)])
    assert DirtyLimit(50, 500).evidence(Observed(limited)).engaged
    assert DirtyLimit(50, 500).settings().parameters == {
        "vcpu-dirty-limit": 50, "x-vcpu-dirty-limit-period": 500}
    post = MigrationStats(status="completed", mode="postcopy")
    assert not PostcopyPreempt().evidence(Observed(post)).engaged
    assert PostcopyPreempt().evidence(
        Observed(post, dst_log="1@2.0:postcopy_preempt_new_channel\n")).engaged
    precopy = MigrationStats(status="completed")
    assert not PostcopyPreempt().evidence(
        Observed(precopy, dst_log="1@2.0:postcopy_preempt_new_channel\n")).engaged


def test_a_feature_that_did_not_engage_is_inconclusive() -> None:
    stats = MigrationStats(status="completed", passes=5, pages_resent=10,
                           features=[Xbzrle(32).evidence(Observed(MigrationStats(status="x")))])
    assert any("xbzrle was asked for but did not engage" in r for r in inconclusive_reasons(stats))


def test_feature_settings_merge() -> None:
    merged = feature_settings([Multifd(4, "zstd"), ZeroPages("multifd")])
    assert merged.capabilities == {"multifd": True}
    assert merged.parameters == {"multifd-channels": 4, "multifd-compression": "zstd",
                                 "zero-page-detection": "multifd"}


@pytest.mark.parametrize(("kwargs", "accel", "ring", "message"), [
    ({"multifd_compression": "zstd"}, "tcg", 0, "--multifd-compression needs --multifd N"),
    ({"multifd": 2, "xbzrle_cache": 8}, "tcg", 0, "does not combine xbzrle and multifd"),
    ({"dirty_limit": 50}, "tcg", 0, "this run uses TCG"),
    ({"dirty_limit": 50}, "kvm", 0, "the KVM dirty bitmap"),
    ({"vcpu_dirty_limit": 50}, "tcg", 0, "--vcpu-dirty-limit"),
    ({"dirty_limit": 50, "auto_converge": True}, "kvm", 4096, "one throttle or the other"),
    ({"postcopy_preempt": True}, "tcg", 0, "--postcopy-preempt needs --postcopy"),
    ({"cpu_throttle_initial": 30}, "tcg", 0, "need --auto-converge"),
    ({"multifd": 0}, "tcg", 0, "channels must be 1..255"),
])
def test_conflicting_features_are_refused(kwargs: dict[str, object], accel: str, ring: int,
                                          message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_features(MigrateOptions.from_kwargs(**kwargs), accel, ring)  # type: ignore[arg-type]


def test_features_are_built_in_registry_order() -> None:
    opts = MigrateOptions.from_kwargs(multifd=2, zero_page_detection="legacy", postcopy=True,
                                      postcopy_preempt=True, auto_converge=True)
    assert [f.name for f in build_features(opts, "tcg", 0)] == [
        "postcopy", "postcopy-preempt", "auto-converge", "multifd", "zero-page-detection"]


def test_postcopy_recover_needs_pauses_and_a_good_resume() -> None:
    from qmpctl.migration.features.postcopy_recover import PostcopyRecover
    from qmpctl.migration.models import RecoveryAttempt

    def attempt(n: int, fail: bool) -> RecoveryAttempt:
        return RecoveryAttempt(attempt=n, uri="unix:x", meant_to_fail=fail, elapsed_s=1.0)

    dst = "1@1.0:postcopy_pause_incoming\n"
    never = MigrationStats(status="completed", mode="postcopy",
                           statuses=["active", "postcopy-active", "completed"])
    assert not PostcopyRecover().evidence(Observed(never, dst_log=dst)).engaged
    once = never.model_copy(update={
        "statuses": ["postcopy-active", "postcopy-paused", "postcopy-active", "completed"],
        "recoveries": [attempt(1, False)]})
    assert PostcopyRecover().evidence(Observed(once, dst_log=dst)).engaged
    assert not PostcopyRecover().evidence(Observed(once)).engaged  # dst never paused
    assert not PostcopyRecover(fail_first=True).evidence(Observed(once, dst_log=dst)).engaged
    twice = once.model_copy(update={
        "statuses": ["postcopy-paused", "postcopy-recover", "postcopy-paused", "completed"],
        "recoveries": [attempt(1, True), attempt(2, False)]})
    assert PostcopyRecover(fail_first=True).evidence(Observed(twice, dst_log=dst)).engaged
    failed = twice.model_copy(update={"status": "failed"})
    assert not PostcopyRecover(fail_first=True).evidence(Observed(failed, dst_log=dst)).engaged


def test_cancel_evidence_names_where_it_was_cancelled() -> None:
    from qmpctl.migration.features.cancel import cancel_evidence

    good = cancel_evidence("active", ["setup", "active", "cancelling", "cancelled"], "running",
                           True, "2 more wave passes")
    assert good.engaged and good.feature == "cancel-at-active"
    late = cancel_evidence("setup", ["setup", "active", "cancelling", "cancelled"], "running",
                           True, "")
    assert not late.engaged and "cancelled in active, not in setup" in late.detail
    stuck = cancel_evidence("active", ["setup", "active", "cancelling", "cancelled"], "paused",
                            True, "")
    assert not stuck.engaged and "the source is paused" in stuck.detail
    unsound = cancel_evidence("active", ["active", "cancelling", "cancelled"], "running",
                              False, "wave-invariant: two edges")
    assert not unsound.engaged and "workload check failed" in unsound.detail
    assert not cancel_evidence("active", ["active", "failed"], "running", True, "").engaged


def test_mapped_ram_needs_a_full_size_file_the_destination_loaded() -> None:
    from qmpctl.migration.features.mapped_ram import MappedRam

    loaded = MigrationStats(status="completed", file_bytes=200, file_allocated_bytes=100,
                            restore_s=0.1)
    assert MappedRam(160).evidence(Observed(loaded)).engaged
    assert not MappedRam(300).evidence(Observed(loaded)).engaged
    assert not MappedRam(160).evidence(
        Observed(loaded.model_copy(update={"restore_s": None}))).engaged
    ended = "1@1.0:multifd_send_thread_end channel 0 packets 0\n"
    stats = MigrationStats(status="completed", multifd_bytes=10)
    assert Multifd(1, to_file=True).evidence(Observed(stats, ended)).engaged
    assert not Multifd(1).evidence(Observed(stats, ended)).engaged


@pytest.mark.parametrize("option", [{"postcopy": True}, {"topology": "netns"},
                                    {"cancel_at": "active"}, {"xbzrle_cache": 8}])
def test_file_transport_conflicts(option: dict[str, object]) -> None:
    with pytest.raises(UsageError, match="--transport file with"):
        build_features(MigrateOptions.from_kwargs(transport="file", **option), "tcg", 0)


def test_postcopy_must_really_switch() -> None:
    from qmpctl.migration.features.postcopy import PostcopySwitch

    asked = MigrationStats(status="completed", postcopy_at_pass=4,
                           statuses=["setup", "active", "device", "completed"])
    ev = PostcopySwitch().evidence(Observed(asked))
    assert not ev.engaged and "completed in precopy" in ev.detail and "issued" in ev.detail
    switched = asked.model_copy(update={"mode": "postcopy", "postcopy_requests": 3})
    assert PostcopySwitch().evidence(Observed(switched)).engaged
