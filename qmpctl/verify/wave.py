"""The "wave" workload's invariant, checked from a RAM image alone.

The guest adds `delta` to one byte per `stride` block, low to high, pass after
pass. At any instant the blocks below the write point hold v+delta and the rest
hold v (mod 256): reading the bytes in address order, every byte equals its
predecessor except at most one edge where it steps down by `delta`. A page
lost in migration holds an older value and breaks that shape.

Several writers (x86, one per vCPU) split the wave into slices, each with
its own write point: the invariant then holds per slice, and neighbouring
slices may be any number of passes apart (`wave_slices`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..core.units import PAGE_SIZE
from .ramimage import RamLayout, Sampled

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:
    from ..core.lazy import numpy as np

# The x86 guest's limit: its 1 GiB window above 4 GiB must always advance.
MAX_STRIDE = 256 << 20


@dataclass(frozen=True)
class WaveParams:
    """The wave's range and step. [hole_start, hole_end) (both 0: none) is left
    out of [start, end): a wave covering RAM on both sides of x86's PCI hole
    (and of the firmware's tables just below it) runs over the two parts in
    address order, so the invariant reads across them unchanged."""

    start: int  # guest-physical, inclusive
    end: int  # guest-physical, exclusive
    stride: int = 4096
    delta: int = 1
    offset: int = 0  # byte within each stride block
    hole_start: int = 0
    hole_end: int = 0

    @property
    def has_hole(self) -> bool:
        return self.hole_end > self.hole_start

    @property
    def parts(self) -> tuple[tuple[int, int], ...]:
        """The guest-physical ranges the wave writes, in the order it writes them."""
        if not self.has_hole:
            return ((self.start, self.end),)
        return ((self.start, self.hole_start), (self.hole_end, self.end))

    @property
    def blocks(self) -> int:
        return sum((end - start) // self.stride for start, end in self.parts)

    @property
    def bytes_covered(self) -> int:
        return sum(end - start for start, end in self.parts)

    @property
    def dirty_bytes(self) -> int:
        """Bytes of the 4 KiB pages one pass dirties."""
        return min(self.blocks, self.bytes_covered // PAGE_SIZE) * PAGE_SIZE

    def block_gpa(self, index: int) -> int:
        """Guest-physical start of the `index`-th block the wave writes."""
        for start, end in self.parts:
            n = (end - start) // self.stride
            if index < n:
                return start + index * self.stride
            index -= n
        raise IndexError(f"block {index} is beyond the wave's {self.blocks} blocks")

    def fw_cfg_string(self) -> str:
        hole = (f" hole_start=0x{self.hole_start:x} hole_end=0x{self.hole_end:x}"
                if self.has_hole else "")
        return (f"start=0x{self.start:x} end=0x{self.end:x} stride=0x{self.stride:x} "
                f"delta=0x{self.delta:x} offset=0x{self.offset:x}{hole}")

    def problems(self) -> list[str]:
        """Why these parameters are unusable (empty when they are fine)."""
        out = []
        if self.stride <= 0 or self.stride % 8:
            out.append(f"stride {self.stride} must be a positive multiple of 8")
        elif self.stride > MAX_STRIDE:
            out.append(f"stride {self.stride} must be at most {MAX_STRIDE} (256 MiB)")
        elif self.start % self.stride or self.end % self.stride:
            out.append("wave start and end must be multiples of the stride")
        if self.end <= self.start:
            out.append("wave end must be above its start")
        if not 1 <= self.delta <= 255:
            out.append(f"delta {self.delta} must be in 1..255")
        if not 0 <= self.offset < self.stride:
            out.append(f"offset {self.offset} must be inside the stride")
        if self.has_hole or self.hole_start or self.hole_end:
            align = max(self.stride, PAGE_SIZE) if self.stride > 0 else PAGE_SIZE
            if not self.start < self.hole_start < self.hole_end < self.end:
                out.append(f"wave hole 0x{self.hole_start:x}-0x{self.hole_end:x} must lie "
                           f"strictly inside the wave 0x{self.start:x}-0x{self.end:x}")
            elif self.hole_start % align or self.hole_end % align:
                out.append(f"wave hole 0x{self.hole_start:x}-0x{self.hole_end:x} must be "
                           f"aligned to pages and to the stride")
        return out


def wave_slices(blocks: int, writers: int) -> list[tuple[int, int]]:
    """[first, end) block indices of each writer's slice, in wave order (pure).

    Whole blocks in address order, floor(blocks/writers) each, the last
    blocks % writers slices one block longer: guestload/x86/wave.c's
    compute_slices makes the same split, so both sides agree on who writes
    which counter."""
    if writers < 1 or blocks < writers:
        raise ValueError(f"{blocks} blocks cannot be split among {writers} writers")
    q, r = divmod(blocks, writers)
    out, first = [], 0
    for i in range(writers):
        n = q + (1 if i >= writers - r else 0)
        out.append((first, first + n))
        first += n
    return out


def slice_params(params: WaveParams, first: int, end: int) -> WaveParams:
    """The wave restricted to blocks [first, end) (pure); keeps the hole if
    the slice spans it."""
    start = params.block_gpa(first)
    stop = params.block_gpa(end - 1) + params.stride
    spans = params.has_hole and start < params.hole_start and stop > params.hole_end
    return replace(params, start=start, end=stop,
                   hole_start=params.hole_start if spans else 0,
                   hole_end=params.hole_end if spans else 0)


@dataclass(frozen=True)
class SliceCheck:
    """One writer's slice: blocks [first, first + blocks)."""

    first: int
    blocks: int
    value: int  # its first block's
    edges: int
    bad: int | None  # index (in the whole wave) of its first offending block
    detail: str


@dataclass(frozen=True)
class WaveCheck:
    ok: bool
    blocks: int
    edges: int  # positions where the value changes, summed over slices
    value: int  # value of the first block (v or v+delta)
    first_bad_gpa: int | None
    detail: str
    slices: tuple[SliceCheck, ...] = ()


def check_samples(samples: npt.NDArray[np.uint8], delta: int) -> tuple[int, int | None, str]:
    """(edges, index of the first offending block or None, detail) — pure."""
    scan = scan_samples([samples], delta)
    return scan.edges, scan.bad, scan.detail


@dataclass(frozen=True)
class WaveScan:
    blocks: int
    value: int  # the first block's
    edges: int
    bad: int | None  # index of the first offending block
    detail: str


def scan_samples(chunks: Iterable[npt.NDArray[np.uint8]], delta: int) -> WaveScan:
    """The invariant over the counters given in consecutive chunks (pure): a
    chunk at a time, carrying its last byte into the next, so an 8 GiB wave
    with a small stride never needs all its counters in memory at once."""
    blocks, value, prev = 0, 0, None
    changes: list[int] = []  # the first two, as block indices
    n_changes = 0
    bad: tuple[int, int, int] | None = None  # (block, its value, the one before)
    for chunk in chunks:
        if not len(chunk):
            continue
        if prev is None:
            value = int(chunk[0])
            seq, first = chunk, 1
        else:
            seq, first = np.concatenate((np.array([prev], np.uint8), chunk)), blocks
        steps = (seq[:-1].astype(np.int16) - seq[1:].astype(np.int16)) % 256
        where = np.flatnonzero(steps)
        n_changes += len(where)
        if len(changes) < 2:
            changes += [first + int(i) for i in where[:2 - len(changes)]]
        if bad is None and (wrong := where[steps[where] != delta]).size:
            i = int(wrong[0])
            bad = (first + i, int(seq[i + 1]), int(seq[i]))
        blocks += len(chunk)
        prev = chunk[-1]
    if bad is not None:
        i, v, before = bad
        return WaveScan(blocks, value, n_changes, i, (
            f"block {i} holds 0x{v:02x} after 0x{before:02x}: "
            f"not equal and not one step of {delta} behind"))
    if n_changes > 1:
        i = changes[1]
        return WaveScan(blocks, value, n_changes, i,
                        f"{n_changes} edges, at most one allowed (second at block {i})")
    return WaveScan(blocks, value, n_changes, None,
                    "one edge" if n_changes else "no edge (all blocks equal)")


def counter_offsets(layout: RamLayout, params: WaveParams) -> list[tuple[int, int]]:
    """(file offset of the first counter, count) per stretch of RAM the wave
    covers, in the wave's order; counters are `stride` apart in each (pure)."""
    out = []
    for start, end in params.parts:
        if not layout.covers(start, end):
            raise ValueError(f"wave part 0x{start:x}-0x{end:x} is not all RAM "
                             f"({layout.describe()})")
        first, n = start + params.offset, (end - start) // params.stride
        for lo, hi, offset in layout.pieces(start, end):
            k_lo = max(0, -(-(lo - first) // params.stride))
            k_hi = min(n, -(-(hi - first) // params.stride))
            if k_hi > k_lo:
                out.append((offset + first + k_lo * params.stride - lo, k_hi - k_lo))
    return out


SCAN_BLOCKS = 1 << 22  # counters checked at once: 4 MiB, whatever the RAM size


def sample_chunks(image: Sampled, layout: RamLayout, params: WaveParams,
                  chunk: int = SCAN_BLOCKS) -> Iterator[npt.NDArray[np.uint8]]:
    """Every counter byte, in the order the wave writes them, at most `chunk`
    at a time (read through the mapping: never a copy of guest RAM)."""
    for offset, n in counter_offsets(layout, params):
        for k in range(0, n, chunk):
            m = min(chunk, n - k)
            lo = offset + k * params.stride
            yield image.samples(lo, lo + (m - 1) * params.stride + 1, params.stride)


def wave_samples(image: Sampled, layout: RamLayout, params: WaveParams) -> npt.NDArray[np.uint8]:
    """Every counter byte at once (tests and small waves)."""
    parts = list(sample_chunks(image, layout, params))
    return np.concatenate(parts) if parts else np.empty(0, np.uint8)


def check_slices(scans: list[tuple[int, WaveScan]]) -> tuple[SliceCheck, ...]:
    """(first block, scan of its slice) per slice -> SliceChecks (pure)."""
    return tuple(SliceCheck(first, s.blocks, s.value, s.edges,
                            None if s.bad is None else first + s.bad, s.detail)
                 for first, s in scans)


def summarize(params: WaveParams, slices: tuple[SliceCheck, ...]) -> WaveCheck:
    """The wave's verdict from its slices' (pure): one slice reads as before."""
    bad = [s for s in slices if s.bad is not None]
    first_bad = None if not bad else bad[0].bad
    if len(slices) == 1:
        detail = slices[0].detail
    elif bad:
        s = bad[0]
        detail = (f"slice {slices.index(s)} of {len(slices)} (blocks {s.first}-"
                  f"{s.first + s.blocks - 1}): {s.detail}")
    else:
        detail = (f"{len(slices)} slices, at most one edge each; edges "
                  f"{','.join(str(s.edges) for s in slices)}, values "
                  f"{','.join(f'0x{s.value:02x}' for s in slices)}")
    return WaveCheck(
        ok=not bad, blocks=sum(s.blocks for s in slices),
        edges=sum(s.edges for s in slices), value=slices[0].value,
        first_bad_gpa=None if first_bad is None else params.block_gpa(first_bad),
        detail=detail, slices=slices)


def check_wave(image: Sampled, layout: RamLayout, params: WaveParams,
               writers: int = 1) -> WaveCheck:
    """The invariant in each of the `writers` slices (one edge per slice)."""
    scans = []
    for first, end in wave_slices(params.blocks, writers):
        part = slice_params(params, first, end)
        scans.append((first, scan_samples(sample_chunks(image, layout, part), params.delta)))
    return summarize(params, check_slices(scans))
