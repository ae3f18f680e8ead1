"""End-to-end: the x86 wave guest with a writer on every vCPU (--smp N).

Each vCPU runs the wave over its own slice; the report must show that every
one of them wrote on both sides of the migration (the `writers` checks), and
the memory image holds the invariant per slice.
"""

from __future__ import annotations

from typing import Any

import pytest

from qmpctl.guests.wave import GUEST_IMAGE, WaveGuest
from qmpctl.testing import ExitCode, MigrateFn, RunReport, assert_verified
from tests.conftest import our_qemu_processes
from tests.e2e.test_migrate_x86 import is_ring_stall

pytestmark = pytest.mark.qemu

SMALL: dict[str, Any] = dict(ram=64, wave_end=18, timeout=120.0)  # 16 MiB wave: 4096 pages


def assert_writers(rep: RunReport, n: int) -> None:
    """N writers engaged: announced, each advancing before and after, and
    the images read as N slices."""
    assert rep.config is not None and rep.config.smp == n
    assert rep.config.workload["writers"] == n
    writers = [c for c in rep.guest_checks if c.name == "writers"]
    assert [c.stage for c in writers] == ["source, before migration",
                                          "destination, after resume"]
    for c in writers:
        assert c.ok and c.detail.startswith(f"{n} of {n} vCPUs advanced"), c.detail
    images = [c for c in rep.guest_checks if c.name == "wave-invariant"]
    assert images and all(f"{n} slices" in c.detail or not c.ok for c in images)


async def test_tcg_four_writers_verified(qmpctl_migrate: MigrateFn) -> None:
    rep = await qmpctl_migrate(accel="tcg", smp=4, **SMALL)
    assert our_qemu_processes() == []
    assert_verified(rep)
    assert_writers(rep, 4)
    assert rep.migration is not None and rep.migration.passes >= 3
    assert rep.migration.pages_resent > 0
    assert rep.memory is not None and rep.memory.pages_differing == 0


# Seen on kvm_pvm with 2 and 4 vCPUs, rings of 1024 and 4096 entries (about
# half the runs; never with one vCPU, nor with the bitmap): QEMU 10.0.2
# aborts reaping the rings as the migration starts, KVM_RESET_DIRTY_RINGS
# having reset another number of entries than QEMU harvested (docs/findings.md).
RESET_ABORT = "kvm_dirty_ring_reap_locked: Assertion `ret == total' failed"
ATTEMPTS = 3  # runs before the abort is all this test can show


@pytest.mark.qmpctl_kvm(ring=True)
async def test_kvm_tiny_ring_two_writers(qmpctl_migrate: MigrateFn) -> None:
    """Two writers on a 1024-entry ring: ring-full exits from both vCPUs.

    On kvm_pvm the dirty ring intermittently loses pages (see
    test_migrate_x86.test_kvm_dirty_ring_migration): the verdict must then be
    a mismatch backed by evidence: wave pages all stale, and at most pages
    of the guest's image (its per-CPU pass counters and stacks, rewritten
    every pass), named as such."""
    for _ in range(ATTEMPTS):
        rep = await qmpctl_migrate(accel="kvm", dirty_ring=1024, smp=2, **SMALL)
        assert our_qemu_processes() == []
        assert rep.host is not None
        if not (rep.host.flavour == "pvm" and RESET_ABORT in (rep.error or "")):
            break
    else:
        pytest.xfail(f"QEMU aborted reaping the dirty rings on kvm_pvm in {ATTEMPTS} runs: "
                     f"{RESET_ABORT}")
    assert rep.dirty_ring is not None and rep.dirty_ring.pages_reaped > 0, rep.error
    assert_writers(rep, 2)
    if rep.verdict == "verified":
        assert_verified(rep)
        return
    if is_ring_stall(rep):
        return
    assert rep.host.flavour == "pvm", rep.error
    assert rep.verdict == "mismatch" and rep.memory is not None
    memory = rep.memory
    assert memory.location is not None and memory.classes is not None
    regions = memory.location.by_region
    assert set(regions) <= {"wave workload", GUEST_IMAGE}, regions
    assert memory.classes.stale.pages == regions.get("wave workload", 0) > 0
    assert memory.classes.unexplained.pages == regions.get(GUEST_IMAGE, 0)


async def test_writers_that_never_start_do_not_verify(
        qmpctl_migrate: MigrateFn, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guest told of 4 CPUs while QEMU has one: it waits for the missing
    APs, says so, and the run is a guest failure, not a verdict on memory."""
    monkeypatch.setattr(WaveGuest, "writers", property(lambda self: 4))
    rep = await qmpctl_migrate(accel="tcg", smp=1, boot_timeout=20.0, **SMALL)
    assert our_qemu_processes() == []
    assert rep.verdict == "guest-failed" and rep.exit_code == ExitCode.GUEST_FAILED
    assert rep.error is not None and "reason=aps-did-not-start" in rep.error, rep.error
    assert rep.migration is None and rep.memory is None
