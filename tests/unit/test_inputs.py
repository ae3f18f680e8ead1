"""Inputs checked before anything starts (issue 22): the pure checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmpctl.core.errors import UsageError
from qmpctl.core.units import MiB
from qmpctl.guests.kimage import image_problem
from qmpctl.host.kvm import KvmInfo, cap_text, ring_size_text
from qmpctl.migration.settings import MigrationSettings
from qmpctl.qemu.schema import QemuSchema
from qmpctl.scenario.options import (
    MigrateOptions,
    parse_exclusion,
    ram_size_problem,
    resolve,
    timeout_problems,
)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 0.0])
@pytest.mark.parametrize("name", ["timeout", "hold_timeout", "boot_timeout", "guest_timeout"])
def test_timeouts_must_be_finite_and_positive(name: str, value: float) -> None:
    problems = timeout_problems(MigrateOptions(**{name: value}))  # type: ignore[arg-type]
    assert problems == [f"--{name.replace('_', '-')} {value}: must be a positive number "
                        "of seconds"]


def test_migrate_after_must_be_finite() -> None:
    assert timeout_problems(MigrateOptions(migrate_after=float("nan")))
    assert timeout_problems(MigrateOptions(migrate_after=0.0)) == []


def test_ram_beyond_the_host_names_the_size() -> None:
    assert ram_size_problem(1024, 4096 * MiB) is None
    assert ram_size_problem(8192, 4096 * MiB) == (
        "--ram 8192 MiB: more than this host's memory (4096 MiB in all); guest RAM lives in "
        "tmpfs files, two copies of it during a migration")


def test_unaligned_exclusions_are_refused_with_the_pages_they_touch() -> None:
    assert parse_exclusion("0x1000-0x3000:x").start == 0x1000
    with pytest.raises(UsageError, match="the pages it touches are 0x1000-0x4000"):
        parse_exclusion("0x1800-0x3001")


def test_parameters_out_of_qemus_range() -> None:
    schema = QemuSchema(arch="x86_64", binary="q", version="10.0.2",
                        migration_parameters={"downtime-limit": "int", "max-bandwidth": "int",
                                              "multifd-channels": "int"})
    bad = MigrationSettings(parameters={"downtime-limit": -1, "max-bandwidth": -5,
                                        "multifd-channels": 0})
    assert bad.problems(schema) == [
        "migration parameter downtime-limit=-1: must be 0..2000000 for QEMU 10.0.2 (q)",
        "migration parameter max-bandwidth=-5: must be >= 0 (unsigned) for QEMU 10.0.2 (q)",
        "migration parameter multifd-channels=0: must be 1..255 for QEMU 10.0.2 (q)"]
    good = MigrationSettings(parameters={"downtime-limit": 300, "max-bandwidth": 0})
    assert good.problems(schema) == []


def test_kernel_images(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    assert image_problem(text, "aarch64") == ("a text file, not a kernel image (ELF, Image "
                                              "or a flat binary)")
    assert image_problem(text, "x86_64", ).startswith("not a kernel image QEMU boots on x86")
    flat = tmp_path / "test.flat"
    flat.write_bytes(bytes(range(256)) * 16)
    assert image_problem(flat, "aarch64") is None  # a flat binary may hold anything
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert image_problem(empty, "x86_64") == "an empty file"
    multiboot = tmp_path / "mb.bin"
    multiboot.write_bytes(bytes(64) + (0x1BADB002).to_bytes(4, "little") + bytes(64))
    assert image_problem(multiboot, "x86_64") is None


def test_doctor_gives_ring_sizes_their_units() -> None:
    assert ring_size_text(65536) == "65536 entries per vCPU (1024 KiB, 16 bytes an entry)"
    assert cap_text("dirty-log-ring", 1048576) == "1048576 bytes a ring at most (65536 entries)"
    assert cap_text("manual-dirty-log-protect2", 3) == "3"


def _kvm(flavour: str, ring_bytes: int, bitmap: int = 0) -> KvmInfo:
    return KvmInfo(device="/dev/kvm", accessible=True, flavour=flavour,  # type: ignore[arg-type]
                   api_version=12, caps={"dirty-log-ring": ring_bytes,
                                         "dirty-log-ring-acq-rel": ring_bytes,
                                         "dirty-log-ring-with-bitmap": bitmap})


@pytest.mark.parametrize(("kvm", "ring", "message"), [
    (_kvm("pvm", 1 << 20), 131072, "--dirty-ring 131072: above this host's maximum of 65536 "
                                   "entries"),
    (_kvm("vmx", 1 << 16), 8192, "--dirty-ring 8192: above this host's maximum of 4096 entries"),
    (_kvm("vmx", 0), 4096, "--dirty-ring 4096: this host's KVM has no dirty ring"),
])
def test_the_ring_is_checked_against_the_hosts_own_maximum(kvm: KvmInfo, ring: int,
                                                           message: str) -> None:
    """The host's facts are injected: the message names what this KVM offers."""
    with pytest.raises(UsageError) as err:
        resolve(MigrateOptions(accel="kvm", dirty_ring=ring), kvm)
    assert message in err.value.message


def test_a_pae_guest_is_refused_only_by_a_kvm_that_resets_it() -> None:
    opts = MigrateOptions(accel="kvm", ram=8192)
    with pytest.raises(UsageError, match=r"--accel kvm: this host's KVM \(pvm\) resets a 32-bit "
                                         "guest that turns on PAE paging"):
        resolve(opts, _kvm("pvm", 1 << 20))
    # the same options on a KVM that pages 32-bit guests (SVM) pass this check
    assert resolve(opts, _kvm("svm", 1 << 20)).accel == "kvm"
