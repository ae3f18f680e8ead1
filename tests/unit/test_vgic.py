"""Locating an in-kernel ITS's tables: KVM device fds of a QEMU, attribute
encodings, and the ITTs from a saved device table (pure parts; the real read
runs in the arm64 lab, tests/e2e/test_its_aarch64.py)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from qmpctl.guests.gic import ItsTable, itts_from_device_table, locate_in_kernel, register_tables
from qmpctl.host.vgic import GIC_DEVICE, ITS_DEVICE, device_fds, mpidr_attr


def test_device_fds_are_found_by_their_anon_inode_names(tmp_path: Path) -> None:
    fd_dir = tmp_path / "42" / "fd"
    fd_dir.mkdir(parents=True)
    for n, target in [(3, "/dev/kvm"), (11, ITS_DEVICE), (12, GIC_DEVICE), (13, ITS_DEVICE)]:
        os.symlink(target, fd_dir / str(n))
    assert device_fds(42, tmp_path) == {ITS_DEVICE: 11, GIC_DEVICE: 12}


def test_mpidr_attr_puts_virts_affinity_above_the_offset() -> None:
    assert mpidr_attr(0) == 0 and mpidr_attr(3) == 3 << 32
    assert mpidr_attr(17) == (1 << 40) | (1 << 32)


def test_tables_from_register_values() -> None:
    cbaser = 1 << 63 | 0x402F_0000 | 15  # valid, 16 x 4 KiB
    device = 1 << 63 | 1 << 56 | 0x402D_0000 | 2 << 8 | 0  # valid, device, 64 KiB pages, 1 page
    prop, pend = 0x4024_0000 | 15, 0x4025_0000  # 16 ID bits
    tables = [t for t in register_tables(cbaser, [device] + [0] * 7, [(0, prop, pend)]) if t]
    assert [(t.name, t.base, t.size) for t in tables] == [
        ("its-cmdq", 0x402F_0000, 0x10000), ("its-device", 0x402D_0000, 0x10000),
        ("lpi-prop", 0x4024_0000, (1 << 16) - 8192), ("lpi-pend-cpu0", 0x4025_0000, 8192)]


def test_itts_come_from_the_saved_device_table(tmp_path: Path) -> None:
    ram = tmp_path / "ram"
    table = bytearray(0x1000)
    struct.pack_into("<Q", table, 8 * 2, 1 << 63 | (0x4030_1000 >> 8) << 5 | 4)  # device 2
    data = bytearray(0x2000)
    data[0x1000:0x2000] = table
    ram.write_bytes(bytes(data))
    itts = itts_from_device_table(str(ram), ItsTable("its-device", 0x4000_1000, 0x1000))
    assert [(t.name, t.base, t.size) for t in itts] == [("itt-dev2", 0x4030_1000, 32 * 8)]
    assert "DTE of device 2" in itts[0].located_by


def test_a_process_without_an_in_kernel_its_is_not_located_and_says_why() -> None:
    found = locate_in_kernel(os.getpid(), "/nonexistent", 2)
    assert found.tables == ()
    assert found.source.startswith("not located: KVM's device attributes could not be read")
    assert "not an in-kernel vGICv3 with an ITS" in found.source


@pytest.mark.parametrize("cpu", [0, 1])
def test_pending_table_name_carries_the_cpu(cpu: int) -> None:
    tables = [t for t in register_tables(0, [0] * 8, [(cpu, 0x4024_0000 | 15, 0x4025_0000)]) if t]
    assert tables[-1].name == f"lpi-pend-cpu{cpu}"
