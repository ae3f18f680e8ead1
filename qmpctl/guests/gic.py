"""Where an arm64 guest's ITS and LPI tables are, read from the interrupt
controller itself, so any guest (not only one that announces its tables)
gets a verdict per table.

The registers are read through the monitor (`xp`, a physical read that QEMU
dispatches to the emulated GICv3/ITS) on the paused source after the
migration: the same values the migration stream carried. The layout is the
GICv3 architecture's (GITS_BASER<n>, GITS_CBASER, GICR_PROPBASER,
GICR_PENDBASER); the addresses are QEMU `virt`'s memory map. KVM's in-kernel
ITS keeps its registers in the kernel, where neither the monitor nor another process can
read them: the tables are then reported as not located, never guessed (a
guest that announces them on its console is believed instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.errors import QmpctlError
from ..core.units import KiB
from ..qemu.machine import QemuMachine

IN_KERNEL_UNREADABLE = (
    "not located: KVM's in-kernel ITS keeps its registers in the kernel; the monitor "
    "cannot read them (xp gives no value) and KVM refuses its device ioctls to any process "
    "but QEMU (EIO, kvm_device_ioctl's mm check), so only the guest could say where they are")

VIRT_ITS = 0x0808_0000  # hw/arm/virt.c VIRT_GIC_ITS
VIRT_REDIST = 0x080A_0000  # VIRT_GIC_REDIST: one RD_base + SGI_base frame pair per CPU
REDIST_STRIDE = 0x2_0000
GITS_CBASER, GITS_BASER0, GITS_PIDR2 = 0x80, 0x100, 0xFFE8
GICR_CTLR, GICR_PROPBASER, GICR_PENDBASER = 0x0, 0x70, 0x78
LPI_FIRST_INTID = 8192
BASER_TYPES = {1: "its-device", 2: "its-vpe", 4: "its-collection"}
_PAGE_SIZES = {0: 4 * KiB, 1: 16 * KiB, 2: 64 * KiB, 3: 64 * KiB}


@dataclass(frozen=True)
class ItsTable:
    """One table the GIC reads or writes in guest RAM."""

    name: str
    base: int
    size: int
    located_by: str = "announced by the guest"


@dataclass(frozen=True)
class ItsTableMap:
    """The tables found, and how (or why none were)."""

    tables: tuple[ItsTable, ...]
    source: str


def _bits(value: int, hi: int, lo: int) -> int:
    return (value >> lo) & ((1 << (hi - lo + 1)) - 1)


def decode_baser(n: int, value: int) -> ItsTable | None:
    """GITS_BASER<n>: a device, collection or vPE table (None when not valid)."""
    if not _bits(value, 63, 63) or not (kind := _bits(value, 58, 56)):
        return None
    page = _PAGE_SIZES[_bits(value, 9, 8)]
    base = _bits(value, 47, 12) << 12
    if page == 64 * KiB:  # PA[51:48] sits in bits [15:12] with 64 KiB pages
        base = (base & ~0xFFFF) | (_bits(value, 15, 12) << 48)
    name = BASER_TYPES.get(kind, f"its-type{kind}")
    if _bits(value, 62, 62):
        name += "-level1"  # a two-level table: only its first level is located
    return ItsTable(name, base, (_bits(value, 7, 0) + 1) * page,
                    f"GITS_BASER{n}=0x{value:x}")


def decode_cbaser(value: int) -> ItsTable | None:
    """GITS_CBASER: the command queue, in 4 KiB pages."""
    if not _bits(value, 63, 63):
        return None
    return ItsTable("its-cmdq", _bits(value, 51, 12) << 12,
                    (_bits(value, 7, 0) + 1) * 4 * KiB, f"GITS_CBASER=0x{value:x}")


def id_bits(propbaser: int) -> int:
    return _bits(propbaser, 4, 0) + 1


def decode_propbaser(value: int) -> ItsTable | None:
    """GICR_PROPBASER: one byte per LPI, from INTID 8192 up to 2^IDbits."""
    size = (1 << id_bits(value)) - LPI_FIRST_INTID
    if size <= 0 or not (base := _bits(value, 51, 12) << 12):
        return None
    return ItsTable("lpi-prop", base, size, f"GICR_PROPBASER=0x{value:x}")


def decode_pendbaser(cpu: int, value: int, propbaser: int) -> ItsTable | None:
    """GICR_PENDBASER: one bit per INTID up to 2^IDbits (64 KiB aligned)."""
    if not (base := _bits(value, 51, 16) << 16):
        return None
    return ItsTable(f"lpi-pend-cpu{cpu}", base, (1 << id_bits(propbaser)) // 8,
                    f"GICR_PENDBASER=0x{value:x} (cpu {cpu})")


_XP_VALUE = re.compile(r"0x([0-9a-fA-F]+)")


def parse_xp(text: str) -> list[int]:
    """The values of an HMP `xp` dump (pure)."""
    return [int(v, 16) for line in text.splitlines() if ":" in line
            for v in _XP_VALUE.findall(line.partition(":")[2])]


async def _read(machine: QemuMachine, addr: int, count: int, unit: str = "g") -> list[int]:
    values = parse_xp(await machine.hmp(f"xp /{count}{unit}x 0x{addr:x}"))
    if len(values) != count:
        raise QmpctlError(f"xp at 0x{addr:x} gave {len(values)} values, not {count}")
    return values


def its_arch_rev(pidr2: int) -> int:
    return _bits(pidr2, 7, 4)


def register_tables(cbaser: int, basers: list[int], redist: list[tuple[int, int, int]]
            ) -> list[ItsTable | None]:
    """The tables those register values point at; `redist`: (cpu, PROPBASER,
    PENDBASER) of each redistributor with LPIs enabled (pure)."""
    found = [decode_cbaser(cbaser), *(decode_baser(n, v) for n, v in enumerate(basers))]
    for i, (cpu, prop, pend) in enumerate(redist):
        if i == 0:  # every redistributor shares one property table
            found.append(decode_propbaser(prop))
        found.append(decode_pendbaser(cpu, pend, prop))
    return found


async def locate_its_tables(machine: QemuMachine, ncpus: int) -> ItsTableMap:
    """Every valid table the ITS and the redistributors point at, from their
    registers on `machine` (paused)."""
    if machine.spec.accel == "kvm":
        return ItsTableMap((), IN_KERNEL_UNREADABLE)
    try:
        (pidr2,) = await _read(machine, VIRT_ITS + GITS_PIDR2, 1, "w")
        if its_arch_rev(pidr2) not in (3, 4):
            return ItsTableMap((), f"not located: no GICv3 ITS registers readable at "
                                   f"0x{VIRT_ITS:x} (GITS_PIDR2 reads 0x{pidr2:x}; KVM's "
                                   "in-kernel ITS is not readable through the monitor)")
        (cbaser,) = await _read(machine, VIRT_ITS + GITS_CBASER, 1)
        basers = await _read(machine, VIRT_ITS + GITS_BASER0, 8)
        redist = []
        for cpu in range(ncpus):
            rd = VIRT_REDIST + cpu * REDIST_STRIDE
            (ctlr,) = await _read(machine, rd + GICR_CTLR, 1, "w")
            if ctlr & 1:  # EnableLPIs clear: its tables are not in use
                prop, pend = await _read(machine, rd + GICR_PROPBASER, 2)
                redist.append((cpu, prop, pend))
        found = register_tables(cbaser, basers, redist)
    except QmpctlError as exc:
        return ItsTableMap((), f"not located: reading the GIC registers failed: {exc}")
    tables = tuple(t for t in found if t is not None)
    return ItsTableMap(tables, f"from the GIC's registers on the source after the migration "
                               f"({len(tables)} valid tables)")
