"""The arm64 GICv3 ITS regression suite (`pytest -m its`, `nox -s its` for JUnit).

Under TCG (this host) QEMU's emulated ITS keeps its tables in guest RAM and
writes them through ordinary dirty tracking; on an arm64 KVM host the same
scenarios run with the in-kernel ITS, whose tables are flushed into guest RAM
at stop and reach the destination only through the ring's backup bitmap.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qmpctl.core.errors import ExitCode
from qmpctl.host.kvm import KvmInfo, kvm_can_run
from qmpctl.report.models import RunReport
from qmpctl.scenario.options import MigrateOptions, resolve
from qmpctl.scenario.runner import Hooks, run_migrate
from tests.conftest import our_qemu_processes

pytestmark = [pytest.mark.qemu, pytest.mark.its]

SMALL = dict(arch="aarch64", ram_mib=64, wave_end_mib=32, timeout_s=120.0)  # 16 MiB wave
TABLES = {"lpi-prop", "lpi-pend-cpu0", "lpi-pend-cpu1", "its-device", "its-collection",
          "its-cmdq", "itt-dev0"}


async def migrate(hooks: Hooks | None = None, **kw: object) -> RunReport:
    report = await run_migrate(resolve(MigrateOptions(**{**SMALL, **kw})), hooks)  # type: ignore[arg-type]
    assert our_qemu_processes() == []
    return report


def check(rep: RunReport, name: str) -> str:
    found = [c for c in rep.guest_checks if c.name == name]
    assert len(found) == 1, [c.name for c in rep.guest_checks]
    assert found[0].ok, found[0]
    return found[0].detail


def assert_its_verified(rep: RunReport) -> None:
    assert rep.verdict == "verified", rep.model_dump_json(indent=1)
    assert rep.memory is not None and rep.memory.pages_differing == 0
    assert {t.name for t in rep.its_tables} >= TABLES
    assert all(t.identical and t.pages >= 1 for t in rep.its_tables)
    assert rep.migration is not None and rep.migration.passes >= 3
    assert rep.migration.pages_resent > 0


async def test_precopy_with_lpis_in_flight() -> None:
    rep = await migrate(accel="tcg")
    assert_its_verified(rep)
    assert "wrong-pe=0" in check(rep, "lpis-flowing")
    detail = check(rep, "its-mapped")
    expected, got = (int(detail.split()[i].split("=")[1]) for i in (0, 1))
    assert expected == got > 0 and "wrong-pe=0" in detail


async def test_pending_lpis_survive_switchover() -> None:
    rep = await migrate(accel="tcg", smp=3)
    assert_its_verified(rep)
    assert {"lpi-pend-cpu2"} <= {t.name for t in rep.its_tables}
    assert check(rep, "its-pending") == "expected=8 got=8"


async def test_mapping_to_unmapped_collection_works_after_migration() -> None:
    rep = await migrate(accel="tcg", transport="tcp")
    assert_its_verified(rep)
    assert check(rep, "its-unmapped-collection") == "expected=1 got=1"


async def test_postcopy_with_its() -> None:
    """QEMU >= 8.1 reads the ring's backup bitmap only in the last precopy
    stage (kvm_log_sync_global(last_stage=true)); the postcopy switchover sync
    passes last_stage=false. Under TCG the ITS writes are tracked like any
    store; on arm64 KVM this test checks the table pages the kernel flushed at
    stop reached the destination anyway."""
    rep = await migrate(accel="tcg", postcopy=True)
    assert rep.migration is not None and rep.migration.mode == "postcopy"
    assert rep.migration.postcopy_at_pass is not None
    assert_its_verified(rep)
    check(rep, "its-mapped")


async def test_corrupted_its_table_page_is_named() -> None:
    target: dict[str, int] = {}

    async def corrupt(_src: Path, dst: Path) -> None:
        # The device table's first entry: what MAPD wrote for device 0.
        offset = target["its-device"] - 0x4000_0000
        with dst.open("r+b") as f:
            f.seek(offset)
            old = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([old ^ 0xFF]))

    async def remember(_n: int, src: object, _dst: object) -> None:
        view = src.console.view()  # type: ignore[attr-defined]
        target.update({r.fields["name"]: r.int("base") for r in view.find("table")})

    rep = await migrate(hooks=Hooks(on_pass=remember, before_verify=corrupt), accel="tcg")
    assert rep.verdict == "mismatch" and rep.exit_code == ExitCode.MISMATCH
    bad = [t for t in rep.its_tables if not t.identical]
    assert [(t.name, t.pages_differing) for t in bad] == [("its-device", 1)]
    assert rep.memory is not None and rep.memory.mismatches[0].region == "ITS table its-device"


@pytest.mark.kvm
@pytest.mark.parametrize("ring", [1024, 4096, 65536])
async def test_kvm_ring_sizes_with_in_kernel_its(kvm: KvmInfo, ring: int) -> None:
    """Small rings force ring-full exits while LPIs flow; needs an arm64 KVM host."""
    if not kvm_can_run("aarch64"):
        pytest.skip("needs an arm64 KVM host: KVM cannot run aarch64 guests on this "
                    "x86_64 host (the same scenario runs under TCG above)")
    if not kvm.has_ring_with_bitmap:
        pytest.skip("host KVM lacks KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP (cap 225 = 0)")
    rep = await migrate(accel="kvm", dirty_ring=ring)
    assert_its_verified(rep)
    assert rep.dirty_ring is not None and rep.dirty_ring.pages_reaped > 0
