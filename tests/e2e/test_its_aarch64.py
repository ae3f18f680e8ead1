"""The arm64 GICv3 ITS regression suite (`pytest -m its`, `nox -s its` for JUnit).

Under TCG (this host) QEMU's emulated ITS keeps its tables in guest RAM and
writes them through ordinary dirty tracking; on an arm64 KVM host the same
scenarios run with the in-kernel ITS, whose tables are flushed into guest RAM
at stop and reach the destination only through the ring's backup bitmap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qmpctl.guests.gic import registers_by_monitor
from qmpctl.testing import (
    RAM_BASE,
    ExitCode,
    Hooks,
    Machine,
    MigrateFn,
    RunReport,
    assert_verified,
)
from tests.conftest import our_qemu_processes

pytestmark = [pytest.mark.qemu, pytest.mark.its]

SMALL = dict(arch="aarch64", ram=64, wave_end=32, timeout=120.0)  # 16 MiB wave
TABLES = {"lpi-prop", "lpi-pend-cpu0", "lpi-pend-cpu1", "its-device", "its-collection",
          "its-cmdq", "itt-dev0"}


async def migrate(qmpctl_migrate: MigrateFn, hooks: Hooks | None = None,
                  **kw: Any) -> RunReport:
    report = await qmpctl_migrate(hooks=hooks, **{**SMALL, **kw})
    assert our_qemu_processes() == []
    return report


def check(rep: RunReport, name: str) -> str:
    found = [c for c in rep.guest_checks if c.name == name]
    assert len(found) == 1, [c.name for c in rep.guest_checks]
    assert found[0].ok, found[0]
    return found[0].detail


def assert_its_verified(rep: RunReport, kvm: bool = False) -> None:
    """Every table located and compared; under QEMU's ITS (TCG) all identical.
    Under KVM's in-kernel ITS only pending-table pages may differ, and only as
    the restore's consumed pending bits, named with their proof, the pending
    LPIs then delivered on the destination."""
    assert_verified(rep)
    assert rep.memory is not None and rep.memory.pages_differing == 0
    assert {t.name for t in rep.its_tables} >= TABLES
    # Located from the GIC state the paused destination holds, ITTs included,
    # not from the guest's word (KVM: the only way; TCG: the same path).
    assert rep.its_tables_source and "paused destination" in rep.its_tables_source
    assert "announced" not in rep.its_tables_source, rep.its_tables_source
    for t in rep.its_tables:
        assert t.pages >= 1 and t.consistent, t
        assert t.identical or (kvm and t.name.startswith("lpi-pend-cpu") and t.pages_explained), t
    assert [e.cause for e in rep.memory.explained] in ([], ["lpi-pending-consumed"] if kvm else [])
    if rep.memory.explained:
        assert "its-pending" in [c.name for c in rep.guest_checks]
    assert rep.migration is not None and rep.migration.passes >= 3
    assert rep.migration.pages_resent > 0


async def test_precopy_with_lpis_in_flight(qmpctl_migrate: MigrateFn) -> None:
    rep = await migrate(qmpctl_migrate, accel="tcg")
    assert_its_verified(rep)
    assert "wrong-pe=0" in check(rep, "lpis-flowing")
    detail = check(rep, "its-mapped")
    expected, got = (int(detail.split()[i].split("=")[1]) for i in (0, 1))
    assert expected == got > 0 and "wrong-pe=0" in detail


async def test_migrated_gic_state_agrees_with_the_registers_and_the_guest(
        qmpctl_migrate: MigrateFn) -> None:
    """The tables located from the paused destination's dumped GIC state (the
    KVM path, run here under TCG) are those QEMU's GIC registers on the
    source's monitor point at, and the ITT found through the device table
    (QEMU's format) is where the guest said it put it."""
    seen: dict[str, Any] = {}

    async def registers(src: Machine, _dst: Machine) -> None:
        seen["xp"] = {(t.name, t.base, t.size) for t in await registers_by_monitor(src, 2)
                      if t is not None}
        seen["announced"] = {r.fields["name"]: (r.int("base"), r.int("size"))
                             for r in src.console.view().find("table")}

    rep = await migrate(qmpctl_migrate, Hooks(after_migration=registers), accel="tcg")
    assert_its_verified(rep)
    dumped = {(t.name, t.base, t.size) for t in rep.its_tables if not t.name.startswith("itt-")}
    assert dumped == seen["xp"] and len(dumped) >= 6, seen
    itt = {t.name: t for t in rep.its_tables}["itt-dev0"]
    assert itt.located_by == "its-device entry 0 (QEMU's ITS)"
    base, size = seen["announced"]["itt-dev0"]
    assert itt.base == base and itt.size <= size, (itt, seen["announced"])


async def test_pending_lpis_survive_switchover(qmpctl_migrate: MigrateFn) -> None:
    rep = await migrate(qmpctl_migrate, accel="tcg", smp=3)
    assert_its_verified(rep)
    assert {"lpi-pend-cpu2"} <= {t.name for t in rep.its_tables}
    assert check(rep, "its-pending") == "expected=8 got=8"


async def test_three_wave_writers_beside_the_lpi_issuer(qmpctl_migrate: MigrateFn) -> None:
    """--writers 3 (--smp 4 implied): vCPUs 1-3 each write their own slice of
    the wave while vCPU 0 issues LPIs; every writer advances on both sides and
    both images read as three slices, each with at most one edge."""
    rep = await migrate(qmpctl_migrate, accel="tcg", writers=3)
    assert_its_verified(rep)
    assert rep.config is not None and rep.config.smp == 4
    assert rep.config.workload["writers"] == 3
    assert "wrong-pe=0" in check(rep, "lpis-flowing")
    writers = [c for c in rep.guest_checks if c.name == "writers"]
    assert [c.stage for c in writers] == ["source, before migration",
                                          "destination, after resume"]
    for c in writers:
        assert c.ok and c.detail.startswith("3 of 3 vCPUs advanced"), c.detail
    images = [c for c in rep.guest_checks if c.name == "wave-invariant"]
    assert images and all(c.ok and "3 slices" in c.detail for c in images), images
    assert {"lpi-pend-cpu3"} <= {t.name for t in rep.its_tables}


async def test_mapping_to_unmapped_collection_works_after_migration(
        qmpctl_migrate: MigrateFn) -> None:
    rep = await migrate(qmpctl_migrate, accel="tcg", transport="tcp")
    assert_its_verified(rep)
    assert check(rep, "its-unmapped-collection") == "expected=1 got=1"


async def test_postcopy_with_its(qmpctl_migrate: MigrateFn) -> None:
    """QEMU >= 8.1 reads the ring's backup bitmap only in the last precopy
    stage (kvm_log_sync_global(last_stage=true)); the postcopy switchover sync
    passes last_stage=false. Under TCG the ITS writes are tracked like any
    store; on arm64 KVM this test checks the table pages the kernel flushed at
    stop reached the destination anyway."""
    rep = await migrate(qmpctl_migrate, accel="tcg", postcopy=True)
    assert rep.migration is not None and rep.migration.mode == "postcopy"
    assert rep.migration.postcopy_at_pass is not None
    assert_its_verified(rep)
    check(rep, "its-mapped")


async def test_corrupted_its_table_page_is_named(qmpctl_migrate: MigrateFn) -> None:
    target: dict[str, int] = {}

    async def corrupt(_src: Path, dst: Path) -> None:
        # The device table's first entry: what MAPD wrote for device 0.
        offset = target["its-device"] - RAM_BASE["aarch64"]
        with dst.open("r+b") as f:
            f.seek(offset)
            old = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([old ^ 0xFF]))

    async def remember(_n: int, src: Machine, _dst: Machine) -> None:
        view = src.console.view()
        target.update({r.fields["name"]: r.int("base") for r in view.find("table")})

    rep = await migrate(qmpctl_migrate, Hooks(on_pass=remember, before_verify=corrupt),
                        accel="tcg")
    assert rep.verdict == "mismatch" and rep.exit_code == ExitCode.MISMATCH
    bad = [t for t in rep.its_tables if not t.identical]
    assert [(t.name, t.pages_differing) for t in bad] == [("its-device", 1)]
    assert rep.memory is not None and rep.memory.mismatches[0].region == "ITS table its-device"
    with pytest.raises(AssertionError, match="ITS table its-device at 0x"):
        assert_verified(rep)


@pytest.mark.kvm
@pytest.mark.qmpctl_kvm(ring=True, arch="aarch64", ring_with_bitmap=True)
# 1024 forces ring-full exits while LPIs flow: the one CI carries; the
# default and the largest ring each add a nested run of about a minute.
@pytest.mark.parametrize("ring", [1024, pytest.param(4096, marks=pytest.mark.long),
                                  pytest.param(65536, marks=pytest.mark.long)])
async def test_kvm_ring_sizes_with_in_kernel_its(qmpctl_migrate: MigrateFn, ring: int) -> None:
    """Small rings force ring-full exits while LPIs flow; needs an arm64 KVM host
    (elsewhere the marker skips it, naming what is missing: the same scenarios
    run under TCG above)."""
    rep = await migrate(qmpctl_migrate, accel="kvm", dirty_ring=ring)
    assert_its_verified(rep, kvm=True)
    check(rep, "its-pending")
    # The save wrote the tables at the stop, and every page it changed arrived:
    save = rep.its_save
    assert save is not None and save.pages_changed >= 2, save
    assert save.by_table.get("its-device") and save.by_table.get("its-collection"), save
    assert save.pages_arrived == save.pages_changed, save
    # ... carried by the backup bitmap, read only after the stop (the final sweep).
    sweep = rep.sweep
    assert sweep is not None and sweep.device_attr_sets_after_stop >= 2, sweep
    assert sweep.dirty_log_reads_after_stop > 0, sweep
    assert sweep.dirty_log_reads == sweep.dirty_log_reads_after_stop, sweep
    assert rep.dirty_ring is not None and rep.dirty_ring.pages_reaped > 0


@pytest.mark.kvm
@pytest.mark.qmpctl_kvm(ring=True, arch="aarch64", ring_with_bitmap=True)
# CI carries one table of each way of locating it (the device table KVM
# saves, an ITT, a pending table whose restore is explained); the others
# (about 40 s each, nested) are `long`, run by `nox -s lab`.
@pytest.mark.parametrize(("table", "at"), [
    ("its-device", 0), pytest.param("its-collection", 0, marks=pytest.mark.long),
    ("itt-dev0", 0), pytest.param("lpi-prop", 0, marks=pytest.mark.long),
    pytest.param("its-cmdq", 0, marks=pytest.mark.long), ("lpi-pend-cpu0", 0x404),
    pytest.param("lpi-pend-cpu1", 0x404, marks=pytest.mark.long)])
async def test_kvm_flipped_its_table_byte_is_a_loss_named_by_table(
        qmpctl_migrate: MigrateFn, table: str, at: int) -> None:
    """Under KVM's in-kernel ITS a destination byte flipped in any table kind
    fails the run naming the table; in a pending table (where the restore's
    consumed bits are explained) a flip sets bits, which no restore does."""
    target: dict[str, int] = {}

    async def remember(_n: int, src: Machine, _dst: Machine) -> None:
        target.update({r.fields["name"]: r.int("base") for r in src.console.view().find("table")})

    async def corrupt(_src: Path, dst: Path) -> None:
        with dst.open("r+b") as f:
            f.seek(target[table] + at - RAM_BASE["aarch64"])
            old = f.read(1)[0]
            f.seek(-1, 1)
            f.write(bytes([old ^ 0xFF]))

    rep = await migrate(qmpctl_migrate, Hooks(on_pass=remember, before_verify=corrupt),
                        accel="kvm", dirty_ring=4096)
    assert rep.verdict == "mismatch" and rep.exit_code == ExitCode.MISMATCH
    bad = [(t.name, t.pages_differing) for t in rep.its_tables if t.pages_differing]
    assert bad == [(table, 1)]
    assert rep.memory is not None and rep.memory.mismatches[0].region == f"ITS table {table}"
