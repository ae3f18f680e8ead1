"""Guest RAM as the controller sees it: the memory-backend-file of one QEMU,
mapped read-only, and the map from file offsets to guest-physical addresses.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from pydantic import ConfigDict

from ..core.model import Model
from ..core.units import PAGE_SIZE
from ..qemu.memmap import RamSegment

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:
    from ..core.lazy import numpy as np


def flip_byte(ram: Path, offset: int, xor: int = 0x5A) -> tuple[int, int]:
    """XOR the byte at `offset` of a RAM file in place; (old, new). What a
    corruption fault or a test hook does to prove a difference is found."""
    with ram.open("r+b") as f:
        f.seek(offset)
        old = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([old ^ xor]))
    return old, old ^ xor


class Region(Model):
    """A named guest-physical range [start, end): labels pages, names exclusions."""

    model_config = ConfigDict(frozen=True)

    name: str
    start: int
    end: int

    def __init__(self, name: str, start: int, end: int) -> None:
        super().__init__(name=name, start=start, end=end)

    def __contains__(self, gpa: int) -> bool:
        return self.start <= gpa < self.end


@dataclass(frozen=True)
class RamLayout:
    """Where the RAM file sits in guest-physical space, and what lives where.

    The file is one or more `RamSegment`s (`qemu.memmap.ram_segments`): x86
    `pc` RAM above lowmem (3 GiB once RAM exceeds 3.5 GiB) is mapped from
    4 GiB, so past that point file offset != guest-physical address; arm64
    `virt` RAM is one segment at 1 GiB. Every map between the two goes
    through `gpa`/`gpas`/`offset`/`pieces`, never through arithmetic on a base.
    """

    segments: tuple[RamSegment, ...]
    regions: tuple[Region, ...] = ()

    def __post_init__(self) -> None:
        at = 0
        for i, seg in enumerate(self.segments):
            if seg.offset != at or seg.size <= 0:
                raise ValueError(f"RAM segments must tile the file from offset 0: {seg}")
            if i and seg.gpa < self.segments[i - 1].gpa_end:
                raise ValueError(f"RAM segments overlap or are out of order: {seg}")
            at = seg.offset_end

    @classmethod
    def linear(cls, base_gpa: int, size: int, regions: tuple[Region, ...] = ()) -> RamLayout:
        """One segment: the whole file at `base_gpa`."""
        return cls((RamSegment(base_gpa, 0, size),), regions)

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segments)

    @property
    def start(self) -> int:
        """Lowest guest-physical address of RAM."""
        return self.segments[0].gpa

    @property
    def end(self) -> int:
        """End (exclusive) of the highest RAM segment."""
        return self.segments[-1].gpa_end

    def describe(self) -> str:
        """'0x0-0xc0000000, 0x100000000-0x140000000': the RAM ranges, for messages."""
        return ", ".join(f"0x{s.gpa:x}-0x{s.gpa_end:x}" for s in self.segments)

    def _segment_at(self, offset: int) -> RamSegment:
        for seg in self.segments:
            if seg.offset <= offset < seg.offset_end:
                return seg
        raise ValueError(f"offset 0x{offset:x} is outside the RAM file (0x{self.size:x} bytes)")

    def gpa(self, offset: int) -> int:
        """Guest-physical address of the file's byte at `offset`."""
        seg = self._segment_at(offset)
        return seg.gpa + offset - seg.offset

    def gpa_end(self, offset_end: int) -> int:
        """Guest-physical end (exclusive) of a file range ending at `offset_end`:
        the end of the byte before it, so a range ending at a segment's end
        maps to that segment, not to the next one's start."""
        return self.gpa(offset_end - 1) + 1

    def gpas(self, offsets: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """`gpa` of every offset of an array (vectorised; offsets inside the file)."""
        starts = np.array([s.offset for s in self.segments], dtype=np.int64)
        shift = np.array([s.gpa - s.offset for s in self.segments], dtype=np.int64)
        offsets = np.asarray(offsets, dtype=np.int64)
        out: npt.NDArray[np.int64] = offsets + shift[np.searchsorted(starts, offsets,
                                                                     side="right") - 1]
        return out

    def offset(self, gpa: int) -> int:
        """File offset of guest-physical `gpa` (ValueError outside RAM).

        A segment's end address maps to its end offset, so an exclusive range
        end may be mapped as well as its start."""
        for seg in self.segments:
            if seg.gpa <= gpa <= seg.gpa_end:
                return seg.offset + gpa - seg.gpa
        raise ValueError(f"guest-physical 0x{gpa:x} is outside RAM ({self.describe()})")

    def contains(self, gpa: int) -> bool:
        """Whether the byte at guest-physical `gpa` is RAM."""
        return any(seg.gpa <= gpa < seg.gpa_end for seg in self.segments)

    def pieces(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """The RAM inside guest-physical [start, end), in address order, as
        (gpa, gpa_end, file offset) triples; holes are left out (pure)."""
        out = []
        for seg in self.segments:
            lo, hi = max(start, seg.gpa), min(end, seg.gpa_end)
            if lo < hi:
                out.append((lo, hi, seg.offset + lo - seg.gpa))
        return out

    def covers(self, start: int, end: int) -> bool:
        """Whether all of guest-physical [start, end) is RAM."""
        return sum(hi - lo for lo, hi, _ in self.pieces(start, end)) == end - start

    def region_of(self, gpa: int) -> str:
        """The most specific (last listed) region containing `gpa`."""
        for region in reversed(self.regions):
            if gpa in region:
                return region.name
        return "other RAM"

    def with_regions(self, *regions: Region) -> RamLayout:
        return RamLayout(self.segments, self.regions + regions)


class Sampled(Protocol):
    """What guest checks read of an image: strided bytes (local or via the agent)."""

    def samples(self, lo: int, hi: int, step: int) -> npt.NDArray[np.uint8]: ...


class Paged(Protocol):
    """What reads whole pages: an image, or a copy of one taken earlier."""

    def page(self, index: int) -> bytes: ...


@dataclass(frozen=True)
class RamCopy:
    """A RAM image's bytes as they were at one moment."""

    data: npt.NDArray[np.uint8]

    def page(self, index: int) -> bytes:
        return bytes(self.data[index * PAGE_SIZE:(index + 1) * PAGE_SIZE])


class RamImage:
    """A RAM backing file: `fd` for bulk reads, `bytes` a read-only shared
    mapping (no copy) for random access."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.fstat(self.fd).st_size
        self._mmap = mmap.mmap(self.fd, self.size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        self.bytes: npt.NDArray[np.uint8] = np.frombuffer(self._mmap, dtype=np.uint8)

    def samples(self, lo: int, hi: int, step: int) -> npt.NDArray[np.uint8]:
        """One byte every `step` in [lo, hi): a copy of just those bytes."""
        return np.array(self.bytes[lo:hi:step])

    def page(self, index: int) -> bytes:
        return bytes(self.bytes[index * PAGE_SIZE:(index + 1) * PAGE_SIZE])

    def close(self) -> None:
        # numpy views pin the mapping; drop ours first so close() can unmap.
        del self.bytes
        with contextlib.suppress(BufferError):  # a caller still holds a view: GC unmaps
            self._mmap.close()
        os.close(self.fd)

    def __enter__(self) -> RamImage:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
