"""Bring your own guest: a kernel qmpctl did not build, with kvm-unit-tests'
migration handshake, verified page by page with its ITS tables located from
the GIC's registers, and its own verdict in the same report.

The guest is guestload's arm64 ITS guest booted as a foreign kernel (no
fw_cfg parameters; `-append "kut=N"` makes it speak kvm-unit-tests'
protocol), so CI covers the protocol without fetching anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qmpctl.guests.images import image_path
from qmpctl.testing import ExitCode, Hooks, Machine, MigrateFn, RunReport, assert_verified
from tests.conftest import our_qemu_processes

pytestmark = [pytest.mark.qemu, pytest.mark.its]

REGISTER_TABLES = {"its-cmdq", "its-device", "its-collection", "lpi-prop", "lpi-pend-cpu0",
                   "lpi-pend-cpu1"}


def its_kernel() -> Path:
    return image_path("aarch64", "its.elf")


def kut(append: str, **kw: object) -> dict[str, object]:
    return dict(arch="aarch64", guest="kernel", kernel=its_kernel(), append=append, smp=2,
                accel="tcg", timeout=120.0, **kw)


class AnnouncedTables:
    """The tables the guest itself printed, to check the registers' word."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, int]] = {}

    async def after_migration(self, src: Machine, dst: Machine) -> None:
        for r in src.console.view().find("table"):
            self.seen[r.fields["name"]] = (r.int("base"), r.int("size"))


async def test_two_migrations_verify_and_the_guest_passes(qmpctl_migrate: MigrateFn) -> None:
    """The done-when of issue 12: two requests, two verified migrations, PASS."""
    announced = AnnouncedTables()
    rep = await qmpctl_migrate(hooks=Hooks(after_migration=announced.after_migration),
                               **kut("kut=2"))
    assert our_qemu_processes() == []
    assert_verified(rep)
    g = rep.guest_result
    assert g is not None and (g.status, g.migrations_requested, g.failed) == ("PASS", 2, 0), g
    assert g.passed >= 6 and g.summary is not None  # three ITS checks after each migration
    assert len(rep.hops) == 1 and (rep.hops[0].source, rep.hops[0].destination) == ("src",
                                                                                    "dst")
    for hop_tables in (rep.hops[0].its_tables, rep.its_tables):
        registers = [t for t in hop_tables if not t.name.startswith("itt-")]
        assert {t.name for t in registers} == REGISTER_TABLES
        assert all(t.located_by.startswith(("GITS_", "GICR_")) for t in registers)
        itts = [t for t in hop_tables if t.name.startswith("itt-")]
        assert itts and all(t.located_by.startswith("its-device entry") for t in itts)
        assert all(t.identical for t in hop_tables)
    assert rep.its_tables_source and "paused destination" in rep.its_tables_source
    # The migrated registers agree with what the guest says it programmed.
    for t in rep.its_tables:
        base, size = announced.seen[t.name]
        assert t.base == base, (t, announced.seen[t.name])
        assert t.size >= size or t.name.startswith("itt-"), (t, announced.seen[t.name])
    for m in [rep.hops[0].migration, rep.migration]:
        assert m is not None and m.pages_resent > 0 and m.workload_progress_during is None
    assert rep.hops[0].memory is not None and rep.hops[0].memory.identical
    resumes = [c for c in rep.guest_checks if c.name == "workload-resumes"]
    assert len(resumes) == 2 and all("key sent" in c.detail for c in resumes)


async def test_a_guest_silent_on_its_tables_has_them_located(qmpctl_migrate: MigrateFn) -> None:
    """A guest that prints no table (tables=0, as a foreign one): every table,
    ITTs included, still located and compared, from the migrated GIC state."""
    rep = await qmpctl_migrate(**kut("kut=1 tables=0"))
    assert our_qemu_processes() == []
    assert_verified(rep)
    assert rep.its_tables_source and "paused destination" in rep.its_tables_source
    assert {t.name for t in rep.its_tables} >= REGISTER_TABLES | {"itt-dev0"}
    assert all(t.identical for t in rep.its_tables)


async def test_a_guest_that_fails_its_own_test_is_guest_failed(
        qmpctl_migrate: MigrateFn) -> None:
    """Memory verified, but the guest said FAIL: exit 5, never a green run."""
    rep: RunReport = await qmpctl_migrate(**kut("kut=1 fail=1"))
    assert our_qemu_processes() == []
    assert (rep.verdict, rep.exit_code) == ("guest-failed", ExitCode.GUEST_FAILED), rep.error
    assert rep.memory is not None and rep.memory.identical and not rep.hops
    g = rep.guest_result
    assert g is not None and g.status == "FAIL" and g.exit_status == 3
    assert rep.error is not None and "requested failure" in rep.error


async def test_a_skipped_migration_is_answered_as_kvm_unit_tests_runner_does(
        qmpctl_migrate: MigrateFn) -> None:
    """`Skipped VM migration`: nothing migrates, the key is pressed, the guest's
    own SKIP stands, and the run is inconclusive (not guest-failed, not verified)."""
    rep: RunReport = await qmpctl_migrate(**kut("kut=1 skip=1"))
    assert our_qemu_processes() == []
    assert (rep.verdict, rep.exit_code) == ("inconclusive", ExitCode.INCONCLUSIVE), rep.error
    assert rep.migration is None and rep.memory is None
    assert rep.skipped_migration is not None and "Skipped VM migration" in rep.skipped_migration
    g = rep.guest_result
    assert g is not None and g.status == "SKIP" and g.migrations_requested == 0, g
    assert any("nothing was migrated; the guest's own result: SKIP" in why
               for why in rep.inconclusive)


async def test_an_x86_kernel_migrates_on_a_ready_line(qmpctl_migrate: MigrateFn) -> None:
    """x86_64: a multiboot kernel (guestload's wave, no fw_cfg) with `--handshake line`."""
    rep = await qmpctl_migrate(guest="kernel", kernel=image_path("x86_64", "wave.elf"),
                               handshake="line", ready_line=r"^QMPCTL wave ", accel="tcg",
                               timeout=120.0)
    assert our_qemu_processes() == []
    assert_verified(rep)
    assert rep.guest_result is not None and rep.guest_result.status == "NONE"
    assert rep.config is not None and rep.config.workload["handshake"] == "line"
    assert rep.its_tables == [] and rep.its_tables_source is None
    # The controller's own memory: sampled, and below the peak that counts mapped RAM files.
    anon, hwm = rep.controller_peak_rss_mib, rep.controller_peak_vmhwm_mib
    assert anon is not None and hwm is not None and 0 < anon <= hwm


@pytest.mark.kvm
@pytest.mark.qmpctl_kvm(ring=True, arch="aarch64", ring_with_bitmap=True)
async def test_two_kvm_migrations_with_the_in_kernel_its(qmpctl_migrate: MigrateFn) -> None:
    """Under KVM (in the lab here) a guest that says nothing of its tables (as
    kvm-unit-tests' say nothing): every table, ITTs included, is located from
    the GIC state the paused destination holds (the in-kernel ITS's registers
    are readable nowhere else) and the device table KVM saved; the save's
    before-image is the whole RAM. The first restore's consumed pending bits
    are explained, every save's pages arrive (a save that wrote nothing would
    make the run inconclusive)."""
    rep = await qmpctl_migrate(**{**kut("kut=2 tables=0"), "accel": "kvm", "dirty_ring": 4096})
    assert our_qemu_processes() == []
    assert_verified(rep)
    g = rep.guest_result
    assert g is not None and (g.status, g.migrations_requested) == ("PASS", 2), g
    assert rep.its_tables_source and "paused destination" in rep.its_tables_source
    assert "announced" not in rep.its_tables_source
    for hop_tables in (rep.hops[0].its_tables, rep.its_tables):
        names = {t.name for t in hop_tables}
        assert names >= REGISTER_TABLES | {"itt-dev0"}, names
        itt = next(t for t in hop_tables if t.name == "itt-dev0")
        assert itt.located_by == "its-device entry 0 (KVM's in-kernel ITS (ABI rev 0))"
    for hop_save in (rep.hops[0].its_save, rep.its_save):
        assert hop_save is not None and hop_save.proven, hop_save
        assert hop_save.snapshot and hop_save.snapshot.startswith("pass 1 "), hop_save
        assert hop_save.pages_arrived == hop_save.pages_changed, hop_save
    # The first save wrote the device table and the ITTs afresh: located
    # through the device table KVM itself wrote.
    save1 = rep.hops[0].its_save
    assert save1 is not None and save1.by_table.get("its-device") and save1.by_table.get(
        "itt-dev0"), save1
    first = rep.hops[0].memory
    assert first is not None and first.pages_differing == 0
    assert [e.cause for e in first.explained] in ([], ["lpi-pending-consumed"])
