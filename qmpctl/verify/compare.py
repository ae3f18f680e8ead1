"""Page-by-page comparison of two RAM images at close to memory bandwidth.

Work is split into CHUNK_BYTES pieces over one thread per CPU. Each thread
runs libc's memcmp (which releases the GIL) over BLOCK_BYTES blocks straight
through the images' mappings; only a block that differs is split into pages
to find which ones. Every page is compared unless the caller excluded it
explicitly, and exclusions are counted in the result. Method "read" (preadv
both files into per-thread buffers that stay in cache, then memcmp) is the
other way; which is faster depends on the host (see below), so `qmpctl
migrate` measures them (`verify.probe`) rather than trusting METHOD, the
default of direct callers.

Measured on the 2-core build machine (Linux 6.18), 2 GiB images, best of 5,
`nox -s bench`, 2026-11-30 (memcmp of two in-memory buffers on both cores,
themselves on huge pages: 15.8-16.0 GiB/s):

* /dev/shm, 4 KiB pages: through the mappings 7.3-7.7 GiB/s, reading
  5.6-5.7 (the read floor, both files read and nothing compared, 6.2-6.6).
  Sessions before this one measured the opposite order here (mapping 3.7-4.6,
  reading 5.2-6.0), hence the bench keeps both.
* a tmpfs mounted huge=always (`--ram-dir`), 2 MiB pages: through the
  mappings 12.2-14.4 GiB/s, 0.76-0.91 of memcmp.

A fresh 2-core machine measured the opposite order on /dev/shm (map 5.99,
read 12.16 GiB/s): no constant is right on both. The build machine again on
2026-12-02: map 6.78, read 4.33 (memcmp 12.74), map on huge pages 11.62.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import Field, PrivateAttr, computed_field

from ..core.model import Model
from ..core.units import PAGE_SIZE
from .classify import MismatchClasses
from .ramimage import RamImage, RamLayout, Region
from .ranges import DiffLocation

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:
    from ..core.lazy import numpy as np

T = TypeVar("T")

CHUNK_BYTES = 64 << 20  # work unit handed to a thread
BLOCK_BYTES = 1 << 20  # read and compared at once; both buffers stay in cache
MAX_REPORTED = 16
ByteMethod = Literal["read", "map"]
Method = Literal["map", "read", "hash"]
METHOD: ByteMethod = "map"  # direct callers' default; qmpctl migrate probes instead
HEX_WINDOW = 16


def worker_count() -> int:
    """Threads to use by default: every CPU this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


class PageMismatch(Model):
    """One differing page, with enough context to start debugging."""

    page: int
    offset: int
    gpa: int
    region: str
    differing_bytes: int
    first_diff: int = Field(description="byte offset within the page")
    src_hex: str = Field(description="16 bytes around first_diff, source side")
    dst_hex: str


class ExplainedPages(Model):
    """Differing pages the platform itself explains: named with the proof that
    makes them safe, never counted lost, never hidden."""

    cause: str = Field(description="short name, e.g. lpi-pending-consumed")
    why: str
    proof: str
    pages: list[int] = Field(description="page indices in the RAM image")
    details: list[str] = Field(description="one line per page: where, and what differs")


class MethodChoice(Model):
    """Which compare method ran and why: a probe's figures, not a constant."""

    method: Method
    why: Literal["probed", "cached", "forced", "verify-hash"] = Field(
        description="probed: measured on this run's RAM files now; cached: an earlier "
                    "probe on this host, boot, kernel and RAM file system; forced: "
                    "--compare-method; verify-hash: --verify hash (or a remote "
                    "destination) hashes each side where it lives")
    probed_at: str | None = Field(None, description="UTC time of the probe used (ISO 8601)")
    figures: dict[str, float] = Field(
        default_factory=dict, description="GiB/s of image each candidate reached in the probe")
    probe_mib: int | None = Field(None, description="MiB of each image the probe compared")
    probe_s: float | None = Field(None, description="seconds the probe took (0 when cached)")
    detail: str = Field("", description="the rule applied, in words")


class MemoryVerdict(Model):
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
    method: Literal["read", "map", "hash"] | None = Field(
        None, description="map: memcmp through the RAM files' mappings (the default); "
                          "read: both files copied block by block into cache-sized buffers, "
                          "then memcmp'd; hash: xxh3-64 per page on each side, digests "
                          "compared (see digest_proof)")
    choice: MethodChoice | None = Field(
        None, description="why this method ran: probed, cached probe, forced, or --verify hash")
    digest_proof: str | None = Field(
        None, description="method hash: what a digest match proves, and how pages whose "
                          "digests differ were described")
    ram_page_kib: int | None = Field(
        None, description="the page size the kernel backs the RAM files with (st_blksize): "
                          "4 on a plain tmpfs, 2048 on one mounted huge=always")
    explained: list[ExplainedPages] = Field(
        default_factory=list, description="differing pages the platform explains (not in "
                                          "pages_differing, never counted lost)")
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
        return sum(int(((self._differing >= lo) & (self._differing < hi)).sum())
                   for lo, hi in page_spans(Region("", start, end), layout))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pages_explained(self) -> int:
        return sum(len(e.pages) for e in self.explained)

    def explain(self, item: ExplainedPages) -> None:
        """Move `item.pages` from the differing pages to the explained ones."""
        drop = np.isin(self._differing, item.pages)
        self._differing = self._differing[~drop]
        self.pages_differing -= int(drop.sum())
        pages = set(item.pages)
        self.mismatches = [m for m in self.mismatches if m.page not in pages]
        self.explained.append(item)

    def explained_in(self, layout: RamLayout, start: int, end: int) -> int:
        """How many pages overlapping guest-physical [start, end) differ as explained."""
        pages = np.array([p for e in self.explained for p in e.pages], np.intp)
        return sum(int(((pages >= lo) & (pages < hi)).sum())
                   for lo, hi in page_spans(Region("", start, end), layout))

    def excluded_in(self, layout: RamLayout, start: int, end: int) -> int:
        """How many pages overlapping guest-physical [start, end) were excluded."""
        return sum(int(self._excluded[lo:hi].sum())
                   for lo, hi in page_spans(Region("", start, end), layout))

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


class BlockBuffer:
    """A reusable read buffer of `size` bytes with its memoryview and address,
    so the per-block loop makes no Python objects beyond the calls."""

    def __init__(self, size: int) -> None:
        self.array = np.empty(size, dtype=np.uint8)
        self.view = memoryview(self.array)  # type: ignore[arg-type]
        self.address: int = self.array.ctypes.data

    def read(self, fd: int, offset: int, n: int) -> npt.NDArray[np.uint8]:
        """Fill the first `n` bytes from `fd` at `offset` (a short read is an error)."""
        got = os.preadv(fd, [self.view[:n]], offset)
        while got < n:  # tmpfs reads are whole; anything else may return less
            more = os.preadv(fd, [self.view[got:n]], offset + got)
            if more <= 0:
                raise OSError(f"short read at offset {offset + got} of fd {fd}")
            got += more
        return self.array[:n]


class _Buffers(threading.local):
    """Per worker thread: two block buffers, sized at first use."""

    def get(self, size: int) -> tuple[BlockBuffer, BlockBuffer]:
        pair: tuple[BlockBuffer, BlockBuffer] | None = getattr(self, "pair", None)
        if pair is None or len(pair[0].array) != size:
            pair = self.pair = (BlockBuffer(size), BlockBuffer(size))
        return pair


_buffers = _Buffers()


def _read_chunk_differs(src: RamImage, dst: RamImage, start: int,
                        end: int) -> npt.NDArray[np.intp]:
    """Both files read block by block into this thread's cache-resident buffers."""
    block = BLOCK_BYTES
    a, b = _buffers.get(block)
    found = []
    for off in range(start, end, block):
        n = min(block, end - off)
        a.read(src.fd, off, n)
        b.read(dst.fd, off, n)
        if _memcmp(a.address, b.address, n):
            found.append(differing_pages(a.array[:n], b.array[:n]) + off // PAGE_SIZE)
    return np.concatenate(found) if found else np.empty(0, dtype=np.intp)


def _mapped_chunk_differs(src: RamImage, dst: RamImage, start: int,
                          end: int) -> npt.NDArray[np.intp]:
    """Both images compared in place through their mappings (no copy)."""
    block = BLOCK_BYTES
    pa, pb = src.bytes.ctypes.data, dst.bytes.ctypes.data
    found = []
    for off in range(start, end, block):
        n = min(block, end - off)
        if _memcmp(pa + off, pb + off, n):
            found.append(differing_pages(src.bytes[off:off + n], dst.bytes[off:off + n])
                         + off // PAGE_SIZE)
    return np.concatenate(found) if found else np.empty(0, dtype=np.intp)


def map_chunks(size: int, threads: int | None,
               work: Callable[[int, int], T]) -> list[T]:
    """`work(start, end)` over CHUNK_BYTES pieces of [0, size) on `threads` threads
    (default: every CPU), results in order."""
    return map_ranges([(s, min(s + CHUNK_BYTES, size)) for s in range(0, size, CHUNK_BYTES)],
                      threads, work)


def map_ranges(bounds: list[tuple[int, int]], threads: int | None,
               work: Callable[[int, int], T]) -> list[T]:
    """`work(start, end)` over the given ranges on `threads` threads, results in order."""
    workers = max(1, min(threads or worker_count(), len(bounds)))
    if workers == 1:
        return [work(s, e) for s, e in bounds]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda se: work(*se), bounds))


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


class Exclusion(Model):
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
    """Why these exclusions cannot apply to `layout` (pure; checked before launch).

    A range may span a hole in guest-physical space (x86's PCI hole) but must
    lie within RAM's bounds and hold some RAM."""
    out = []
    for r in exclusions:
        if r.start < layout.start or r.end > layout.end or not page_spans(r, layout):
            out.append(f"--exclude 0x{r.start:x}-0x{r.end:x}: outside guest RAM "
                       f"{layout.describe()}")
    covered = sum(hi - lo for r in exclusions for lo, hi in page_spans(r, layout))
    if exclusions and not out and covered >= layout.size // PAGE_SIZE:
        out.append("--exclude: the exclusions cover all of guest RAM; nothing would be compared")
    return out


def page_spans(region: Region, layout: RamLayout) -> list[tuple[int, int]]:
    """[first, last) page indices of the RAM file a guest-physical region
    touches, one span per RAM segment it overlaps (pure)."""
    spans = []
    for lo, hi, offset in layout.pieces(region.start, region.end):
        first = offset // PAGE_SIZE
        last = -(-(offset + hi - lo) // PAGE_SIZE)
        spans.append((first, last))
    return spans


def apply_exclusions(found: npt.NDArray[np.intp], pages: int, layout: RamLayout,
                     regions: list[Region]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_],
                                                     list[Exclusion]]:
    """Drop excluded pages from `found`; say what each exclusion covered and hid (pure)."""
    mask = np.zeros(pages, dtype=bool)
    applied = []
    for r in regions:
        spans = page_spans(r, layout)
        hidden = 0
        for lo, hi in spans:
            hidden += int(((found >= lo) & (found < hi)).sum())
            mask[lo:hi] = True
        eff_start = layout.gpa(spans[0][0] * PAGE_SIZE) if spans else r.start
        eff_end = layout.gpa_end(spans[-1][1] * PAGE_SIZE) if spans else r.start
        applied.append(Exclusion(reason=r.name, start=r.start, end=r.end,
                                 effective_start=eff_start, effective_end=eff_end,
                                 pages=sum(hi - lo for lo, hi in spans),
                                 pages_differing_hidden=hidden))
    return found[~mask[found]], mask, applied


def build_verdict(found: npt.NDArray[np.intp], pages: int, layout: RamLayout,
                  exclusions: list[Region], seconds: float,
                  describe: Callable[[int], PageMismatch],
                  max_reported: int = MAX_REPORTED, *,
                  method: Literal["read", "map", "hash"] | None = None,
                  ram_page_kib: int | None = None) -> MemoryVerdict:
    """The verdict on `pages` pages of which `found` differ, exclusions applied and
    counted; `describe(page)` details the first `max_reported` differing pages."""
    found, excluded, applied = apply_exclusions(found, pages, layout, exclusions)
    n_excluded = int(excluded.sum())
    verdict = MemoryVerdict(
        bytes_compared=pages * PAGE_SIZE, pages_total=pages,
        pages_compared=pages - n_excluded, pages_excluded=n_excluded,
        pages_differing=len(found), exclusions=applied,
        mismatches=[describe(int(p)) for p in found[:max_reported]],
        seconds=round(seconds, 4),
        gib_per_s=round(pages * PAGE_SIZE / (1 << 30) / seconds, 3) if seconds > 0 else 0.0,
        method=method, ram_page_kib=ram_page_kib,
    )
    verdict._differing, verdict._excluded = found, excluded
    return verdict


def check_sizes(src: RamImage, dst: RamImage) -> None:
    if src.size != dst.size:
        raise ValueError(f"RAM sizes differ: {src.path} {src.size} vs {dst.path} {dst.size}")
    if src.size % PAGE_SIZE:
        raise ValueError(f"RAM size {src.size} is not a multiple of {PAGE_SIZE}")


def chunk_differs(method: ByteMethod) -> Callable[[RamImage, RamImage, int, int],
                                                  npt.NDArray[np.intp]]:
    """The per-range compare of `method`: differing page indices in [start, end)."""
    return _mapped_chunk_differs if method == "map" else _read_chunk_differs


def compare_images(src: RamImage, dst: RamImage, layout: RamLayout,
                   exclusions: list[Region] | None = None, threads: int | None = None,
                   max_reported: int = MAX_REPORTED,
                   method: ByteMethod | None = None) -> MemoryVerdict:
    """Compare every page of two equally sized RAM images (`threads`: default one per
    CPU; `method`: default METHOD)."""
    check_sizes(src, dst)
    started = time.perf_counter()
    method = method or METHOD
    differs = chunk_differs(method)
    parts = map_chunks(src.size, threads, lambda s, e: differs(src, dst, s, e))
    found = np.concatenate(parts) if parts else np.empty(0, dtype=np.intp)
    seconds = time.perf_counter() - started
    return build_verdict(found, src.size // PAGE_SIZE, layout, list(exclusions or []), seconds,
                         lambda p: describe_page(src.bytes, dst.bytes, p, layout), max_reported,
                         method=method, ram_page_kib=os.fstat(src.fd).st_blksize >> 10)
