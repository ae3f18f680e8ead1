"""`qmpctl doctor` against the real host and real QEMU binaries."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qmpctl.cli import app
from qmpctl.doctor import doctor
from qmpctl.host.kvm import KVM_CAPS

pytestmark = pytest.mark.qemu


async def test_doctor_reads_kvm_caps_and_qemu_schema() -> None:
    rep = await doctor(long_mode_probe=True)
    assert set(rep.kvm.caps) == (set(KVM_CAPS) if rep.kvm.accessible else set())
    for q in rep.qemu:
        assert q.error is None, q
        assert {"page-sampling", "dirty-ring", "dirty-bitmap"} <= set(q.dirty_rate_modes)
        assert {"events", "postcopy-ram", "dirty-limit"} <= set(q.migration_capabilities)
        assert q.commands["calc-dirty-rate"] and q.commands["migrate-incoming"]
    if rep.kvm.accessible:
        assert rep.long_mode_probe is not None
    if rep.kvm.flavour == "pvm":
        assert rep.kvm.runs_64bit_guests is False
        assert rep.kvm.dirty_ring_max_entries == rep.kvm.caps["dirty-log-ring"] // 16
        assert rep.long_mode_probe == "ok: 64-bit code ran under KVM"


def test_doctor_json_is_machine_readable() -> None:
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["host_arch"] and [q["arch"] for q in data["qemu"]] == ["x86_64", "aarch64"]
