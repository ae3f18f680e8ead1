"""Faults in real runs, injected with `--fault WHAT@WHEN` (the plugin's
`fault=`): each is noticed at once, names the side that failed, leaves the
source running where it can, nothing behind, and still ends with a report.

The bounds on elapsed time are generous liveness bounds (a hang would take
the whole `timeout`, 120 s here), not performance targets."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from qmpctl.report.text import summary_lines
from qmpctl.testing import ExitCode, Expect, MigrateFn, RunReport
from tests.conftest import our_qemu_processes

pytestmark = pytest.mark.qemu

# Throttled hard so the migration is still running when the fault hits.
SLOW = dict(ram=64, wave_end=18, timeout=120.0, accel="tcg", throttle=4, min_passes=50)
FAILED = Expect(verdict="migration-failed")  # what a fault mid-migration must end in
LIVENESS_S = 20


async def faulted(qmpctl_migrate: MigrateFn, *faults: str, expect: Expect = FAILED,
                  **kw: Any) -> tuple[RunReport, float]:
    """Run with `faults`, expecting `expect`; return the report and the seconds
    from the (first) fault to the end of the run."""
    t0 = time.monotonic()
    rep = await qmpctl_migrate(fault=faults, expect=expect, **{**SLOW, **kw})
    assert our_qemu_processes() == []
    assert [f.fault for f in rep.faults] == list(faults), rep.faults
    assert rep.migration is not None
    fault_at = t0 + (rep.boot_s or 0) + rep.faults[0].at_s
    return rep, time.monotonic() - fault_at


def assert_stats_agree_with_samples(rep: RunReport) -> None:
    """A failed run's totals and summary say what its samples say."""
    m = rep.migration
    assert m is not None and m.samples, rep
    last = m.samples[-1]
    assert (m.passes, m.transferred_bytes) >= (last.dirty_sync_count, last.transferred) > (0, 0)
    line = next(x for x in summary_lines(rep) if x.startswith("migration: "))
    assert f" {m.passes} passes " in line and "None" not in line, line
    assert " 0.0 MiB transferred" not in line, line


async def test_kill_dst_at_pass_2_keeps_its_figures(qmpctl_migrate: MigrateFn) -> None:
    rep, _ = await faulted(qmpctl_migrate, "kill-dst@pass:2")
    assert rep.exit_code == ExitCode.MIGRATION_FAILED, rep.error
    assert_stats_agree_with_samples(rep)


async def test_kill_src(qmpctl_migrate: MigrateFn) -> None:
    rep, took = await faulted(qmpctl_migrate, "kill-src@pass:2")
    assert rep.exit_code == ExitCode.MIGRATION_FAILED
    assert rep.error is not None and rep.error.startswith("src QEMU killed by SIGKILL"), rep.error
    assert rep.migration is not None and len(rep.migration.samples) >= 2  # stats kept
    assert_stats_agree_with_samples(rep)
    assert took < LIVENESS_S, f"noticed {took:.1f} s after the fault"


async def test_stop_dst(qmpctl_migrate: MigrateFn) -> None:
    rep, took = await faulted(qmpctl_migrate, "stop-dst@pass:2")
    assert rep.exit_code == ExitCode.MIGRATION_FAILED
    assert rep.error is not None and rep.error.startswith("dst QEMU is stopped (SIGSTOP)"), \
        rep.error
    assert rep.source_state_after == "running"
    assert took < LIVENESS_S, f"ended {took:.1f} s after the fault"


# A stopped side can answer nothing: both end as fast as a stopped
# destination did (0.4 s of cleanup), not after a command's timeout (a
# stopped source took 10 s: cancel and status asked it, 5 s each).
STOPPED_ENDS_WITHIN_S = 7.0  # the old path waited out two 5 s timeouts: 10 s and more


async def test_stop_src_ends_as_fast_as_stop_dst(qmpctl_migrate: MigrateFn) -> None:
    rep, took = await faulted(qmpctl_migrate, "stop-src@pass:2")
    assert rep.exit_code == ExitCode.MIGRATION_FAILED
    assert rep.error is not None and rep.error.startswith("src QEMU is stopped (SIGSTOP)"), \
        rep.error
    assert rep.source_state_after is not None
    assert rep.source_state_after.startswith("unresponsive"), rep.source_state_after
    assert took < STOPPED_ENDS_WITHIN_S, f"ended {took:.1f} s after the fault"
    rep, took = await faulted(qmpctl_migrate, "stop-dst@pass:2")
    assert took < STOPPED_ENDS_WITHIN_S, f"stop-dst: ended {took:.1f} s after the fault"


async def test_kill_dst_names_it_and_keeps_qemus_reason(qmpctl_migrate: MigrateFn) -> None:
    rep, took = await faulted(qmpctl_migrate, "kill-dst@status:active")
    assert rep.exit_code == ExitCode.MIGRATION_FAILED
    assert rep.error is not None and "dst QEMU killed by SIGKILL" in rep.error, rep.error
    assert rep.migration is not None and rep.migration.error_desc, rep.error
    assert rep.source_state_after == "running"
    assert took < LIVENESS_S


async def test_drop_qmp_src(qmpctl_migrate: MigrateFn) -> None:
    rep, took = await faulted(qmpctl_migrate, "drop-qmp-src@after:1")
    assert rep.exit_code == ExitCode.MIGRATION_FAILED
    assert rep.error is not None and \
        rep.error.startswith("src QEMU's monitor connection was lost"), rep.error
    assert took < LIVENESS_S


async def test_corrupt_dst(qmpctl_migrate: MigrateFn) -> None:
    rep = await qmpctl_migrate(fault=("corrupt-dst=0x500123",), ram=64, wave_end=18,
                               accel="tcg", expect=Expect(verdict="mismatch"))
    assert rep.exit_code == ExitCode.MISMATCH
    assert rep.memory is not None and [m.gpa for m in rep.memory.mismatches] == [0x500000]
    assert rep.faults[0].detail.startswith("destination byte at gpa 0x500123 flipped")
    # One truth per RAMBlock: guest RAM's line says what the RAM comparison says.
    ram0 = next(b for b in rep.ramblocks if b.name == "ram0")
    assert (ram0.pages_differing, ram0.first_differing_offsets) == (1, [0x500000])
    assert not [x for x in summary_lines(rep) if x.startswith("RAMBlock ram0") and
                "identical" in x]


async def test_postcopy_destination_lost_ends_at_once_with_the_source_state(
        qmpctl_migrate: MigrateFn) -> None:
    """After the switchover the source cannot resume: say so, within seconds."""
    rep, took = await faulted(qmpctl_migrate, "kill-dst@postcopy", postcopy=True,
                              min_passes=2)
    assert rep.error is not None and "dst QEMU killed by SIGKILL" in rep.error, rep.error
    assert rep.migration is not None and rep.migration.mode == "postcopy"
    assert rep.migration.postcopy_at_pass is not None
    assert rep.source_state_after is not None
    assert "postcopy-paused" in rep.source_state_after, rep.source_state_after
    assert "not resumed" in rep.source_state_after
    assert took < LIVENESS_S


async def test_link_down_in_precopy_fails_cleanly_with_the_source_running(
        qmpctl_migrate: MigrateFn) -> None:
    """--topology netns: the veth between the two namespaces is cut at pass 2.
    Noticed once no byte moved for the stated bound (10 s at this throttle),
    not at --timeout (it took all of it)."""
    rep, took = await faulted(qmpctl_migrate, "link-down@pass:2", topology="netns")
    assert rep.exit_code == ExitCode.MIGRATION_FAILED
    assert rep.faults[0].detail == "link down"
    assert rep.error is not None and rep.error.startswith(
        "no byte sent for 10 s: the migration stream is stuck"), rep.error
    assert rep.source_state_after == "running"
    assert rep.memory is None
    assert took < LIVENESS_S, f"ended {took:.1f} s after the cut"


async def test_link_down_in_postcopy_says_where_the_source_stands(
        qmpctl_migrate: MigrateFn) -> None:
    """Cut after the switchover, no recovery asked for: the source cannot be
    resumed, and the error says so (not precopy-convergence advice)."""
    rep, took = await faulted(qmpctl_migrate, "link-down@postcopy", topology="netns",
                              postcopy=True, min_passes=2)
    assert rep.exit_code == ExitCode.MIGRATION_FAILED
    assert rep.error is not None and "the migration stream is stuck" in rep.error, rep.error
    assert "after the switchover to postcopy" in rep.error and "converge" not in rep.error
    assert rep.source_state_after is not None
    assert "postcopy-paused" in rep.source_state_after, rep.source_state_after
    assert took < LIVENESS_S, f"ended {took:.1f} s after the cut"


async def test_mismatched_sides_report_the_destinations_own_reason(
        qmpctl_migrate: MigrateFn, tmp_path: Path) -> None:
    """A destination with more RAM than the source: QEMU's reason is in its log only."""
    real = shutil.which("qemu-system-x86_64")
    assert real is not None
    wrapper = tmp_path / "qemu-bigger-ram"
    wrapper.write_text(
        "#!/bin/bash\n"  # the same QEMU, with 32 MiB more RAM than the source
        'args=(); for a in "$@"; do a=${a/size=160M/size=192M}; [ "$a" = 160M ] && a=192M; '
        'args+=("$a"); done\n'
        f'exec {real} "${{args[@]}}"\n')
    wrapper.chmod(0o755)
    rep = await qmpctl_migrate(accel="tcg", qemu_dst=str(wrapper), timeout=60.0,
                               expect=FAILED)
    assert our_qemu_processes() == []
    assert rep.error is not None and "mismatch" in rep.error.lower(), rep.error
    assert rep.source_state_after == "running"


async def test_postcopy_recovers_across_a_cut_link(qmpctl_migrate: MigrateFn) -> None:
    """--topology netns: once postcopy runs and the channel breaks (qmpctl's
    migrate-pause), the migration link is cut for 6 s. The recovery starts while
    the link is down (qmpctl pauses the destination too if it did not see the
    break), keeps retrying, completes once the link is back, and verifies. (Cut at
    postcopy-active instead, while the device state is still in flight, the
    source once failed outright: the switchover had not finished.)"""
    rep, _ = await faulted(qmpctl_migrate, "link-down-for=6@status:postcopy-paused",
                           topology="netns",
                           postcopy=True, postcopy_recover=True, timeout=120.0,
                           min_passes=3, throttle=64, expect=Expect())
    assert rep.migration is not None and rep.migration.mode == "postcopy", rep.migration
    recover = {f.feature: f for f in rep.migration.features}["postcopy-recover"]
    assert recover.engaged, recover.detail
    attempts, cut = rep.migration.recoveries, rep.faults[0]
    assert cut.at_s <= attempts[0].elapsed_s < cut.at_s + 6, (cut, attempts)  # link down
    assert rep.migration.statuses[-2:] == ["postcopy-active", "completed"], (
        rep.migration.statuses, attempts)
