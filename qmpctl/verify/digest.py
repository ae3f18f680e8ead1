"""Hashed verification, for a destination on another host: each side reduces
its RAM image to one xxh3-64 digest per 4 KiB page, only the digests (8 bytes
a page: 4 MiB for 2 GiB of RAM) travel, and `compare_digests` gives the same
`MemoryVerdict` as `compare_images`, except that a differing page carries no
bytes (`src_hex`/`dst_hex` say "(digest only)" and show the two digests;
`differing_bytes` and `first_diff` are 0: unknown).

xxh3-64 is not cryptographic: two different pages hash alike with probability
2^-64, so a lost page hides only by chance of that order; a corrupted page
crafted to collide is out of scope (this is a test tool, not an integrity
check against an adversary). `compare_hashed` is the same path for two
images on one host, chosen when the probe finds it fastest: there the pages
whose digests differ are compared byte by byte and described as by memcmp.

Reading is `compare_images`'s: each thread reads BLOCK_BYTES blocks into its
own cache-resident buffer (preadv releases the GIL), then hashes the block's
pages with `map(xxh3_64_intdigest, views)` over memoryviews of that buffer made
once per thread, so hashing a page is one C call and no Python object but its
digest. The hashing itself holds the GIL (about 0.3 us a page here, against
0.1 us for xxh3 on the bytes), so it is serial while the reads run in parallel
beside it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

import xxhash

from ..core.units import PAGE_SIZE
from . import compare
from .compare import (
    MAX_REPORTED,
    BlockBuffer,
    MemoryVerdict,
    PageMismatch,
    build_verdict,
    describe_page,
)
from .ramimage import RamImage, RamLayout, Region

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:
    from ..core.lazy import numpy as np

DIGEST_ONLY = "(digest only)"
_xxh3 = xxhash.xxh3_64_intdigest


class _PageBuffer(threading.local):
    """Per worker thread: a block buffer and one memoryview per page of it."""

    def get(self, size: int) -> tuple[BlockBuffer, list[memoryview]]:
        entry: tuple[BlockBuffer, list[memoryview]] | None = getattr(self, "entry", None)
        if entry is None or len(entry[0].array) != size:
            buf = BlockBuffer(size)
            pages = [buf.view[o:o + PAGE_SIZE] for o in range(0, size, PAGE_SIZE)]
            entry = self.entry = (buf, pages)
        return entry


_page_buffer = _PageBuffer()


def digest_pages(data: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """xxh3-64 (seed 0) of each PAGE_SIZE page of `data` (pure; for tests and small data)."""
    if len(data) % PAGE_SIZE:
        raise ValueError(f"{len(data)} bytes is not a multiple of {PAGE_SIZE}")
    view = memoryview(data)  # type: ignore[arg-type]
    return np.fromiter((_xxh3(view[o:o + PAGE_SIZE]) for o in range(0, len(data), PAGE_SIZE)),
                       dtype=np.uint64, count=len(data) // PAGE_SIZE)


def page_digests(image: RamImage, threads: int | None = None) -> npt.NDArray[np.uint64]:
    """xxh3-64 of every 4 KiB page of `image`, in page order (`threads`: default one per CPU)."""
    if image.size % PAGE_SIZE:
        raise ValueError(f"RAM size {image.size} is not a multiple of {PAGE_SIZE}")
    out = np.empty(image.size // PAGE_SIZE, dtype=np.uint64)
    compare.map_chunks(image.size, threads, lambda s, e: digest_range(image, out, s, e))
    return out


def digest_range(image: RamImage, out: npt.NDArray[np.uint64], start: int, end: int) -> None:
    """Fill `out[page]` for the pages of [start, end) of `image` (page-aligned)."""
    block = compare.BLOCK_BYTES
    buf, views = _page_buffer.get(block)
    for off in range(start, end, block):
        n = min(block, end - off)
        buf.read(image.fd, off, n)
        first, count = off // PAGE_SIZE, n // PAGE_SIZE
        out[first:first + count] = np.fromiter(map(_xxh3, views[:count]), dtype=np.uint64,
                                               count=count)


DIGEST_BITS = 64


def digest_proof(pages: int, bytes_described: bool) -> str:
    """What a digest match proves for `pages` compared pages, in the report's words."""
    per_page = 2.0 ** -DIGEST_BITS
    then = ("every page whose digests differ was then compared byte by byte and is described "
            "as by memcmp" if bytes_described else
            "a page whose digests differ is described by its two digests only (the "
            "destination's bytes stay on its host)")
    return (f"a digest match proves two pages equal unless two different pages share an "
            f"xxh3-{DIGEST_BITS} digest: probability 2^-{DIGEST_BITS} ({per_page:.1e}) for a "
            f"differing page, at most {pages} x 2^-{DIGEST_BITS} = {pages * per_page:.1e} that "
            f"any of the {pages} pages compared hid a difference (accidental differences; a "
            f"page crafted to collide is out of scope); {then}")


def compare_hashed(src: RamImage, dst: RamImage, layout: RamLayout,
                   exclusions: list[Region] | None = None, threads: int | None = None,
                   max_reported: int = MAX_REPORTED) -> MemoryVerdict:
    """Both images on this host compared by their page digests; each page whose
    digests differ is then compared byte by byte and described as by
    `compare_images` (the hashed path is only a faster way to find them)."""
    compare.check_sizes(src, dst)
    started = time.perf_counter()
    digests = page_digests(src, threads), page_digests(dst, threads)
    found = np.flatnonzero(digests[0] != digests[1])
    seconds = time.perf_counter() - started
    pages = src.size // PAGE_SIZE
    verdict = build_verdict(found, pages, layout, list(exclusions or []), seconds,
                            lambda p: describe_page(src.bytes, dst.bytes, p, layout),
                            max_reported, method="hash",
                            ram_page_kib=os.fstat(src.fd).st_blksize >> 10)
    verdict.digest_proof = digest_proof(verdict.pages_compared, bytes_described=True)
    return verdict


def _digest_mismatch(page: int, src: int, dst: int, layout: RamLayout) -> PageMismatch:
    offset = page * PAGE_SIZE
    gpa = layout.gpa(offset)
    return PageMismatch(page=page, offset=offset, gpa=gpa, region=layout.region_of(gpa),
                        differing_bytes=0, first_diff=0,
                        src_hex=f"{DIGEST_ONLY} xxh3 {src:016x}",
                        dst_hex=f"{DIGEST_ONLY} xxh3 {dst:016x}")


def compare_digests(src_digests: npt.NDArray[np.uint64], dst_digests: npt.NDArray[np.uint64],
                    layout: RamLayout, exclusions: list[Region] | None = None, *,
                    seconds: float | None = None,
                    max_reported: int = MAX_REPORTED) -> MemoryVerdict:
    """The verdict from both sides' `page_digests`, exclusions applied and counted as
    by `compare_images`. `seconds`: what producing the digests took, for the
    report's throughput (default: the time of this comparison alone)."""
    if src_digests.shape != dst_digests.shape or src_digests.ndim != 1:
        raise ValueError(f"digest arrays differ in shape: {src_digests.shape} vs "
                         f"{dst_digests.shape}")
    pages = len(src_digests)
    if layout.size != pages * PAGE_SIZE:
        raise ValueError(f"{pages} page digests do not cover RAM of {layout.size} bytes")
    started = time.perf_counter()
    found = np.flatnonzero(src_digests != dst_digests)
    took = time.perf_counter() - started if seconds is None else seconds
    verdict = build_verdict(found, pages, layout, list(exclusions or []), took,
                            lambda p: _digest_mismatch(p, int(src_digests[p]),
                                                       int(dst_digests[p]), layout),
                            max_reported, method="hash")
    verdict.digest_proof = digest_proof(verdict.pages_compared, bytes_described=False)
    return verdict
