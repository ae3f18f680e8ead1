"""Faults in real runs: each is noticed at once, names the side that failed,
leaves the source running where it can, and still ends with a report."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from qmpctl.testing import ExitCode, Hooks, Machine, MigrateFn, RunReport
from tests.conftest import our_qemu_processes

pytestmark = pytest.mark.qemu

# Throttled hard so the migration is still running when the fault hits.
SLOW = dict(ram=64, wave_end=18, timeout=120.0, accel="tcg", throttle=4, min_passes=50)


def qemu_pid(machine: Machine) -> int:
    pid = machine.pid  # type: ignore[attr-defined]
    assert isinstance(pid, int)
    return pid


async def faulted(qmpctl_migrate: MigrateFn, fault: Any, **kw: Any) -> tuple[RunReport, float]:
    """Run with `fault(src, dst)` at pass 2; return the report and the seconds
    from the fault to the end of the run."""
    hit: list[float] = []

    async def on_pass(n: int, src: Machine, dst: Machine) -> None:
        if n == 2 and not hit:
            hit.append(time.monotonic())
            fault(src, dst)

    rep = await qmpctl_migrate(hooks=Hooks(on_pass=on_pass), **{**SLOW, **kw})
    assert hit, "the fault was never injected"
    assert our_qemu_processes() == []
    return rep, time.monotonic() - hit[0]


async def test_source_killed_is_named_at_once(qmpctl_migrate: MigrateFn) -> None:
    rep, took = await faulted(qmpctl_migrate, lambda src, _dst: src.kill())
    assert (rep.verdict, rep.exit_code) == ("migration-failed", ExitCode.MIGRATION_FAILED)
    assert rep.error is not None and rep.error.startswith("src QEMU killed by SIGKILL"), rep.error
    assert took < 20, f"noticed {took:.1f} s after the fault"
    assert rep.migration is not None and len(rep.migration.samples) >= 2  # stats kept


async def test_stopped_destination_is_named_and_the_source_runs(
        qmpctl_migrate: MigrateFn) -> None:
    rep, took = await faulted(qmpctl_migrate,
                              lambda _src, dst: os.kill(qemu_pid(dst), signal.SIGSTOP))
    assert (rep.verdict, rep.exit_code) == ("migration-failed", ExitCode.MIGRATION_FAILED)
    assert rep.error is not None and rep.error.startswith("dst QEMU is stopped (SIGSTOP)"), \
        rep.error
    assert rep.source_state_after == "running"
    assert took < 20, f"ended {took:.1f} s after the fault"


async def test_destination_killed_names_it_and_keeps_qemus_reason(
        qmpctl_migrate: MigrateFn) -> None:
    rep, took = await faulted(qmpctl_migrate, lambda _src, dst: dst.kill())
    assert (rep.verdict, rep.exit_code) == ("migration-failed", ExitCode.MIGRATION_FAILED)
    assert rep.error is not None and "dst QEMU killed by SIGKILL" in rep.error, rep.error
    assert rep.migration is not None and rep.migration.error_desc, rep.error
    assert rep.source_state_after == "running"
    assert took < 20


async def test_postcopy_destination_lost_ends_at_once_with_the_source_state(
        qmpctl_migrate: MigrateFn) -> None:
    """After the switchover the source cannot resume: say so, within seconds."""

    async def kill_after_switchover(status: str, _src: Machine, dst: Machine) -> None:
        if status == "postcopy-active":
            dst.kill()

    t0 = time.monotonic()
    rep = await qmpctl_migrate(hooks=Hooks(on_status=kill_after_switchover), ram=64,
                               wave_end=18, accel="tcg", postcopy=True, min_passes=2,
                               throttle=4, timeout=120.0)
    assert rep.verdict == "migration-failed", rep.error
    assert rep.error is not None and "dst QEMU killed by SIGKILL" in rep.error, rep.error
    assert rep.migration is not None and rep.migration.mode == "postcopy"
    assert rep.migration.postcopy_at_pass is not None
    assert rep.source_state_after is not None
    assert "postcopy-paused" in rep.source_state_after, rep.source_state_after
    assert "not resumed" in rep.source_state_after
    assert time.monotonic() - t0 < 60
    assert our_qemu_processes() == []
