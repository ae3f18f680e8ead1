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
        assert {"events", "postcopy-ram"} <= set(q.migration_capabilities)
        assert q.commands["calc-dirty-rate"] and q.commands["migrate-incoming"]
        assert q.data_dir is not None and q.default_machine is not None
        family = "pc-i440fx-" if q.arch == "x86_64" else "virt-"
        assert q.default_machine == family + ".".join((q.version or "").split(".")[:2])
    defaults = [q for q in rep.qemu if q.default]
    assert [q.arch for q in defaults] == ["x86_64", "aarch64"]
    assert all("dirty-limit" in q.migration_capabilities for q in defaults)  # QEMU 10
    for q in rep.qemu:  # a private prefix's QEMU uses its own data directory
        if q.version and q.version.startswith("7.2."):
            assert q.binary is not None and q.data_dir is not None
            assert q.data_dir.startswith(q.binary.removesuffix(f"/usr/bin/qemu-system-{q.arch}"))
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
    assert data["host_arch"]
    assert [q["arch"] for q in data["qemu"] if q["default"]] == ["x86_64", "aarch64"]
    assert {q["arch"] for q in data["qemu"]} == {"x86_64", "aarch64"}
