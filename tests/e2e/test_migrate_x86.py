"""End-to-end: real QEMU, real QMP, real migration, real guest memory.

Each test runs the same scenario code the CLI runs (`qmpctl.scenario`), with
a small wave so the suite stays quick under TCG and this host's slow KVM.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qmpctl.core.errors import ExitCode
from qmpctl.host.kvm import KvmInfo
from qmpctl.qemu.machine import QemuMachine
from qmpctl.report.models import RunReport
from qmpctl.scenario.options import MigrateOptions, resolve
from qmpctl.scenario.runner import Hooks, run_migrate
from tests.conftest import kvm_skip_reason, our_qemu_processes

pytestmark = pytest.mark.qemu

SMALL = dict(ram_mib=64, wave_end_mib=18)  # 16 MiB wave: 4096 pages


def opts(**kw: object) -> MigrateOptions:
    return MigrateOptions(**{**SMALL, "timeout_s": 120.0, **kw})  # type: ignore[arg-type]


async def migrate(hooks: Hooks | None = None, **kw: object) -> RunReport:
    report = await run_migrate(resolve(opts(**kw)), hooks)
    assert our_qemu_processes() == [], "a QEMU of this run survived it"
    return report


def assert_verified(rep: RunReport) -> None:
    assert rep.verdict == "verified", rep.model_dump_json(indent=1)
    assert rep.exit_code == ExitCode.VERIFIED
    assert rep.migration is not None and rep.memory is not None
    assert rep.migration.passes >= 3
    assert rep.migration.pages_resent > 0, "dirty tracking was not exercised"
    assert not rep.migration.workload_stalled
    assert rep.memory.pages_compared == rep.memory.pages_total == 64 * 256
    assert rep.memory.pages_differing == 0
    assert [c.name for c in rep.guest_checks if not c.ok] == []
    assert rep.source_state_after == "postmigrate"


def require_kvm(kvm: KvmInfo, need_ring: bool = False) -> None:
    reason = kvm_skip_reason(kvm, need_ring)
    if reason:
        pytest.skip(reason)


async def test_tcg_migration_verified() -> None:
    rep = await migrate(accel="tcg")
    assert rep.config is not None and rep.config.dirty_tracking == "tcg"
    assert_verified(rep)


async def test_tcg_over_tcp_verified() -> None:
    rep = await migrate(accel="tcg", transport="tcp")
    assert rep.config is not None and rep.config.transport == "tcp"
    assert_verified(rep)


async def test_kvm_bitmap_migration_verified(kvm: KvmInfo) -> None:
    require_kvm(kvm)
    rep = await migrate(accel="kvm", dirty_ring=0)
    assert rep.config is not None and rep.config.dirty_tracking == "kvm-dirty-bitmap"
    assert_verified(rep)


async def test_kvm_dirty_ring_migration(kvm: KvmInfo) -> None:
    """KVM dirty-ring migration, the product's main path; runs on this host.

    On a VMX/SVM/arm64 host the verdict must be `verified`. On kvm_pvm (the
    CI machine) qmpctl found that pages dirtied after the last ring reap are
    intermittently lost at switchover (1 run in 10 on a quiet machine, about
    half under load; the bitmap path never), so there the test asserts that the
    run is sound and, when pages were lost, that qmpctl located them as a
    loss: only workload pages differ and the destination holds the older value.
    """
    require_kvm(kvm, need_ring=True)
    rep = await migrate(accel="kvm", dirty_ring=4096)
    assert rep.config is not None and rep.config.dirty_tracking == "kvm-dirty-ring"
    assert rep.dirty_ring is not None and rep.dirty_ring.pages_reaped > 0
    assert rep.migration is not None and rep.migration.passes >= 3
    if kvm.flavour != "pvm" or rep.verdict == "verified":
        assert_verified(rep)
        return
    assert rep.verdict == "mismatch" and rep.memory is not None
    assert rep.memory.pages_differing > 0
    for page in rep.memory.mismatches:
        assert page.region == "wave workload", page
        src, dst = int(page.src_hex.split()[0], 16), int(page.dst_hex.split()[0], 16)
        assert (src - dst) % 256 != 0, page  # the destination is behind: an old copy


async def test_corrupted_destination_byte_is_reported_exactly() -> None:
    target = 0x0A0_0123 + 0x30_0000  # inside the wave range, not a written byte

    async def corrupt(_src: Path, dst: Path) -> None:
        with dst.open("r+b") as f:
            f.seek(target)
            old = f.read(1)[0]
            f.seek(target)
            f.write(bytes([old ^ 0x5A]))

    rep = await migrate(hooks=Hooks(before_verify=corrupt), accel="tcg")
    assert rep.verdict == "mismatch" and rep.exit_code == ExitCode.MISMATCH
    assert rep.memory is not None and rep.memory.pages_differing == 1
    page = rep.memory.mismatches[0]
    assert (page.gpa, page.first_diff, page.region) == (target & ~0xFFF, 0x123, "wave workload")
    assert page.src_hex.split()[3] == "00" and page.dst_hex.split()[3] == "5a"


async def test_destination_killed_midway_leaves_source_running() -> None:
    async def kill_dst(n: int, _src: QemuMachine, dst: QemuMachine) -> None:
        if n == 2:
            dst.kill()

    rep = await migrate(hooks=Hooks(on_pass=kill_dst), accel="tcg", throttle_mib_s=8)
    assert rep.verdict == "migration-failed" and rep.exit_code == ExitCode.MIGRATION_FAILED
    assert rep.migration is not None and rep.migration.error_desc, rep.error
    assert rep.source_state_after == "running"
    assert rep.memory is None  # nothing verified after a failed migration


async def test_migration_timeout_cancels_and_resumes_source() -> None:
    """A migration held back longer than --timeout: cancelled, QEMU's state in
    the error, the source running again, nothing verified."""
    rep = await migrate(accel="tcg", throttle_mib_s=1, min_passes=50, timeout_s=3.0)
    assert rep.verdict == "migration-failed" and rep.exit_code == ExitCode.MIGRATION_FAILED
    assert rep.error is not None and "did not finish within 3s" in rep.error
    assert rep.source_state_after == "running"
    assert rep.memory is None
