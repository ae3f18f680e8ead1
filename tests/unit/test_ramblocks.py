"""Reading QEMU's RAMBlock list and flat memory map (pure), comparing blocks."""

from qmpctl.verify.ramblocks import compare_blocks, parse_guest_mappings, parse_ramblocks

RAMBLOCK = """\
              Block Name    PSize              Offset               Used              Total                HVA  RO
                    ram0    4 KiB  0x0000000000000000 0x0000000004000000 0x0000000004000000 0x00007f0b67e00000  rw
    /rom@etc/acpi/tables    4 KiB  0x0000000004080000 0x0000000000020000 0x0000000000200000 0x00007f0bb3000000  ro
                 pc.bios    4 KiB  0x0000000004000000 0x0000000000040000 0x0000000000040000 0x00007f0bb3600000  ro
"""  # noqa: E501

MTREE = """\
FlatView #0
 AS "gpex-root", root: bus master container
 Root memory region: (none)
  No rendered FlatView

FlatView #1
 AS "memory", root: system
 AS "cpu-memory-0", root: system
 Root memory region: system
  0000000000000000-00000000000bffff (prio 0, ram): ram0
  00000000000e0000-00000000000fffff (prio 0, rom): pc.bios @0000000000020000
  00000000fec00000-00000000fec00fff (prio 0, i/o): ioapic
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios

FlatView #2
 AS "I/O", root: io
  0000000000000000-0000000000000007 (prio 0, i/o): dma-chan
"""


def test_parse_ramblocks() -> None:
    blocks = parse_ramblocks(RAMBLOCK)
    assert [(b.name, b.used, b.read_only) for b in blocks] == [
        ("ram0", 64 << 20, False), ("/rom@etc/acpi/tables", 0x20000, True),
        ("pc.bios", 0x40000, True)]
    assert blocks[2].hva == 0x7F0BB3600000


RAMBLOCK_7_2 = """\
              Block Name    PSize              Offset               Used              Total
                    ram0    4 KiB  0x0000000000000000 0x0000000004000000 0x0000000004000000
                 pc.bios    4 KiB  0x0000000004000000 0x0000000000040000 0x0000000000040000
"""


def test_parse_ramblocks_of_qemu_7_2_without_host_addresses() -> None:
    blocks = parse_ramblocks(RAMBLOCK_7_2)
    assert [(b.name, b.used, b.hva, b.read_only) for b in blocks] == [
        ("ram0", 64 << 20, None, None), ("pc.bios", 0x40000, None, None)]


def test_guest_mappings_from_the_system_flat_view_only() -> None:
    mapped = parse_guest_mappings(MTREE)
    assert mapped == {"ram0": [(0, 0)], "pc.bios": [(0xE0000, 0x20000), (0xFFFC0000, 0)]}


def test_compare_blocks() -> None:
    a = bytes(3 * 4096 + 100)
    b = bytearray(a)
    b[4096 + 7] = 1
    b[3 * 4096 + 99] = 2  # the partial last page counts too
    v = compare_blocks("pc.rom", a, bytes(b), [0xC0000], "read from each QEMU process")
    assert (v.compared, v.pages_differing, v.first_differing_offsets) == (True, 2, [4096, 12288])
    short = compare_blocks("pc.rom", a, a[:-1], [], "x")
    assert not short.compared and "sizes differ" in short.reason


def test_guest_ram_line_carries_the_ram_comparison() -> None:
    """A RAM mismatch must not read "RAMBlock ram0: identical" below it."""
    import numpy as np

    from qmpctl.verify.compare import MemoryVerdict
    from qmpctl.verify.ramblocks import guest_ram_verdict

    memory = MemoryVerdict(bytes_compared=0, pages_total=16, pages_compared=16,
                           pages_excluded=0, pages_differing=2, mismatches=[], exclusions=[],
                           seconds=0.0, gib_per_s=0.0)
    memory._differing = np.array([3, 9], np.intp)
    v = guest_ram_verdict("ram0", 16 * 4096, [0], memory)
    assert (v.compared, v.pages_differing, v.first_differing_offsets) == (True, 2,
                                                                         [0x3000, 0x9000])
    assert guest_ram_verdict("ram0", 16 * 4096, [0], None).pages_differing == 0
