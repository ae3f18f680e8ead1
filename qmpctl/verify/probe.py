"""The compare method chosen by measuring, not by a constant.

Which of map (memcmp through the mappings), read (preadv + memcmp) and hash
(xxh3-64 of both sides' pages) is fastest depends on the host: one 2-core
machine measured map 7.3-7.7 against read 5.3-5.7 GiB/s, another map 5.99
against read 12.16. So `qmpctl migrate` probes: it compares a few stripes
spread over the run's own RAM files (PROBE_BYTES of each in all, fresh
mappings each time so map pays its page faults as the full compare does),
ROUNDS rounds interleaved, best of each, and `choose` picks from the figures.

The result is cached under the user's cache directory, keyed on what makes
it stale: the boot (boot_id), the kernel release, the CPUs this process may
use, and the RAM directory's file system, its options and page size. A
corrupt or missing cache file is simply probed again.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.cache import JsonCache
from ..core.model import Model
from ..core.units import PAGE_SIZE, MiB
from ..qemu.rundir import mount_of
from . import compare
from .compare import (
    MemoryVerdict,
    Method,
    MethodChoice,
    compare_images,
    map_ranges,
    worker_count,
)
from .digest import compare_hashed, digest_range
from .ramimage import RamImage, RamLayout, Region

if TYPE_CHECKING:
    import numpy as np
else:
    from ..core.lazy import numpy as np

PROBE_BYTES = 128 * MiB  # of each image, in all (a few tens of ms per method)
STRIPES = 8  # spread over the file: guest RAM is not alike everywhere (holes, data)
ROUNDS = 3
BUDGET_S = 0.5  # no further round once the probe has taken this long
# The hashed path proves a match up to a 2^-64 chance, the byte paths exactly:
# it is chosen only when clearly faster. A byte method is then >= 1/1.1 of it.
HASH_MARGIN = 1.1
PREFERENCE: tuple[Method, ...] = ("map", "read", "hash")  # on a tie
PROBE_VERSION = 1  # bump when the probe measures differently: old entries then miss
CACHE_NAME = "compare-probe.json"


def choose(figures: Mapping[Method, float], hash_margin: float = HASH_MARGIN) -> Method:
    """The method to run given each candidate's probe figure in GiB/s (pure).

    The fastest byte method (map, read), unless hash beats it by `hash_margin`;
    ties go by PREFERENCE. Methods absent from `figures` are not candidates."""
    byte = [m for m in PREFERENCE if m != "hash" and m in figures]
    if not byte:
        if "hash" not in figures:
            raise ValueError("no compare method was measured")
        return "hash"
    best = max(byte, key=lambda m: (figures[m], -PREFERENCE.index(m)))
    if "hash" in figures and figures["hash"] > figures[best] * hash_margin:
        return "hash"
    return best


def describe_rule(figures: Mapping[Method, float], chosen: Method) -> str:
    """The rule `choose` applied, in words, for the report (pure)."""
    if chosen == "hash":
        return f"hash was more than {HASH_MARGIN:g}x the fastest byte method"
    rest = "" if "hash" not in figures else (
        f"; hash is chosen only above {HASH_MARGIN:g}x it (a digest match is not a byte match)")
    return f"{chosen} was the fastest byte method{rest}"


def stripes(size: int, total: int = PROBE_BYTES, count: int = STRIPES) -> list[tuple[int, int]]:
    """`count` page-aligned ranges of `total` bytes in all, spread evenly over
    [0, size); the whole file (in CHUNK_BYTES pieces) if it is not larger (pure)."""
    if size <= total:
        return [(s, min(s + compare.CHUNK_BYTES, size))
                for s in range(0, size, compare.CHUNK_BYTES)]
    width = max(PAGE_SIZE, total // count // PAGE_SIZE * PAGE_SIZE)
    gap = (size - width) // max(1, count - 1) // PAGE_SIZE * PAGE_SIZE
    return [(i * gap, i * gap + width) for i in range(count)]


def _timed(paths: tuple[Path, Path], bounds: list[tuple[int, int]], method: Method,
           threads: int) -> float:
    """Seconds `method` takes over `bounds` of both files, freshly opened and mapped."""
    with RamImage(paths[0]) as s, RamImage(paths[1]) as d:
        started = time.perf_counter()
        if method == "hash":
            for image in (s, d):
                out = np.empty(image.size // PAGE_SIZE, dtype=np.uint64)
                map_ranges(bounds, threads, partial(digest_range, image, out))
        else:
            differs = compare.chunk_differs(method)
            map_ranges(bounds, threads, lambda a, b: differs(s, d, a, b))
        return time.perf_counter() - started


def probe(src: Path, dst: Path, candidates: tuple[Method, ...] = PREFERENCE,
          threads: int | None = None) -> tuple[dict[Method, float], int, float]:
    """Each candidate's GiB/s (of one image) over stripes of both files, best of
    ROUNDS interleaved rounds; with the MiB probed and the seconds it all took."""
    started = time.perf_counter()
    size = os.stat(src).st_size
    bounds = stripes(size)
    probed = sum(e - s for s, e in bounds)
    workers = threads or worker_count()
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(ROUNDS):
        for m in candidates:
            best[m] = min(best[m], _timed((src, dst), bounds, m, workers))
        if time.perf_counter() - started > BUDGET_S:  # a slow host: one round must do
            break
    figures = {m: round(probed / (1 << 30) / max(t, 1e-9), 2) for m, t in best.items()}
    return figures, probed // MiB, round(time.perf_counter() - started, 3)


class CachedProbe(Model):
    """One host's probe, as kept on disk."""

    key: str
    probed_at: str
    figures: dict[Method, float]
    probe_mib: int
    probe_s: float


PROBE_CACHE = JsonCache(CACHE_NAME, CachedProbe)


def host_key(ram_file: Path) -> str:
    """What a probe's figures hold for: this boot, kernel and CPU set, and the
    RAM file's file system (type, options) and page size."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "unknown-boot"
    try:
        mount = mount_of(str(ram_file.resolve()), Path("/proc/self/mountinfo").read_text())
    except OSError:
        mount = None
    fs = f"{mount.fstype}:{mount.options}" if mount else "unknown-fs"
    page = os.stat(ram_file).st_blksize
    return (f"v{PROBE_VERSION} boot={boot} kernel={platform.release()} "
            f"cpus={worker_count()} fs={fs} page={page}")


def same_boot(key: str) -> Callable[[str, CachedProbe], bool]:
    """Entries of other boots can never match again."""
    boot = key.split(" ")[1]
    return lambda other, _entry: other.split(" ")[1:2] == [boot]


def choose_method(requested: Method | None, src: Path, dst: Path,
                  cache: Path | None = None,
                  measure: Callable[[Path, Path], tuple[dict[Method, float], int, float]]
                  = probe) -> MethodChoice:
    """The method to compare `src` and `dst` with: `requested` if forced, else
    a cached probe of this host if one matches, else a probe now (cached)."""
    if requested is not None:
        return MethodChoice(method=requested, why="forced",
                            detail=f"--compare-method {requested}")
    store = PROBE_CACHE.at(cache)
    key = host_key(src)
    hit = store.get(key)
    if hit is not None:
        chosen = choose(hit.figures)
        return MethodChoice(method=chosen, why="cached", probed_at=hit.probed_at,
                            figures=dict(hit.figures), probe_mib=hit.probe_mib, probe_s=0.0,
                            detail=f"{describe_rule(hit.figures, chosen)} (probe cached in "
                                   f"{store.path})")
    figures, mib, seconds = measure(src, dst)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    store.store(key, CachedProbe(key=key, probed_at=now, figures=figures, probe_mib=mib,
                                 probe_s=seconds), same_boot(key))
    chosen = choose(figures)
    return MethodChoice(method=chosen, why="probed", probed_at=now, figures=dict(figures),
                        probe_mib=mib, probe_s=seconds, detail=describe_rule(figures, chosen))


def compare_by(method: Method, src: RamImage, dst: RamImage, layout: RamLayout,
               exclusions: list[Region] | None = None) -> MemoryVerdict:
    """Both local images compared by `method`; the verdict is the same whichever."""
    if method == "hash":
        return compare_hashed(src, dst, layout, exclusions)
    return compare_images(src, dst, layout, exclusions, method=method)
