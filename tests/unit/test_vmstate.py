"""The migration-stream reader, on streams built here record by record in
QEMU's format (real dumps are read in the arm64 e2e tests)."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from qmpctl.guests.gic import (
    KVM_DTE,
    QEMU_DTE,
    ItsTable,
    itt_tables,
    locate_its_tables,
    state_tables,
)
from qmpctl.qemu.vmstate import StreamError, read_devices

PAGE = 4096
CONFIG = {"vmsd_name": "configuration", "version": 1, "fields": [
    {"name": "len", "type": "uint32", "size": 4}, {"name": "name", "type": "buffer", "size": 4}]}
CPU = {"vmsd_name": "arm_gicv3_cpu", "version": 1, "fields": [
    {"name": "gicr_ctlr", "type": "uint32", "size": 4},
    {"name": "gicr_propbaser", "type": "uint64", "size": 8},
    {"name": "gicr_pendbaser", "type": "uint64", "size": 8}],
    "subsections": [{"vmsd_name": "arm_gicv3_cpu/sre_el1", "version": 1,
                     "fields": [{"name": "icc_sre_el1", "type": "uint64", "size": 8}]}]}
GIC = {"name": "arm_gicv3", "instance_id": 0, "vmsd_name": "arm_gicv3", "version": 1,
       "fields": [{"name": "gicd_ctlr", "type": "uint32", "size": 4},
                  {"name": "cpu", "index": 0, "type": "struct", "struct": CPU, "size": 20},
                  {"name": "cpu", "type": "struct", "struct": CPU, "size": 20}],
       "subsections": [{"vmsd_name": "arm_gicv3/gicd_nmi", "version": 1,
                        "fields": [{"name": "nmi", "array_len": 2, "type": "uint32",
                                    "size": 4}]}]}
ITS = {"name": "arm_gicv3_its", "instance_id": 0, "vmsd_name": "arm_gicv3_its", "version": 0,
       "fields": [{"name": "ctlr", "type": "uint32", "size": 4},
                  {"name": "cbaser", "type": "uint64", "size": 8},
                  {"name": "baser", "array_len": 8, "type": "uint64", "size": 8}]}
PROP, PEND0, PEND1 = 0x4024078D, 0x40250780, 0x40260780
DEVICE_BASER, COLL_BASER = 0xB9070000402D0600, 0xBC070000402E0600
CBASER = 0xB8000000402F040F


def idstr(name: str) -> bytes:
    return bytes([len(name)]) + name.encode()


def header(kind: int, sid: int, name: str) -> bytes:
    return struct.pack(">BI", kind, sid) + idstr(name) + struct.pack(">II", 0, 1)


def footer(sid: int) -> bytes:
    return struct.pack(">BI", 0x7E, sid)


def sub(name: str, body: bytes) -> bytes:
    return b"\x05" + idstr(name) + struct.pack(">I", 1) + body


def cpu(ctlr: int, pend: int) -> bytes:
    return struct.pack(">IQQ", ctlr, PROP, pend) + sub("arm_gicv3_cpu/sre_el1",
                                                          struct.pack(">Q", 7))


def stream(*, footer_id: int = 2, devices: tuple[dict[str, Any], ...] = (GIC, ITS),
           ram_flags: int = 0x08) -> bytes:
    """QEVM header, configuration, a RAM section (block list, a zero page, a
    page, end of section), the GIC and ITS sections, EOF, then the vmdesc."""
    ram = (struct.pack(">Q", 2 * PAGE | 0x04) + idstr("mach-virt.ram")
           + struct.pack(">QQ", 2 * PAGE, 0x4000_0000)
           + struct.pack(">Q", 0x02) + idstr("mach-virt.ram") + b"\x00"
           + struct.pack(">Q", PAGE | ram_flags | 0x20) + b"\xAB" * PAGE
           + struct.pack(">Q", 0x10))
    gic = (struct.pack(">I", 0x13) + cpu(1, PEND0) + cpu(1, PEND1)
           + sub("arm_gicv3/gicd_nmi", struct.pack(">II", 3, 4)))
    its = struct.pack(">IQ", 1, CBASER) + struct.pack(">8Q", DEVICE_BASER, COLL_BASER,
                                                      *[0] * 6)
    body = (struct.pack(">II", 0x5145564D, 3) + b"\x07" + struct.pack(">I", 4) + b"virt"
            + header(1, 1, "ram") + ram + footer(1)
            + header(4, 2, "arm_gicv3") + gic + footer(footer_id)
            + header(4, 3, "arm_gicv3_its") + its + footer(3) + b"\x00")
    desc = json.dumps({"configuration": CONFIG, "page_size": PAGE,
                       "devices": list(devices)}).encode()
    return body + b"\x06" + struct.pack(">I", len(desc)) + desc


def test_reads_device_fields_structs_and_subsections_past_ram() -> None:
    found = read_devices(stream(), ["arm_gicv3", "arm_gicv3_its"])
    gic, its = found["arm_gicv3"], found["arm_gicv3_its"]
    assert gic.one("gicd_ctlr") == 0x13
    assert [c["gicr_pendbaser"] for c in gic.fields["cpu"]] == [[PEND0], [PEND1]]
    assert gic.fields["cpu"][1]["arm_gicv3_cpu/sre_el1"] == [{"icc_sre_el1": [7]}]
    assert gic.one("arm_gicv3/gicd_nmi") == {"nmi": [[3, 4]]}
    assert its.one("baser")[:2] == [DEVICE_BASER, COLL_BASER]


def test_the_gic_state_gives_every_table() -> None:
    found = state_tables(read_devices(stream(), ["arm_gicv3", "arm_gicv3_its"]))
    tables = {t.name: (t.base, t.size) for t in found if t is not None}
    assert tables == {"its-cmdq": (0x402F0000, 16 * 4096),
                      "its-device": (0x402D0000, 64 * 1024),  # 64 KiB pages, 1 page
                      "its-collection": (0x402E0000, 64 * 1024),
                      "lpi-prop": (0x40240000, (1 << 14) - 8192),
                      "lpi-pend-cpu0": (0x40250000, (1 << 14) // 8),
                      "lpi-pend-cpu1": (0x40260000, (1 << 14) // 8)}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"footer_id": 9}, "footer of section 9, not 2"),
    ({"devices": (ITS,)}, "'arm_gicv3' at byte"),
    ({"ram_flags": 0x40}, "RAM record flags 0x60"),
])
def test_a_stream_not_as_described_is_refused_saying_where(kwargs: dict[str, Any],
                                                          message: str) -> None:
    with pytest.raises(StreamError, match=message):
        read_devices(stream(**kwargs), ["arm_gicv3", "arm_gicv3_its"])


def test_a_missing_device_or_vmdesc_is_named() -> None:
    with pytest.raises(StreamError, match="no section nope"):
        read_devices(stream(), ["arm_gicv3_its", "nope"])
    with pytest.raises(StreamError, match="no vmdesc"):
        read_devices(stream()[:-10], ["arm_gicv3"])


def test_itts_come_from_the_device_table_in_each_implementations_format() -> None:
    dt = ItsTable("its-device", 0x402D0000, 4096)
    kvm = (1 << 63) | ((0x40300000 >> 8) << 5) | 3  # valid, ITT at 0x40300000, 4 EventID bits
    qemu = 1 | (2 << 1) | ((0x40310000 >> 8) << 6)  # valid, 3 EventID bits
    data = struct.pack("<4Q", 0, kvm, 0, 0)
    assert [(t.name, t.base, t.size) for t in itt_tables(dt, data, KVM_DTE)] == [
        ("itt-dev1", 0x40300000, 16 * 8)]
    data = struct.pack("<2Q", qemu, 0)
    assert [(t.name, t.base, t.size) for t in itt_tables(dt, data, QEMU_DTE)] == [
        ("itt-dev0", 0x40310000, 8 * 12)]
    assert itt_tables(dt, struct.pack("<Q", kvm), QEMU_DTE)[0].base != 0x40300000


class Stub:
    """Just enough of a QemuMachine for `locate_its_tables`' choice of way:
    a monitor that answers `xp` from a register map (TCG's GIC), and a
    run state (a running QEMU's device state cannot be dumped)."""

    def __init__(self, accel: str, registers: dict[int, int] | None = None) -> None:
        self.spec = type("Spec", (), {"accel": accel})()
        self.name, self.registers = f"stub-{accel}", registers or {}

    async def status(self) -> str:
        return "running"

    async def hmp(self, line: str) -> str:
        count, addr = int(line.split()[1][1:-2]), int(line.split()[2], 16)
        step = 4 if line.split()[1].endswith("wx") else 8
        values = [self.registers.get(addr + i * step, 0) for i in range(count)]
        return f"{addr:016x}: " + " ".join(f"0x{v:x}" for v in values)


def located(src: Stub, dst: Stub | None, announced: tuple[ItsTable, ...] = ()) -> Any:
    return asyncio.run(locate_its_tables(src, dst, 1, Path("/nonexistent"),  # type: ignore
                                         announced, lambda t: b"\0" * t.size))


def test_under_kvm_without_the_destinations_state_nothing_is_guessed() -> None:
    mine = (ItsTable("its-device", 0x402D0000, 4096),)
    assert located(Stub("kvm"), None).source.startswith("not located: KVM's in-kernel ITS")
    found = located(Stub("kvm"), None, mine)
    assert found.tables == mine and found.source.startswith("announced by the guest")
    found = located(Stub("kvm"), Stub("kvm"))
    assert found.tables == () and "the destination's state: stub-kvm is running" in found.source


def test_under_tcg_a_destination_that_cannot_be_dumped_leaves_the_monitor() -> None:
    its, rd = 0x0808_0000, 0x080A_0000
    registers = {its + 0xFFE8: 0x3B, its + 0x80: CBASER, its + 0x100: DEVICE_BASER,
                 rd: 1, rd + 0x70: PROP, rd + 0x78: PEND0}
    found = located(Stub("tcg", registers), Stub("tcg"))
    assert found.source.startswith("from the GIC's registers on the source after the migration "
                                   "(the destination's state: stub-tcg is running")
    assert {t.name for t in found.tables} == {"its-cmdq", "its-device", "lpi-prop",
                                              "lpi-pend-cpu0"}
