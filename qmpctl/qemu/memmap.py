"""Where QEMU maps guest RAM: the machine's memory map, as (guest-physical
address, RAM file offset, size) segments of the one RAM backend.

x86 `pc` (i440fx, hw/i386/pc_piix.c): RAM below 4 GiB ends at `lowmem`, the
rest is mapped from 4 GiB up, both as aliases of the same RAMBlock (the
memory-backend-file), so file offset != guest-physical address above lowmem.
`lowmem` is max-ram-below-4g (default 0xe0000000, 3.5 GiB); when RAM does not
fit below it, gigabyte alignment (`gigabyte_align`, every pc-i440fx type
QEMU 7.2 and 10.0 still offer) moves the split down to 0xc0000000 (3 GiB):

    -m 3583M ->  one segment 0-0xdff00000
    -m 3584M ->  0-0xc0000000 (3 GiB) + 0x100000000-0x120000000 (512 MiB)
    -m 8G    ->  0-0xc0000000 (3 GiB) + 0x100000000-0x240000000 (5 GiB)

(`info mtree -f` on QEMU 10.0.2 and 7.2.22, `pc` and `pc-i440fx-7.2` alike:
ram-below-4g / ram-above-4g aliases of ram0.) qmpctl never sets
max-ram-below-4g. arm64 `virt` maps all RAM contiguously from 1 GiB.
"""

from __future__ import annotations

from pydantic import ConfigDict

from ..core.model import Model
from ..core.units import GiB
from ..host.kvm import Arch

PC_MAX_RAM_BELOW_4G = 0xE000_0000  # pc_piix.c's default max-ram-below-4g (3.5 GiB)
PC_GIGABYTE_LOWMEM = 0xC000_0000  # lowmem once RAM does not fit below it (gigabyte_align)
ABOVE_4G = 4 * GiB  # where pc maps the RAM above lowmem
VIRT_RAM_BASE = 1 * GiB  # arm64 virt: RAM from here, one piece


class RamSegment(Model):
    """A piece of guest RAM: guest-physical [gpa, gpa+size) is the RAM file's
    [offset, offset+size)."""

    model_config = ConfigDict(frozen=True)

    gpa: int
    offset: int
    size: int

    def __init__(self, gpa: int, offset: int, size: int) -> None:
        super().__init__(gpa=gpa, offset=offset, size=size)

    @property
    def gpa_end(self) -> int:
        return self.gpa + self.size

    @property
    def offset_end(self) -> int:
        return self.offset + self.size


def pc_lowmem(ram_size: int) -> int:
    """Bytes of RAM the `pc` machine maps below 4 GiB (pc_piix.c, pure)."""
    lowmem = PC_MAX_RAM_BELOW_4G
    if ram_size >= PC_MAX_RAM_BELOW_4G:
        lowmem = min(lowmem, PC_GIGABYTE_LOWMEM)
    return min(ram_size, lowmem)


def ram_segments(arch: Arch, ram_size: int) -> tuple[RamSegment, ...]:
    """Where the machine qmpctl runs for `arch` maps `ram_size` bytes of RAM (pure)."""
    if arch == "aarch64":
        return (RamSegment(VIRT_RAM_BASE, 0, ram_size),)
    low = pc_lowmem(ram_size)
    segments = [RamSegment(0, 0, low)]
    if ram_size > low:
        segments.append(RamSegment(ABOVE_4G, low, ram_size - low))
    return tuple(segments)
