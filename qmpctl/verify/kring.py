"""Both sides of the KVM dirty ring, slot by slot (pure).

The kernel's side is its tracepoints `kvm:kvm_dirty_ring_push` (one per
entry, with the ring's free-running dirty and reset indices after the push),
`kvm:kvm_dirty_ring_reset` and `kvm:kvm_dirty_ring_exit`; QEMU's side is its
`kvm_dirty_ring_page` trace (one per harvested entry, with QEMU's own
free-running fetch index). Both index the same ring position, so for every
position QEMU harvested, the GFN the kernel pushed there first must be the one
QEMU read. A push with more than the ring's size in use wrote over an entry
QEMU had not harvested yet; where QEMU then read the newer GFN, the older dirty
page was never reported (docs/findings.md, docs/kernel-ring.md).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import Field

from ..core.model import Model
from ..core.units import PAGE_SIZE

# `record-tgid` puts the process id in parentheses after comm-tid.
_HEAD = r"-(?P<tid>\d+)\s+(?:\(\s*(?P<tgid>\d+|-+)\)\s+)?\[\d+\].*?"
_PUSH = re.compile(_HEAD + r"kvm_dirty_ring_push: ring (?P<ring>\d+): dirty 0x(?P<dirty>[0-9a-f]+)"
                   r" reset 0x(?P<reset>[0-9a-f]+) slot (?P<slot>\d+) offset "
                   r"0x(?P<offset>[0-9a-f]+) \(used (?P<used>\d+)\)")
_RESET = re.compile(_HEAD + r"kvm_dirty_ring_reset: ring (?P<ring>\d+): dirty "
                    r"0x(?P<dirty>[0-9a-f]+) reset 0x(?P<reset>[0-9a-f]+)")
_EXIT = re.compile(_HEAD + r"kvm_dirty_ring_exit: vcpu (?P<ring>-?\d+)")
_PAGE = re.compile(r"kvm_dirty_ring_page vcpu (\d+) fetch (\d+) offset 0x([0-9a-f]+)")
# QEMU's memslots, to turn (slot, offset) into a guest-physical address.
_SLOT = re.compile(r"kvm_set_user_memory AddrSpace#(\d+) Slot#(\d+) flags=0x[0-9a-f]+ "
                   r"gpa=0x([0-9a-f]+) size=0x([0-9a-f]+)")
QEMU_TRACE_EVENTS = ("kvm_dirty_ring_page", "kvm_set_user_memory")
KERNEL_EVENTS = ("kvm_dirty_ring_push", "kvm_dirty_ring_reset", "kvm_dirty_ring_exit")
_U32 = 1 << 32
# KVM_DIRTY_RING_RSVD_ENTRIES: a vCPU is asked to exit once this few entries
# are left; PML (VMX) reserves 512 more, which kvm_pvm has not.
RESERVED = 64


class KernelRingVcpu(Model):
    """One vCPU's ring as the kernel filled it and QEMU emptied it."""

    vcpu: int
    pushed: int = Field(description="entries the kernel pushed onto the ring")
    harvested: int = Field(description="entries QEMU harvested (its kvm_dirty_ring_page)")
    over_full_pushes: int = Field(
        description="pushes that left more than the ring's size in use: each wrote over an "
                    "entry not yet reset")
    soft_limit_pushes: int = Field(
        0, description="pushes onto a ring at or past its soft limit (size - 64 in use: KVM "
                       "should have made the vCPU exit first; without PML's 512 more)")
    most_in_use: int = Field(description="the most entries in use after a push")
    overwritten: int = Field(
        description="positions where QEMU read another GFN than the kernel first pushed "
                    "there: those dirty pages were never reported")
    unharvested: int = Field(
        0, description="positions the kernel pushed and QEMU never read (it lost its place "
                       "in the ring): those dirty pages were never reported either")
    resets: int = Field(description="kvm_dirty_ring_reset events")
    reset_freed: int = Field(description="entries those resets freed")
    empty_resets: int = Field(description="resets that freed nothing")
    full_exits: int = Field(description="KVM_EXIT_DIRTY_RING_FULL exits (kernel's count)")


class KernelRing(Model):
    """`--trace-kernel`: whether the kernel's ring tracepoints were recorded, and what."""

    engaged: bool
    reason: str = Field(description="why it engaged or not")
    ring_size: int = 0
    vcpus: list[KernelRingVcpu] = Field(default_factory=list)
    kernel_events_lost: int = Field(
        0, description="events the kernel's trace buffer overran (figures are then low)")
    overwritten_gpas: list[int] = Field(
        default_factory=list, description="guest-physical addresses of the overwritten "
                                          "(never reported) dirty pages, sorted")
    unharvested_gpas: list[int] = Field(
        default_factory=list, description="guest-physical addresses of the pushed pages QEMU "
                                          "never harvested, sorted")

    @property
    def overwritten(self) -> int:
        return sum(v.overwritten for v in self.vcpus)

    @property
    def unharvested(self) -> int:
        return sum(v.unharvested for v in self.vcpus)

    @property
    def over_full_pushes(self) -> int:
        return sum(v.over_full_pushes for v in self.vcpus)


@dataclass
class _Ring:
    first: dict[int, int] = field(default_factory=dict)  # free-running index -> slot<<48|offset
    pushed: int = 0
    over_full: int = 0
    soft: int = 0
    most: int = 0
    reset_at: int | None = None  # the reset index last seen
    resets: int = 0
    freed: int = 0
    empty: int = 0
    exits: int = 0


_SLOT_SHIFT = 48


def _tgid_ok(m: re.Match[str], tgid: int | None) -> bool:
    return tgid is None or m["tgid"] is None or not m["tgid"].isdigit() or int(m["tgid"]) == tgid


def parse_kernel(lines: Iterable[str], size: int, tgid: int | None = None) -> dict[int, _Ring]:
    """The kernel's pushes, resets and ring-full exits per ring (= vCPU
    index), of process `tgid` only where the lines carry it."""
    rings: dict[int, _Ring] = defaultdict(_Ring)
    for line in lines:
        if (m := _PUSH.search(line)) is not None:
            if not _tgid_ok(m, tgid):
                continue
            r = rings[int(m["ring"])]
            index = (int(m["dirty"], 16) - 1) % _U32  # dirty_index is incremented first
            r.first.setdefault(index, int(m["slot"]) << _SLOT_SHIFT | int(m["offset"], 16))
            used = int(m["used"])
            r.pushed += 1
            r.over_full += used > size
            r.soft += used > size - RESERVED
            r.most = max(r.most, used)
            if r.reset_at is None:
                r.reset_at = int(m["reset"], 16)
        elif (m := _RESET.search(line)) is not None:
            if not _tgid_ok(m, tgid):
                continue
            r = rings[int(m["ring"])]
            reset = int(m["reset"], 16)
            freed = 0 if r.reset_at is None else (reset - r.reset_at) % _U32
            r.resets += 1
            r.freed += freed
            r.empty += freed == 0
            r.reset_at = reset
        elif (m := _EXIT.search(line)) is not None and _tgid_ok(m, tgid):
            rings[int(m["ring"])].exits += 1
    return rings


def parse_qemu(log: str) -> tuple[dict[int, dict[int, int]], dict[int, tuple[int, int]]]:
    """QEMU's harvests (vCPU -> fetch index -> offset) and its memslots
    ((address space << 16 | slot) -> (gpa, size), the last one set)."""
    fetched: dict[int, dict[int, int]] = defaultdict(dict)
    for m in _PAGE.finditer(log):
        fetched[int(m[1])].setdefault(int(m[2]) % _U32, int(m[3], 16))
    slots: dict[int, tuple[int, int]] = {}
    for m in _SLOT.finditer(log):
        gpa, length = int(m[3], 16), int(m[4], 16)
        if length:
            slots[int(m[1]) << 16 | int(m[2])] = (gpa, length)
    return fetched, slots


def analyse(kernel: dict[int, _Ring], fetched: dict[int, dict[int, int]],
            slots: dict[int, tuple[int, int]], size: int, reason: str,
            lost_events: int = 0) -> KernelRing:
    """Set the kernel's pushes against QEMU's harvests, position by position."""
    vcpus: list[KernelRingVcpu] = []
    gpas: set[int | None] = set()
    never: set[int | None] = set()
    mask = (1 << _SLOT_SHIFT) - 1

    def gpa(entry: int) -> int | None:
        base = slots.get(entry >> _SLOT_SHIFT)
        return None if base is None else base[0] + (entry & mask) * PAGE_SIZE

    for ring in sorted(set(kernel) | set(fetched)):
        k, q = kernel.get(ring, _Ring()), fetched.get(ring, {})
        over = 0
        for index, offset in q.items():
            first = k.first.get(index)
            if first is None or first & mask == offset:
                continue
            over += 1
            gpas.add(gpa(first))
        missed = [entry for index, entry in k.first.items() if index not in q]
        never.update(gpa(entry) for entry in missed)
        vcpus.append(KernelRingVcpu(
            vcpu=ring, pushed=k.pushed, harvested=len(q), over_full_pushes=k.over_full,
            soft_limit_pushes=k.soft,
            most_in_use=k.most, overwritten=over, unharvested=len(missed), resets=k.resets,
            reset_freed=k.freed,
            empty_resets=k.empty, full_exits=k.exits))
    return KernelRing(engaged=True, reason=reason, ring_size=size, vcpus=vcpus,
                      kernel_events_lost=lost_events,
                      overwritten_gpas=sorted(g for g in gpas if g is not None),
                      unharvested_gpas=sorted(g for g in never if g is not None))


def summary(kr: KernelRing) -> str:
    """One line per run, e.g. 'kernel ring: vcpu 0: pushed 8388, harvested 4292, ...'."""
    if not kr.engaged:
        return f"kernel ring trace: off ({kr.reason})"
    parts = [f"vcpu {v.vcpu}: pushed {v.pushed}, harvested {v.harvested}, past the soft "
             f"limit {v.soft_limit_pushes}, over-full pushes {v.over_full_pushes} (up to "
             f"{v.most_in_use} in use of {kr.ring_size}), "
             f"overwritten {v.overwritten}, never harvested {v.unharvested}, "
             f"resets {v.resets} freeing {v.reset_freed} "
             f"({v.empty_resets} empty), ring-full exits {v.full_exits}" for v in kr.vcpus]
    lost = (f"; the kernel's trace buffer lost {kr.kernel_events_lost} events"
            if kr.kernel_events_lost else "")
    return "kernel ring: " + ("; ".join(parts) or "no ring events") + lost


def _among(what: str, gpas: list[int], differing: list[int]) -> str:
    among = sorted(set(differing) & set(gpas))
    text = what + (f"; {len(among)} of the {len(differing)} differing pages are among them"
                   if differing else "")
    if among:
        text += " (" + ", ".join(f"0x{g:x}" for g in among[:8]) + (
            ", ..." if len(among) > 8 else "") + ")"
    return text


def explain(kr: KernelRing, differing_gpas: Iterable[int]) -> str | None:
    """The kernel's part in a lost run: how many differing pages are among
    the GFNs it overwrote on a full ring, and among those it pushed and QEMU
    never harvested, e.g. '203 dirty pages were pushed onto a full ring and
    overwritten before QEMU read them; 198 of the 216 differing pages are
    among them (0x1000, ...)'."""
    if not kr.engaged or not (kr.overwritten or kr.unharvested):
        return None
    differing = list(differing_gpas)
    parts = []
    if kr.overwritten:
        parts.append(_among(
            f"{kr.overwritten} dirty {'page was' if kr.overwritten == 1 else 'pages were'} "
            "pushed onto a full ring and overwritten before QEMU read them",
            kr.overwritten_gpas, differing))
    if kr.unharvested:
        parts.append(_among(
            f"{kr.unharvested} pushed {'entry was' if kr.unharvested == 1 else 'entries were'}"
            " never harvested by QEMU", kr.unharvested_gpas, differing))
    return "; ".join(parts)
