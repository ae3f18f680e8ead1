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
from typing import Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from ..core.units import PAGE_SIZE


class Region(BaseModel):
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

    qmpctl keeps x86 guests below the PCI hole (RAM <= 2 GiB) so the file maps
    1:1 from address 0; arm64 `virt` RAM starts at 1 GiB.
    """

    base_gpa: int
    size: int
    regions: tuple[Region, ...] = ()

    def gpa(self, offset: int) -> int:
        return self.base_gpa + offset

    def offset(self, gpa: int) -> int:
        if not self.base_gpa <= gpa <= self.base_gpa + self.size:
            raise ValueError(f"guest-physical 0x{gpa:x} is outside RAM")
        return gpa - self.base_gpa

    def region_of(self, gpa: int) -> str:
        """The most specific (last listed) region containing `gpa`."""
        for region in reversed(self.regions):
            if gpa in region:
                return region.name
        return "other RAM"

    def with_regions(self, *regions: Region) -> RamLayout:
        return RamLayout(self.base_gpa, self.size, self.regions + regions)


class Sampled(Protocol):
    """What guest checks read of an image: strided bytes (local or via the agent)."""

    def samples(self, lo: int, hi: int, step: int) -> npt.NDArray[np.uint8]: ...


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
