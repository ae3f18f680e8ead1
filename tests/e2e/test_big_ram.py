"""End-to-end: a TCG guest whose RAM goes on above 4 GiB.

With 4 GiB, `pc` maps 3 GiB from 0 and the last GiB from 4 GiB (file offset
0xc0000000 is guest-physical 0x100000000). The wave runs from 2.875 GiB to
4.25 GiB, skipping the PCI hole and the firmware's top of low RAM, so the
guest pages (PAE) to reach its counters above 4 GiB. Every page of both
4 GiB images is compared, and a byte corrupted above 4 GiB must be reported
at its guest-physical address, not its file offset.
"""

from __future__ import annotations

from typing import Any

import pytest

from qmpctl.core.units import GiB, MiB
from qmpctl.testing import ExitCode, MigrateFn, RunReport, assert_verified
from tests.conftest import our_qemu_processes

pytestmark = pytest.mark.qemu

# 96 MiB below the hole + 256 MiB above 4 GiB, one counter per page.
BIG = dict(accel="tcg", ram=4096, wave_start=2944, wave_end=4352, timeout=240.0)
HOLE = (3 * GiB - 32 * MiB, 4 * GiB)
TARGET = 0x1_0800_0123  # above 4 GiB, in the wave, not a counter byte
LOWMEM = 0xC000_0000


async def migrate(qmpctl_migrate: MigrateFn, **kw: Any) -> RunReport:
    report = await qmpctl_migrate(**{**BIG, **kw})
    assert our_qemu_processes() == [], "a QEMU of this run survived it"
    return report


async def test_ram_above_4g_verified(qmpctl_migrate: MigrateFn) -> None:
    rep = await migrate(qmpctl_migrate)
    assert_verified(rep)
    assert rep.config is not None and rep.config.ram_mib == 4096
    workload = rep.config.workload
    assert (workload["hole_start"], workload["hole_end"]) == HOLE
    assert rep.migration is not None and rep.migration.passes >= 3
    assert rep.migration.pages_resent > 0 and not rep.migration.workload_stalled
    assert rep.memory is not None
    assert rep.memory.pages_compared == rep.memory.pages_total == 4 * GiB // 4096
    assert rep.memory.pages_differing == 0
    wave = [c for c in rep.guest_checks if c.name == "wave-invariant"]
    assert wave and all(c.ok for c in wave), wave
    assert any(c.stage.startswith("destination") for c in wave)
    blocks = (HOLE[0] - 2944 * MiB + 4352 * MiB - HOLE[1]) // 4096
    assert all(c.detail.startswith(f"{blocks} blocks") for c in wave), wave


async def test_corrupt_dst_above_4g_is_reported_at_its_address(
        qmpctl_migrate: MigrateFn) -> None:
    rep = await migrate(qmpctl_migrate, fault=(f"corrupt-dst={TARGET:#x}",))
    assert rep.verdict == "mismatch" and rep.exit_code == ExitCode.MISMATCH
    assert rep.memory is not None and rep.memory.pages_differing == 1
    page = rep.memory.mismatches[0]
    assert (page.gpa, page.offset, page.first_diff, page.region) == (
        TARGET & ~0xFFF, (TARGET & ~0xFFF) - 4 * GiB + LOWMEM, 0x123, "wave workload")
    assert rep.memory.location is not None
    assert [(r.start_gpa, r.pages) for r in rep.memory.location.ranges] == [
        (TARGET & ~0xFFF, 1)]
    assert rep.memory.classes is not None and rep.memory.classes.foreign.examples == [
        TARGET & ~0xFFF]
    assert [f.detail for f in rep.faults] == [
        f"destination byte at gpa {TARGET:#x} flipped 0x00 -> 0x5a"]


async def test_arm64_ram_above_4g_verified(qmpctl_migrate: MigrateFn) -> None:
    """arm64 virt: RAM is one piece from 1 GiB; with 4 GiB the default wave runs
    to 5 GiB - 16 MiB, so the guest maps and writes RAM above 4 GiB, and the
    ITS tables and LPIs are checked as for any arm64 run."""
    rep = await qmpctl_migrate(arch="aarch64", ram=4096, accel="tcg", timeout=240.0)
    assert our_qemu_processes() == []
    assert_verified(rep)
    assert rep.memory is not None and rep.memory.pages_compared == 4 * GiB // 4096
    assert rep.config is not None and int(rep.config.workload["end"]) > 4 * GiB
    assert [c.name for c in rep.guest_checks if not c.ok] == []
    assert {"its-mapped", "lpis-flowing"} <= {c.name for c in rep.guest_checks}
