"""Where an arm64 guest's ITS and LPI tables are, read from the interrupt
controller itself, so any guest (not only one that announces its tables)
gets a verdict per table.

The registers (GITS_BASER<n>, GITS_CBASER, GICR_PROPBASER, GICR_PENDBASER;
the GICv3 architecture's layout) are read after the migration from the
device state the paused destination holds, as QEMU migrates it
(`qemu/vmstate.py`): under KVM that is the only way, since the in-kernel
ITS keeps its registers in the kernel, which answers neither the monitor nor
any process but QEMU. Where the destination is on another host, QEMU's own
GIC (TCG) is read through the source's monitor (`xp`, at QEMU `virt`'s
addresses); under KVM the tables are then not located, never guessed (a
guest that announces them on its console is believed, saying so). Each
device's ITT is found through the device table, in the format of the ITS
that wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import QmpctlError
from ..core.units import KiB
from ..qemu.machine import QemuMachine
from ..qemu.vmstate import DeviceSection, dump_devices

IN_KERNEL_UNREADABLE = (
    "KVM's in-kernel ITS keeps its registers in the kernel: the monitor cannot read them "
    "(xp gives no value), KVM refuses its device ioctls to any process but QEMU (EIO, "
    "kvm_device_ioctl's mm check), and the destination, whose migrated state would say, "
    "is on another host")

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


async def registers_by_monitor(machine: QemuMachine, ncpus: int) -> list[ItsTable | None]:
    """The tables, from the registers QEMU's own GIC emulation (TCG) answers
    on `machine`'s monitor (`xp`); KVM's in-kernel GIC answers nothing there."""
    (pidr2,) = await _read(machine, VIRT_ITS + GITS_PIDR2, 1, "w")
    if its_arch_rev(pidr2) not in (3, 4):
        raise QmpctlError(f"no GICv3 ITS registers readable at 0x{VIRT_ITS:x} (GITS_PIDR2 "
                          f"reads 0x{pidr2:x})")
    (cbaser,) = await _read(machine, VIRT_ITS + GITS_CBASER, 1)
    basers = await _read(machine, VIRT_ITS + GITS_BASER0, 8)
    redist = []
    for cpu in range(ncpus):
        rd = VIRT_REDIST + cpu * REDIST_STRIDE
        (ctlr,) = await _read(machine, rd + GICR_CTLR, 1, "w")
        if ctlr & 1:  # EnableLPIs clear: its tables are not in use
            prop, pend = await _read(machine, rd + GICR_PROPBASER, 2)
            redist.append((cpu, prop, pend))
    return register_tables(cbaser, basers, redist)


GIC_SECTIONS = ("arm_gicv3_its", "arm_gicv3")  # vmstate idstrs, the same for TCG and KVM


def state_tables(sections: dict[str, DeviceSection]) -> list[ItsTable | None]:
    """The tables, from the ITS and GICv3 device state QEMU migrates (pure)."""
    its, gic = (sections[name] for name in GIC_SECTIONS)
    redist = [(cpu, c["gicr_propbaser"][0], c["gicr_pendbaser"][0])
              for cpu, c in enumerate(gic.fields.get("cpu", [])) if c["gicr_ctlr"][0] & 1]
    return register_tables(its.one("cbaser"), list(its.one("baser")), redist)


@dataclass(frozen=True)
class DteFormat:
    """A device table entry as one ITS implementation stores it: each valid
    entry (index = DeviceID, flat table) points at that device's ITT."""

    implementation: str
    valid_bit: int
    size_lo: int  # EventID bits - 1, 5 bits
    addr_hi: int
    addr_lo: int  # ITT address [51:8]
    ite_size: int

    def itt(self, entry: int) -> tuple[int, int] | None:
        """(ITT base, size in bytes), or None for an invalid entry."""
        if not _bits(entry, self.valid_bit, self.valid_bit):
            return None
        events = 1 << (_bits(entry, self.size_lo + 4, self.size_lo) + 1)
        return _bits(entry, self.addr_hi, self.addr_lo) << 8, events * self.ite_size


# Linux's vgic-its.c, ABI rev 0: 63 valid | 62:49 next | 48:5 ITT_addr[51:8] | 4:0 size
KVM_DTE = DteFormat("KVM's in-kernel ITS (ABI rev 0)", 63, 0, 48, 5, 8)
# QEMU's gicv3_internal.h: 0 valid | 5:1 size | 49:6 ITT_addr[51:8]; 12-byte ITEs
QEMU_DTE = DteFormat("QEMU's ITS", 0, 1, 49, 6, 12)


def itt_tables(device_table: ItsTable, data: bytes, fmt: DteFormat) -> list[ItsTable]:
    """One ITT per valid entry of a flat device table's bytes (pure)."""
    out = []
    for devid in range(len(data) // 8):
        if (found := fmt.itt(int.from_bytes(data[devid * 8:devid * 8 + 8], "little"))):
            base, size = found
            out.append(ItsTable(f"itt-dev{devid}", base, size,
                                f"{device_table.name} entry {devid} ({fmt.implementation})"))
    return out


async def locate_its_tables(src: QemuMachine, dst: QemuMachine | None, ncpus: int,
                            dump: Path, announced: Sequence[ItsTable],
                            read: Callable[[ItsTable], bytes]) -> ItsTableMap:
    """Every table the ITS and the redistributors point at, and each device's
    ITT, after the migration. From the GIC state the paused destination `dst`
    holds (dumped to `dump`; the only way under KVM), else (TCG) from the
    source's registers through its monitor. `read` gives a table's bytes in
    the source's RAM (the device table, for the ITTs). Tables the guest
    `announced` and the GIC does not point at (an ITT QEMU's format hides)
    are added as announced; if the GIC's state cannot be read at all, the
    announcement alone is believed, saying so."""
    found: list[ItsTable | None] | None = None
    failed: list[str] = []
    if dst is not None:
        try:
            found = state_tables(await dump_devices(dst, dump, GIC_SECTIONS))
            how = ("from the GIC and ITS state the paused destination holds (its registers "
                   "as QEMU migrates them)")
        except QmpctlError as exc:
            failed.append(f"the destination's state: {exc}")
    if found is None and src.spec.accel != "kvm":
        try:
            found = await registers_by_monitor(src, ncpus)
            how = "from the GIC's registers on the source after the migration"
        except QmpctlError as exc:
            failed.append(f"the source's registers: {exc}")
    elif found is None and dst is None:
        failed.append(IN_KERNEL_UNREADABLE)
    why = "; ".join(failed)
    if found is None:
        if announced:
            return ItsTableMap(tuple(announced), f"announced by the guest on its console "
                                                 f"(the GIC: {why})")
        return ItsTableMap((), f"not located: {why}")
    if failed:
        how += f" ({why})"
    tables = [t for t in found if t is not None]
    fmt = KVM_DTE if src.spec.accel == "kvm" else QEMU_DTE
    for dt in [t for t in tables if t.name == "its-device"]:
        tables += itt_tables(dt, read(dt), fmt)
    if any(t.name == "its-device-level1" for t in tables):
        how += "; the device table has two levels: ITTs not located from it"
    names = {t.name for t in tables}
    extra = [t for t in announced if t.name not in names]
    if extra:
        how += f"; {len(extra)} more as the guest announced them"
    return ItsTableMap((*tables, *extra), f"{how} ({len(tables)} valid tables)")
