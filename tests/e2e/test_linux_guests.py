"""Linux guests (Debian cloud kernel + guestload) migrated under load, verified.

64-bit Linux cannot run under this host's KVM (kvm_pvm), so `--accel auto`
picks TCG here and the report says why; on a VMX/SVM/arm64 host the same
scenario runs under KVM.
"""

from __future__ import annotations

import pytest

from qmpctl.guests.linux import LinuxWorkload
from qmpctl.qemu.machine import QemuMachine
from qmpctl.report.models import RunReport
from qmpctl.scenario.options import MigrateOptions, resolve
from qmpctl.scenario.runner import Hooks, run_migrate
from tests.conftest import our_qemu_processes

pytestmark = [pytest.mark.qemu, pytest.mark.linux]


async def migrate(arch: str, workload: LinuxWorkload, hooks: Hooks | None = None,
                  **kw: object) -> RunReport:
    opts = MigrateOptions(arch=arch, guest="linux", ram_mib=256, workload=workload,
                          timeout_s=180.0, **kw)  # type: ignore[arg-type]
    report = await run_migrate(resolve(opts), hooks)
    assert our_qemu_processes() == []
    return report


def checks(rep: RunReport) -> dict[str, str]:
    return {c.name: c.detail for c in rep.guest_checks if c.ok}


def assert_linux_verified(rep: RunReport, arch: str) -> None:
    assert rep.verdict == "verified", rep.model_dump_json(indent=1)
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
    ("x86_64", LinuxWorkload("wave", "64M")),
    ("x86_64", LinuxWorkload("hotset", "25%", hot="10,90")),
    ("aarch64", LinuxWorkload("random", "64M")),
    ("aarch64", LinuxWorkload("rate", "64M", rate_mib_s=64)),
])
async def test_linux_guest_migration_verified(arch: str, workload: LinuxWorkload) -> None:
    rep = await migrate(arch, workload)
    assert_linux_verified(rep, arch)
    assert rep.config is not None and rep.config.workload["kind"] == f"linux-{workload.kind}"


async def test_auto_accel_says_why_linux_runs_under_tcg() -> None:
    r = resolve(MigrateOptions(guest="linux"))
    assert r.accel == "tcg"
    if r.kvm.flavour == "pvm":
        assert r.accel_reason == "auto: this host's KVM (pvm) cannot run 64-bit guests"


async def test_guest_selfcheck_catches_a_lost_write() -> None:
    """guestload's `L` rewinds one page to its previous content on the source,
    as a lost write would: RAM images still match (the loss is in both), so
    only the guest's own check can see it, and the verdict must be mismatch."""
    async def lose_a_write(n: int, src: QemuMachine, _dst: QemuMachine) -> None:
        if n == 2:
            await src.console.send(b"L")

    rep = await migrate("x86_64", LinuxWorkload("readmostly", "64M"),
                        Hooks(on_pass=lose_a_write))
    assert rep.verdict == "mismatch" and rep.exit_code == 1
    assert rep.memory is not None and rep.memory.identical
    failed = [c for c in rep.guest_checks if not c.ok]
    assert [c.name for c in failed] == ["guest-selfcheck"]
    assert "first_bad=8192" in failed[0].detail
