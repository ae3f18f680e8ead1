"""What KVM's in-kernel ITS itself writes into guest RAM across a migration,
so that a difference it explains is named with its proof, and anything else
in those pages is still a loss (pure).

Read from Linux 6.12 (`arch/arm64/kvm/vgic/vgic-its.c`, `vgic-v3.c`) and
QEMU 10.0 (`hw/intc/arm_gicv3_its_kvm.c`, `arm_gicv3_kvm.c`):

* device table, ITTs, collection table: KVM writes them at every stop
  (KVM_DEV_ARM_ITS_SAVE_TABLES, ABI rev 0 entries below); the destination's
  RESTORE_TABLES only reads them. QEMU's ITS (TCG) keeps its own format in
  RAM as commands run. Both: compared as is.
* LPI pending, per redistributor: at every stop KVM sets or clears each
  mapped LPI's bit to its pending latch (KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES;
  the first 1 KiB is never touched). On the paused destination,
  RESTORE_TABLES re-creates each mapped LPI (`vgic_add_lpi`), reads its bit
  into the LPI's pending latch and **clears it in RAM** ("clear consumed
  data", `vgic_v3_lpi_sync_pending_status`). QEMU's ITS: its GIC state carries
  pending LPIs, RAM is compared as is.
* LPI property table, command queue: written by the guest only.

So on KVM, and only there, the destination's pending table may lack bits the
source has: exactly the bits of LPIs that were pending at the stop and are
mapped by an ITE whose collection targets that redistributor's vCPU. Such an
LPI is pending in the destination's vGIC instead of in its RAM, and the guest
must receive it after resume (the ITS guest's `its-pending` check). A bit set
on the destination, a cleared bit of an LPI with no such mapping, or any other
differing byte is not the restore's doing.

ABI rev 0 entries (8 bytes, little-endian): ITE `63:48 next | 47:16 pINTID |
15:0 ICID` (pINTID 0: invalid); CTE `63 valid | 51:16 RDBase (the vCPU
number) | 15:0 ICID`; DTE `63 valid | 62:49 next | 48:5 ITT address[51:8] |
4:0 EventID bits - 1`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
else:
    from ..core.lazy import numpy as np


LPI_FIRST_INTID = 8192
PENDING_RESERVED = LPI_FIRST_INTID // 8  # the pending table's first 1 KiB: no LPIs
ENTRY = 8


def _entries(data: bytes) -> np.ndarray:
    n = len(data) // ENTRY
    return np.frombuffer(data[: n * ENTRY], dtype="<u8")


def collection_targets(table: bytes) -> dict[int, int]:
    """ICID -> vCPU from a collection table KVM saved (valid entries only)."""
    e = _entries(table)
    valid = e[(e >> np.uint64(63)) == 1]
    return {int(v & np.uint64(0xFFFF)): int((v >> np.uint64(16)) & np.uint64((1 << 36) - 1))
            for v in valid}


def itt_lpis(table: bytes) -> dict[int, int]:
    """pINTID -> ICID from one ITT KVM saved (entries with a pINTID only)."""
    e = _entries(table)
    pintid = (e >> np.uint64(16)) & np.uint64(0xFFFF_FFFF)
    return {int(p): int(v & np.uint64(0xFFFF)) for p, v in zip(pintid, e, strict=True) if p}


def lpi_targets(collections: bytes, itts: list[bytes]) -> dict[int, int]:
    """pINTID -> vCPU for every LPI an ITE maps to a mapped collection."""
    targets = collection_targets(collections)
    return {lpi: targets[icid] for itt in itts for lpi, icid in itt_lpis(itt).items()
            if icid in targets}


@dataclass(frozen=True)
class ConsumedBits:
    """A pending-table page whose differences are (or are not) the restore's."""

    intids: tuple[int, ...]
    problem: str | None  # None: every difference is a consumed pending bit


def consumed_pending(src: bytes, dst: bytes, table_offset: int, table_size: int, cpu: int,
                     targets: dict[int, int]) -> ConsumedBits:
    """Whether `dst` differs from `src` (one page of vCPU `cpu`'s pending table,
    starting `table_offset` bytes into the table) only by bits KVM's ITS restore
    consumed: set on the source, clear on the destination, of LPIs mapped to a
    collection on that vCPU."""
    a = np.frombuffer(src, np.uint8)
    b = np.frombuffer(dst, np.uint8)
    where = np.flatnonzero(a != b)
    intids: list[int] = []
    for i in where:
        offset = table_offset + int(i)
        if not 0 <= offset < table_size:
            return ConsumedBits((), f"a byte outside the pending table differs ({offset:+#x} "
                                    "from its base)")
        if offset < PENDING_RESERVED:
            return ConsumedBits((), f"byte +0x{offset:x} differs in the first 1 KiB, which "
                                    "holds no LPI and KVM never writes")
        added = int(b[i]) & ~int(a[i])
        if added:
            return ConsumedBits((), f"byte +0x{offset:x}: the destination has pending bits "
                                    f"the source lacks (0x{int(a[i]):02x} -> 0x{int(b[i]):02x});"
                                    " a restore only clears")
        cleared = int(a[i]) & ~int(b[i])
        for bit in range(8):
            if cleared >> bit & 1:
                intid = offset * 8 + bit
                if targets.get(intid) != cpu:
                    where_to = ("is mapped by no ITE" if intid not in targets else
                                f"targets vCPU {targets[intid]}")
                    return ConsumedBits((), f"LPI {intid}'s pending bit was cleared but it "
                                            f"{where_to}, not vCPU {cpu}")
                intids.append(intid)
    return ConsumedBits(tuple(intids), None)
