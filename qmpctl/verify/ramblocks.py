"""Every RAMBlock QEMU migrates, not only guest RAM: x86 firmware (pc.bios,
pc.rom), arm64 flash, the ACPI blobs. QEMU lists them in `info ramblock`
(name, used length, host address) and maps some into guest-physical space
(`info mtree -f`); both texts are parsed here (pure), and a block's two
copies are compared page by page.

QEMU 7.2's `info ramblock` has no HVA/RO columns: its blocks are listed, but
cannot be read from its process, and the verdict says so for that side."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from ..core.model import Model
from ..core.units import PAGE_SIZE
from ..qemu.machine import QemuMachine
from .compare import MemoryVerdict

if TYPE_CHECKING:
    import numpy as np
else:
    from ..core.lazy import numpy as np

_BLOCK_RE = re.compile(
    r"^\s*(?P<name>\S+)\s+\d+ \w?i?B\s+0x[0-9a-f]+\s+0x(?P<used>[0-9a-f]+)\s+0x[0-9a-f]+"
    r"(?:\s+0x(?P<hva>[0-9a-f]+)\s+(?P<ro>ro|rw))?\s*$")
_FLAT_RE = re.compile(
    r"^\s*(?P<start>[0-9a-f]+)-(?P<end>[0-9a-f]+) \(prio -?\d+, (?:ram|rom|romd)\): "
    r"(?P<name>\S+)(?: @(?P<off>[0-9a-f]+))?")


@dataclass(frozen=True)
class RamBlock:
    """One line of `info ramblock`."""

    name: str
    used: int  # bytes QEMU migrates
    hva: int | None  # address in the QEMU process; None: not listed (QEMU 7.2)
    read_only: bool | None


def parse_ramblocks(text: str) -> list[RamBlock]:
    """`info ramblock` -> blocks (pure)."""
    return [RamBlock(m["name"], int(m["used"], 16), int(m["hva"], 16) if m["hva"] else None,
                     m["ro"] == "ro" if m["ro"] else None)
            for line in text.splitlines() if (m := _BLOCK_RE.match(line))]


NO_HVA = ("`info ramblock` of the {side} QEMU lists no host addresses (QEMU 7.2 has no HVA "
          "column), so the block cannot be read from that process")


def parse_guest_mappings(mtree: str) -> dict[str, list[tuple[int, int]]]:
    """`info mtree -f` -> block name -> [(gpa, block offset)] in the system
    address space's flat view (pure). Aliases show as `name @offset`."""
    out: dict[str, list[tuple[int, int]]] = {}
    in_system = False
    for line in mtree.splitlines():
        if line.startswith("FlatView"):
            in_system = False
        elif line.strip() == 'AS "memory", root: system':
            in_system = True
        elif in_system and (m := _FLAT_RE.match(line)):
            out.setdefault(m["name"], []).append((int(m["start"], 16), int(m["off"] or "0", 16)))
    return out


class RamBlockVerdict(Model):
    """One migrated RAMBlock, compared source vs destination, or why not."""

    name: str
    size: int
    gpa: list[int] = Field(default_factory=list,
                           description="guest-physical addresses where it is mapped")
    compared: bool
    reason: str = Field("", description="why it was not compared, or how it was")
    pages_differing: int = 0
    first_differing_offsets: list[int] = Field(default_factory=list)


def compare_blocks(name: str, src: bytes, dst: bytes, gpa: list[int], how: str,
                   max_reported: int = 8) -> RamBlockVerdict:
    """Two copies of one block, page by page (pure)."""
    if len(src) != len(dst):
        return RamBlockVerdict(name=name, size=len(src), gpa=gpa, compared=False,
                               reason=f"sizes differ: source {len(src)}, destination "
                                      f"{len(dst)} bytes")
    a = np.frombuffer(src, np.uint8)
    b = np.frombuffer(dst, np.uint8)
    pad = -len(a) % PAGE_SIZE
    if pad:
        a, b = np.pad(a, (0, pad)), np.pad(b, (0, pad))
    differ = np.flatnonzero((a.reshape(-1, PAGE_SIZE) != b.reshape(-1, PAGE_SIZE)).any(axis=1))
    return RamBlockVerdict(name=name, size=len(src), gpa=gpa, compared=True, reason=how,
                           pages_differing=len(differ),
                           first_differing_offsets=[int(p) * PAGE_SIZE
                                                    for p in differ[:max_reported]])


REMOTE = ("the destination is on another host (--topology netns, --dst-host): qmpctl agent "
          "hashes its guest RAM there; this block is not read across hosts")


def guest_ram_verdict(name: str, size: int, gpa: list[int], ram: MemoryVerdict | None,
                      max_reported: int = 8) -> RamBlockVerdict:
    """Guest RAM's line carries the RAM comparison's own result (its file is
    the block, page for page), so the two can never disagree (pure)."""
    differing = ram.differing if ram is not None else np.empty(0, np.intp)
    return RamBlockVerdict(name=name, size=size, gpa=gpa, compared=True,
                           reason="guest RAM: compared page by page through its "
                                  "memory-backend-file (see memory)",
                           pages_differing=len(differing),
                           first_differing_offsets=[int(p) * PAGE_SIZE
                                                    for p in differing[:max_reported]])


async def ramblock_verdicts(src: QemuMachine, dst: QemuMachine, ram_block: str,
                            dst_remote: bool = False,
                            ram: MemoryVerdict | None = None) -> list[RamBlockVerdict]:
    """Every RAMBlock of both (stopped) sides: guest RAM (`ram_block`) is
    compared through its file elsewhere (`ram`: that comparison); every other
    block is read from each QEMU process and compared here; anything that
    cannot be is listed with why."""
    src_blocks = {b.name: b for b in parse_ramblocks(await src.hmp("info ramblock"))}
    dst_blocks = {b.name: b for b in parse_ramblocks(await dst.hmp("info ramblock"))}
    mapped = parse_guest_mappings(await src.hmp("info mtree -f"))
    out = []
    for name in sorted(src_blocks.keys() | dst_blocks.keys(),
                       key=lambda n: (n != ram_block, n)):
        s, d = src_blocks.get(name), dst_blocks.get(name)
        gpa = [g for g, _ in mapped.get(name, [])]
        if s is None or d is None:
            present = s or d
            out.append(RamBlockVerdict(name=name, size=present.used if present else 0,
                                       gpa=gpa, compared=False,
                                       reason=f"the {'source' if s is None else 'destination'} "
                                              "has no such block"))
        elif name == ram_block:
            out.append(guest_ram_verdict(name, s.used, gpa, ram))
        elif dst_remote:
            out.append(RamBlockVerdict(name=name, size=s.used, gpa=gpa, compared=False,
                                       reason=REMOTE))
        elif s.hva is None or d.hva is None:
            out.append(RamBlockVerdict(
                name=name, size=s.used, gpa=gpa, compared=False,
                reason=NO_HVA.format(side=" and ".join(
                    side for side, b in (("source", s), ("destination", d)) if b.hva is None))))
        else:
            try:
                a = src.read_host_memory(s.hva, s.used)
                b = dst.read_host_memory(d.hva, d.used)
            except OSError as exc:
                out.append(RamBlockVerdict(name=name, size=s.used, gpa=gpa, compared=False,
                                           reason=f"cannot read it from QEMU: {exc}"))
                continue
            out.append(compare_blocks(name, a, b, gpa, "read from each QEMU process"))
    return out
