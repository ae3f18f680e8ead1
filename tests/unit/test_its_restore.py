"""KVM's in-kernel ITS restore consumes pending bits: the pure check that
names such a difference, and refuses every other one."""

from __future__ import annotations

import struct

from qmpctl.verify.its import (
    collection_targets,
    consumed_pending,
    itt_lpis,
    lpi_targets,
)


def cte(icid: int, vcpu: int) -> bytes:
    return struct.pack("<Q", 1 << 63 | vcpu << 16 | icid)


def ite(pintid: int, icid: int) -> bytes:
    return struct.pack("<Q", pintid << 16 | icid)


COLLECTIONS = cte(0, 0) + cte(1, 1) + bytes(8)
ITT = ite(8198, 0) + ite(8200, 0) + ite(8201, 1) + bytes(8)  # a free slot: pINTID 0
TARGETS = lpi_targets(COLLECTIONS, [ITT])


def page(**bits: int) -> bytes:
    data = bytearray(4096)
    for offset, value in bits.items():
        data[int(offset[1:], 16)] = value
    return bytes(data)


def test_abi_rev0_entries_decode() -> None:
    assert collection_targets(COLLECTIONS) == {0: 0, 1: 1}
    assert itt_lpis(ITT) == {8198: 0, 8200: 0, 8201: 1}
    assert TARGETS == {8198: 0, 8200: 0, 8201: 1}


def test_cleared_bits_of_lpis_mapped_to_this_vcpu_are_the_restore() -> None:
    # byte 0x400 + 6/8: LPIs 8198 (bit 6) and 8200 (byte 0x401 bit 0) on vCPU 0
    found = consumed_pending(page(x400=0x40, x401=0x01), page(), 0, 0x800, 0, TARGETS)
    assert found.problem is None and found.intids == (8198, 8200)


def test_a_bit_set_on_the_destination_is_not_the_restore() -> None:
    found = consumed_pending(page(), page(x400=0x40), 0, 0x800, 0, TARGETS)
    assert found.problem is not None and "a restore only clears" in found.problem


def test_an_unmapped_or_other_vcpus_lpi_is_not_the_restore() -> None:
    other = consumed_pending(page(x401=0x02), page(), 0, 0x800, 0, TARGETS)  # 8201: vCPU 1
    assert other.problem == "LPI 8201's pending bit was cleared but it targets vCPU 1, not vCPU 0"
    unmapped = consumed_pending(page(x402=0x01), page(), 0, 0x800, 0, TARGETS)  # 8208
    assert unmapped.problem is not None and "is mapped by no ITE" in unmapped.problem


def test_differences_outside_the_lpi_range_or_the_table_are_not_the_restore() -> None:
    low = consumed_pending(page(x10=0x01), page(), 0, 0x800, 0, TARGETS)
    assert low.problem is not None and "first 1 KiB" in low.problem
    beyond = consumed_pending(page(x900=0x01), page(), 0, 0x800, 0, TARGETS)
    assert beyond.problem is not None and "outside the pending table" in beyond.problem
