"""End-to-end: `--trace-kernel on` on a real KVM dirty-ring migration (root,
tracefs and KVM's ring tracepoints; skipped otherwise, with the reason)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qmpctl.host import ktrace
from qmpctl.testing import MigrateFn
from qmpctl.verify.kring import KERNEL_EVENTS
from tests.conftest import our_qemu_processes
from tests.e2e.test_migrate_x86 import migrate

pytestmark = pytest.mark.qemu


def _ours() -> list[str]:
    instances = ktrace.TRACEFS / "instances"
    return sorted(p.name for p in instances.glob(f"{ktrace.PREFIX}{os.getpid()}-*"))


@pytest.mark.qmpctl_kvm(ring=True)
async def test_kernel_ring_trace(qmpctl_migrate: MigrateFn) -> None:
    if (why := ktrace.unavailable(KERNEL_EVENTS)) is not None:
        pytest.skip(f"--trace-kernel cannot run here: {why}")
    was_mounted = (ktrace.TRACEFS / "instances").is_dir()
    rep = await migrate(qmpctl_migrate, accel="kvm", dirty_ring=4096, trace_kernel="on")
    kr = rep.kernel_ring
    assert kr is not None and kr.engaged, rep.error
    assert kr.ring_size == 4096
    assert [v.vcpu for v in kr.vcpus] == [0]
    (v,) = kr.vcpus
    assert v.pushed > 0 and v.harvested > 0 and v.resets > 0
    assert v.overwritten <= v.harvested
    if rep.memory is not None and rep.memory.pages_differing and kr.overwritten:
        assert rep.memory.explanation is not None and "kernel: " in rep.memory.explanation
    # Nothing of ours is left in tracefs, and a mount of ours is gone.
    assert (ktrace.TRACEFS / "instances").is_dir() == was_mounted
    if was_mounted:
        assert _ours() == []


@pytest.mark.qmpctl_kvm(ring=True)
def test_an_interrupted_traced_run_leaves_no_instance(tmp_path: Path) -> None:
    if (why := ktrace.unavailable(KERNEL_EVENTS)) is not None:
        pytest.skip(f"--trace-kernel cannot run here: {why}")
    was_mounted = (ktrace.TRACEFS / "instances").is_dir()
    report = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from qmpctl.cli import main; main()", "migrate",
         "--accel", "kvm", "--dirty-ring", "4096", "--trace-kernel", "on", "--ram", "64",
         "--wave-end", "18", "--throttle", "1", "--min-passes", "50", "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("-name qmpctl-dst" in p
                                                  for p in our_qemu_processes()):
        time.sleep(0.2)
    instances = ktrace.TRACEFS / "instances"
    during = sorted(p.name for p in instances.glob(f"{ktrace.PREFIX}{proc.pid}-*"))
    time.sleep(1)  # migrating, held back at 1 MiB/s
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert json.loads(report.read_text())["kernel_ring"]["engaged"] is True
    assert len(during) == 1, "the run recorded in an instance of its own"
    assert not (instances / during[0]).exists()
    assert instances.is_dir() == was_mounted
    assert our_qemu_processes() == []
