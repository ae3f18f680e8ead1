"""Linux guests (Debian cloud kernel + guestload) migrated under load, verified.

64-bit Linux cannot run under this host's KVM (kvm_pvm), so `--accel auto`
picks TCG here and the report says why; on a VMX/SVM/arm64 host the same
scenario runs under KVM.
"""

from __future__ import annotations

from typing import Any

import pytest

from qmpctl.testing import ExitCode, Hooks, Machine, MigrateFn, RunReport, assert_verified
from tests.conftest import our_qemu_processes

pytestmark = [pytest.mark.qemu, pytest.mark.linux]

PVM_REASON = "auto: this host's KVM (pvm) cannot run 64-bit guests"


async def migrate(qmpctl_migrate: MigrateFn, arch: str, hooks: Hooks | None = None,
                  **kw: Any) -> RunReport:
    report = await qmpctl_migrate(hooks=hooks, arch=arch, guest="linux", ram=256,
                                  timeout=180.0, **kw)
    assert our_qemu_processes() == []
    return report


def checks(rep: RunReport) -> dict[str, str]:
    return {c.name: c.detail for c in rep.guest_checks if c.ok}


def assert_linux_verified(rep: RunReport, arch: str) -> None:
    assert_verified(rep)
    assert rep.config is not None and rep.config.accel == "tcg"
    assert rep.memory is not None and rep.memory.pages_compared == rep.memory.pages_total
    assert rep.memory.pages_differing == 0
    assert rep.migration is not None and rep.migration.passes >= 3
    assert rep.migration.pages_resent > 0 and not rep.migration.workload_stalled
    ok = checks(rep)
    assert ok["guest-selfcheck"].endswith(" bad=0 first_bad=-1")
    assert ("ITS-MSI" if arch == "aarch64" else "PCI-MSI") in ok["nic-interrupts"]
    assert rep.boot_s is not None and rep.boot_s > 0
    tp = rep.guest_throughput
    assert tp is not None and tp.before_mib_s and tp.during_mib_s and tp.after_mib_s


@pytest.mark.parametrize(("arch", "workload"), [
    ("x86_64", dict(workload="wave", workload_size="64M")),
    ("x86_64", dict(workload="hotset", workload_size="25%", hot="10,90")),
    ("aarch64", dict(workload="random", workload_size="64M")),
    ("aarch64", dict(workload="rate", workload_size="64M", rate=64)),
])
async def test_linux_guest_migration_verified(qmpctl_migrate: MigrateFn, arch: str,
                                              workload: dict[str, Any]) -> None:
    rep = await migrate(qmpctl_migrate, arch, **workload)
    assert_linux_verified(rep, arch)
    assert rep.config is not None and rep.config.workload["kind"] == f"linux-{workload['workload']}"


async def test_auto_accel_says_why_linux_runs_under_tcg(qmpctl_migrate: MigrateFn) -> None:
    """The accelerator is chosen, and the reason recorded, before the guest
    boots: a run cut short by a one-second boot timeout shows both."""
    rep = await migrate(qmpctl_migrate, "x86_64", boot_timeout=1.0)
    assert rep.verdict == "guest-failed" and rep.exit_code == ExitCode.GUEST_FAILED, rep.error
    assert rep.config is not None and rep.config.accel == "tcg"
    assert rep.host is not None
    if rep.host.flavour == "pvm":
        assert rep.config.accel_reason == PVM_REASON


async def test_guest_selfcheck_catches_a_lost_write(qmpctl_migrate: MigrateFn) -> None:
    """guestload's `L` rewinds one page to its previous content on the source,
    as a lost write would: RAM images still match (the loss is in both), so
    only the guest's own check can see it, and the verdict must be mismatch."""
    async def lose_a_write(n: int, src: Machine, _dst: Machine) -> None:
        if n == 2:
            await src.console.send(b"L")

    rep = await migrate(qmpctl_migrate, "x86_64", Hooks(on_pass=lose_a_write),
                        workload="readmostly", workload_size="64M")
    assert rep.verdict == "mismatch" and rep.exit_code == 1
    assert rep.memory is not None and rep.memory.identical
    failed = [c for c in rep.guest_checks if not c.ok]
    assert [c.name for c in failed] == ["guest-selfcheck"]
    assert "first_bad=8192" in failed[0].detail
    with pytest.raises(AssertionError, match=r"check guest-selfcheck .* FAILED: .*first_bad=8192"):
        assert_verified(rep)
