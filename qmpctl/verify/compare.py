"""Page-by-page comparison of two RAM images at close to memory bandwidth.

The fast path reads both files in 2 MiB blocks into per-thread buffers that
stay in cache and compares them with libc's memcmp; both calls release the
GIL, so two threads use both cores. Measured here, that ran at ~0.85 of numpy
comparing two in-memory buffers, against ~0.65 for mmap (page-table set-up and
teardown dominate). Only a block that differs is split into pages to find
which ones. Every page is compared unless the caller excluded it explicitly,
and exclusions are counted in the result.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field, PrivateAttr, computed_field

from ..core.units import PAGE_SIZE
from .classify import MismatchClasses
from .ramimage import RamImage, RamLayout, Region
from .ranges import DiffLocation

CHUNK_BYTES = 64 << 20  # work unit handed to a thread
BLOCK_BYTES = 2 << 20  # read and compared at once; small enough to stay in cache
MAX_REPORTED = 16
HEX_WINDOW = 16


class PageMismatch(BaseModel):
    """One differing page, with enough context to start debugging."""

    page: int
    offset: int
    gpa: int
    region: str
    differing_bytes: int
    first_diff: int = Field(description="byte offset within the page")
    src_hex: str = Field(description="16 bytes around first_diff, source side")
    dst_hex: str


class MemoryVerdict(BaseModel):
    """Two RAM images compared page by page; `differing` keeps every page index."""

    bytes_compared: int
    pages_total: int
    pages_compared: int
    pages_excluded: int
    pages_differing: int
    exclusions: list[Exclusion]
    mismatches: list[PageMismatch] = Field(description="the first differing pages")
    seconds: float
    gib_per_s: float
    location: DiffLocation | None = Field(
        None, description="every differing page, tallied by region and merged into GPA ranges")
    classes: MismatchClasses | None = Field(
        None, description="every differing page classified from the workload's encoding")
    explanation: str | None = Field(
        None, description="the stale pages related to the dirty-tracking timeline")
    _differing: npt.NDArray[np.intp] = PrivateAttr(
        default_factory=lambda: np.empty(0, np.intp))
    _excluded: npt.NDArray[np.bool_] = PrivateAttr(
        default_factory=lambda: np.zeros(0, np.bool_))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def identical(self) -> bool:
        return self.pages_differing == 0

    def differing_in(self, layout: RamLayout, start: int, end: int) -> int:
        """How many compared pages overlapping guest-physical [start, end) differ."""
        lo, hi = _page_span(Region("", start, end), layout)
        return int(((self._differing >= lo) & (self._differing < hi)).sum())

    def excluded_in(self, layout: RamLayout, start: int, end: int) -> int:
        """How many pages overlapping guest-physical [start, end) were excluded."""
        lo, hi = _page_span(Region("", start, end), layout)
        return int(self._excluded[lo:hi].sum())

    @property
    def differing(self) -> npt.NDArray[np.intp]:
        """Index of every differing page (not excluded), for the analyses."""
        return self._differing


def differing_pages(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> npt.NDArray[np.intp]:
    """Indices of the PAGE_SIZE pages where `a` and `b` differ (pure).

    Both arrays must have the same length, a multiple of PAGE_SIZE.
    """
    wa = a.view(np.uint64).reshape(-1, PAGE_SIZE // 8)
    wb = b.view(np.uint64).reshape(-1, PAGE_SIZE // 8)
    return np.flatnonzero((wa != wb).any(axis=1))


_memcmp = ctypes.CDLL(None).memcmp
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_memcmp.restype = ctypes.c_int


class _Blocks(threading.local):
    """Two reusable read buffers per worker thread."""

    def __init__(self) -> None:
        self.a = np.empty(BLOCK_BYTES, dtype=np.uint8)
        self.b = np.empty(BLOCK_BYTES, dtype=np.uint8)


_blocks = _Blocks()


def _read_exact(fd: int, buf: npt.NDArray[np.uint8], offset: int) -> None:
    done = 0
    while done < len(buf):
        n = os.preadv(fd, [buf[done:].data], offset + done)
        if n <= 0:
            raise OSError(f"short read at offset {offset + done}")
        done += n


def _chunk_differs(src: RamImage, dst: RamImage, start: int, end: int) -> npt.NDArray[np.intp]:
    found = []
    for off in range(start, end, BLOCK_BYTES):
        n = min(BLOCK_BYTES, end - off)
        a, b = _blocks.a[:n], _blocks.b[:n]
        _read_exact(src.fd, a, off)
        _read_exact(dst.fd, b, off)
        if _memcmp(a.ctypes.data, b.ctypes.data, n):
            found.append(differing_pages(a, b) + off // PAGE_SIZE)
    return np.concatenate(found) if found else np.empty(0, dtype=np.intp)


def describe_page(src: npt.NDArray[np.uint8], dst: npt.NDArray[np.uint8], page: int,
                  layout: RamLayout) -> PageMismatch:
    offset = page * PAGE_SIZE
    ps, pd = src[offset:offset + PAGE_SIZE], dst[offset:offset + PAGE_SIZE]
    diff = np.flatnonzero(ps != pd)
    first = int(diff[0])
    lo = first - first % HEX_WINDOW
    gpa = layout.gpa(offset)
    return PageMismatch(
        page=page, offset=offset, gpa=gpa, region=layout.region_of(gpa),
        differing_bytes=len(diff), first_diff=first,
        src_hex=bytes(ps[lo:lo + HEX_WINDOW]).hex(" "),
        dst_hex=bytes(pd[lo:lo + HEX_WINDOW]).hex(" "),
    )


class Exclusion(BaseModel):
    """A guest-physical range the user left out of the verdict, as asked and as
    applied (whole pages), with the differences it hid."""

    reason: str
    start: int
    end: int
    effective_start: int = Field(description="start rounded down to a page")
    effective_end: int = Field(description="end rounded up to a page")
    pages: int
    pages_differing_hidden: int = Field(0, description="differing pages this range hid")


def exclusion_problems(exclusions: list[Region], layout: RamLayout) -> list[str]:
    """Why these exclusions cannot apply to `layout` (pure; checked before launch)."""
    top = layout.base_gpa + layout.size
    out = []
    for r in exclusions:
        if r.start < layout.base_gpa or r.end > top:
            out.append(f"--exclude 0x{r.start:x}-0x{r.end:x}: outside guest RAM "
                       f"0x{layout.base_gpa:x}-0x{top:x}")
    covered = sum(_page_span(r, layout)[1] - _page_span(r, layout)[0] for r in exclusions
                  if layout.base_gpa <= r.start and r.end <= top)
    if exclusions and not out and covered >= layout.size // PAGE_SIZE:
        out.append("--exclude: the exclusions cover all of guest RAM; nothing would be compared")
    return out


def _page_span(region: Region, layout: RamLayout) -> tuple[int, int]:
    """[first, last) page index a region touches, clipped to RAM."""
    pages = layout.size // PAGE_SIZE
    lo = max(0, layout.offset(max(region.start, layout.base_gpa)) // PAGE_SIZE)
    hi = min(pages, -(-layout.offset(min(region.end, layout.base_gpa + layout.size))
                      // PAGE_SIZE))
    return lo, max(lo, hi)


def apply_exclusions(found: npt.NDArray[np.intp], pages: int, layout: RamLayout,
                     regions: list[Region]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_],
                                                     list[Exclusion]]:
    """Drop excluded pages from `found`; say what each exclusion covered and hid (pure)."""
    mask = np.zeros(pages, dtype=bool)
    applied = []
    for r in regions:
        lo, hi = _page_span(r, layout)
        hidden = int(((found >= lo) & (found < hi)).sum())
        mask[lo:hi] = True
        applied.append(Exclusion(reason=r.name, start=r.start, end=r.end,
                                 effective_start=layout.gpa(lo * PAGE_SIZE),
                                 effective_end=layout.gpa(hi * PAGE_SIZE),
                                 pages=hi - lo, pages_differing_hidden=hidden))
    return found[~mask[found]], mask, applied


def compare_images(src: RamImage, dst: RamImage, layout: RamLayout,
                   exclusions: list[Region] | None = None, threads: int = 2,
                   max_reported: int = MAX_REPORTED) -> MemoryVerdict:
    """Compare every page of two equally sized RAM images."""
    if src.size != dst.size:
        raise ValueError(f"RAM sizes differ: {src.path} {src.size} vs {dst.path} {dst.size}")
    if src.size % PAGE_SIZE:
        raise ValueError(f"RAM size {src.size} is not a multiple of {PAGE_SIZE}")
    pages = src.size // PAGE_SIZE
    started = time.perf_counter()
    bounds = [(s, min(s + CHUNK_BYTES, src.size)) for s in range(0, src.size, CHUNK_BYTES)]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        parts = list(pool.map(lambda se: _chunk_differs(src, dst, *se), bounds))
    found = np.concatenate(parts) if parts else np.empty(0, dtype=np.intp)
    seconds = time.perf_counter() - started
    found, excluded, applied = apply_exclusions(found, pages, layout, list(exclusions or []))
    verdict = MemoryVerdict(
        bytes_compared=src.size, pages_total=pages,
        pages_compared=pages - int(excluded.sum()), pages_excluded=int(excluded.sum()),
        pages_differing=len(found), exclusions=applied,
        mismatches=[describe_page(src.bytes, dst.bytes, int(p), layout)
                    for p in found[:max_reported]],
        seconds=round(seconds, 4),
        gib_per_s=round(src.size / (1 << 30) / seconds, 3) if seconds > 0 else 0.0,
    )
    verdict._differing, verdict._excluded = found, excluded
    return verdict
