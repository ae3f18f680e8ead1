"""Verification engine throughput against this machine's plain memory compare.

Writes two identical RAM images of --gib GiB (default 2) on tmpfs (/dev/shm),
then measures in the same run, best of --repeat rounds (each round runs every
measurement once, so drift on a shared machine hits them alike):

* libc memcmp of two in-memory buffers of the same size, on 1 thread and on
  all threads (one slice each; ctypes releases the GIL): the machine's speed;
* the read floor: preadv of both files into cache-sized buffers, nothing
  compared (what getting the bytes out of tmpfs costs);
* qmpctl's compare of the two files (open, compare, close) by each method it
  may run: map (memcmp of the mappings), read (preadv + memcmp) and hash
  (page_digests of both, then a byte compare of the pages whose digests
  differ), each with its ratio to the best plain compare (map, read) and to
  all-threads memcmp; the probe `qmpctl migrate` runs (uncached), its figures,
  the method it chooses and how that method fares against the fastest here;
* hashed mode: page_digests of one file (what each host does when the
  destination is elsewhere);
* the probe's chosen method on two memfds (`memory-backend-memfd`, which qmpctl would
  read through /proc/PID/fd/N) beside the tmpfs files it uses
  (`memory-backend-file` on /dev/shm): which backend verifies faster.
* as root, the same compare of the two images copied to a private tmpfs
  mounted huge=always (what `qmpctl migrate --ram-dir` on such a tmpfs gives):
  files on 2 MiB pages, compared through their mappings.

* with `--guest-ram MIB`, the same methods on real guest RAM files: one
  `qmpctl migrate --accel tcg --ram MIB` of the wave guest, each method timed
  on the run's two RAM files just before qmpctl compares them, then the
  method qmpctl chose (probed, as on a host's first run) and its speed as a
  ratio to the fastest on those same files.

Prints GiB of image per second for each and the ratios to all-threads memcmp.
Figures, not assertions: the machine is shared and noisy. `--blocks 256,1024`
also measures the engine at other block sizes (KiB).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt

from qmpctl.core.units import GiB, MiB
from qmpctl.qemu.rundir import RunDir, default_root, free_bytes
from qmpctl.report.text import choice_line
from qmpctl.scenario.options import MigrateOptions
from qmpctl.scenario.runner import Hooks
from qmpctl.scenario.runner import run as run_migrate
from qmpctl.verify import compare
from qmpctl.verify.compare import BlockBuffer, Method, map_chunks, worker_count
from qmpctl.verify.digest import page_digests
from qmpctl.verify.probe import choose, compare_by, probe
from qmpctl.verify.ramimage import RamImage, RamLayout

_memcmp = ctypes.CDLL(None).memcmp
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_memcmp.restype = ctypes.c_int
WRITE_CHUNK = 64 * MiB
MARGIN = 256 * MiB


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def anon_huge() -> int:
    """Bytes of this process's anonymous memory on transparent huge pages."""
    try:
        text = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        return 0
    return sum(int(line.split()[1]) * 1024 for line in text.splitlines()
               if line.startswith("AnonHugePages:"))


def caches() -> str:
    out = []
    for d in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            kind = (d / "type").read_text().strip()
            if kind == "Instruction":
                continue
            out.append(f"L{(d / 'level').read_text().strip()} {(d / 'size').read_text().strip()}")
        except OSError:
            continue
    return ", ".join(out) or "cache sizes unknown"


@contextlib.contextmanager
def huge_tmpfs(under: Path, size: int) -> Iterator[Path | str]:
    """A private tmpfs mounted huge=always under `under`, unmounted after; or
    why there is none (not root, no huge pages for tmpfs on this kernel)."""
    if os.geteuid() != 0:
        yield "not measured: mounting a tmpfs needs root"
        return
    where = under / "huge"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"huge=always,size={size}", "qmpctl-bench",
                    str(where)], check=True)
    try:
        probe = where / "probe"
        probe.write_bytes(b"\0")
        page = probe.stat().st_blksize
        probe.unlink()
        yield where if page == 2 << 20 else f"not measured: a huge=always tmpfs has {page} B pages"
    finally:
        subprocess.run(["umount", str(where)], check=True)


def write_images(paths: tuple[Path, Path], size: int) -> None:
    """Two identical files of random bytes, written in chunks (no size-sized buffer)."""
    rng = np.random.default_rng(0)
    with paths[0].open("wb") as fa, paths[1].open("wb") as fb:
        for off in range(0, size, WRITE_CHUNK):
            chunk = rng.integers(0, 256, min(WRITE_CHUNK, size - off), dtype=np.uint8)
            fa.write(chunk.data)
            fb.write(chunk.data)


def memcmp_all(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8], pool: ThreadPoolExecutor,
               threads: int) -> bool:
    """memcmp of two buffers, one contiguous page-aligned slice per thread."""
    step = -(-len(a) // threads // 4096) * 4096
    pa, pb = a.ctypes.data, b.ctypes.data
    slices = [(s, min(step, len(a) - s)) for s in range(0, len(a), step)]
    return not any(pool.map(lambda sn: _memcmp(pa + sn[0], pb + sn[0], sn[1]), slices))


def read_floor(a: Path, b: Path, threads: int) -> None:
    """preadv of both files in BLOCK_BYTES blocks, compared with nothing."""
    with RamImage(a) as s, RamImage(b) as d:
        def work(start: int, end: int) -> None:
            ba, bb = BlockBuffer(compare.BLOCK_BYTES), BlockBuffer(compare.BLOCK_BYTES)
            for off in range(start, end, compare.BLOCK_BYTES):
                n = min(compare.BLOCK_BYTES, end - off)
                ba.read(s.fd, off, n)
                bb.read(d.fd, off, n)

        map_chunks(s.size, threads, work)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--gib", type=float, default=2.0, help="size of each RAM image (GiB)")
    ap.add_argument("--repeat", type=int, default=5, help="rounds; the best of each is shown")
    ap.add_argument("--threads", type=int, default=worker_count(),
                    help="threads for the all-threads figures (default: every CPU)")
    ap.add_argument("--dir", type=Path, default=default_root(),
                    help="where the two images are written (default: /dev/shm)")
    ap.add_argument("--blocks", default="",
                    help="also measure the engine with these block sizes, KiB, comma-separated")
    ap.add_argument("--guest-ram", type=int, default=0, metavar="MIB",
                    help="also migrate the TCG wave guest with this much RAM and measure each "
                         "method on its RAM files just before qmpctl compares them")
    args = ap.parse_args()
    size = int(args.gib * GiB) // 4096 * 4096
    if size <= 0:
        ap.error("--gib must give at least one 4 KiB page")
    gib, threads = size / GiB, max(1, args.threads)
    blocks = [int(k) * 1024 for k in args.blocks.split(",") if k.strip()]

    # Room: the two files here, then (checked once they are written) two in-memory buffers.
    if (free := free_bytes(args.dir)) < 2 * size + MARGIN:
        print(f"bench_compare: {args.dir} has {free / GiB:.1f} GiB free; two {gib:.2f} GiB "
              f"images need {(2 * size + MARGIN) / GiB:.1f} GiB: use a smaller --gib or "
              f"another --dir", file=sys.stderr)
        return 2
    run = RunDir.create(args.dir)
    mounts = contextlib.ExitStack()
    try:
        a, b = run.side("a", "ram"), run.side("b", "ram")
        write_images((a, b), size)
        # Checked after writing: on tmpfs the images themselves took memory.
        if (avail := mem_available()) < 6 * size + MARGIN:
            print(f"bench_compare: {avail / GiB:.1f} GiB of memory available beside the images;"
                  f" two in-memory buffers, two memfds and two huge-page copies of {gib:.2f} "
                  f"GiB need {(6 * size + MARGIN) / GiB:.1f} GiB: use a smaller --gib",
                  file=sys.stderr)
            return 2
        x = np.fromfile(a, dtype=np.uint8)
        y = np.fromfile(b, dtype=np.uint8)
        layout = RamLayout.linear(0, size)
        pool = ThreadPoolExecutor(threads)

        def engine(src: Path = a, dst: Path = b, method: Method = compare.METHOD) -> None:
            with RamImage(src) as s, RamImage(dst) as d:
                if not compare_by(method, s, d, layout).identical:
                    raise SystemExit(f"bench_compare: method {method} found a difference")

        def hash_one() -> None:
            with RamImage(a) as s:
                page_digests(s, threads)

        def with_block(fn: Callable[[], object], block: int) -> Callable[[], None]:
            def run_variant() -> None:
                saved = compare.BLOCK_BYTES
                compare.BLOCK_BYTES = block
                try:
                    fn()
                finally:
                    compare.BLOCK_BYTES = saved
            return run_variant

        # The probe as `qmpctl migrate` runs it on a host's first run (no cache).
        figures, probe_mib, probe_s = probe(a, b, threads=threads)
        chosen = choose(figures)
        default_block = compare.BLOCK_BYTES
        with RamImage(a) as s:
            page = os.fstat(s.fd).st_blksize
        memfds = [os.memfd_create(f"bench-{n}") for n in ("a", "b")]
        for fd, buf in zip(memfds, (x, y), strict=True):
            os.ftruncate(fd, size)
            view = memoryview(buf)  # type: ignore[arg-type]
            for off in range(0, size, WRITE_CHUNK):
                os.pwrite(fd, view[off:off + WRITE_CHUNK], off)
        ma, mb = (Path(f"/proc/self/fd/{fd}") for fd in memfds)

        cases: dict[str, tuple[Callable[[], object], str]] = {
            "memcmp 1 thread": (lambda: _memcmp(x.ctypes.data, y.ctypes.data, size),
                                "in-memory buffers"),
            f"memcmp {threads} threads": (lambda: memcmp_all(x, y, pool, threads),
                                          "in-memory buffers, one slice per thread"),
            "read floor": (lambda: read_floor(a, b, threads),
                           "preadv of both files, nothing compared"),
            "compare, method map": (lambda: engine(method="map"), "memcmp of the mappings"),
            "compare, method read": (lambda: engine(method="read"), "preadv + memcmp"),
            "compare, method hash": (lambda: engine(method="hash"),
                                     "page_digests of both + byte compare of differing pages"),
            "qmpctl compare, memfd": (lambda: engine(ma, mb, chosen),
                                      f"method {chosen} on two memfds (/proc/self/fd/N)"),
            "hashed, 1 image": (hash_one, "page_digests of one file (each host's share)"),
        }
        # Last: two more copies of the images (memory was checked for four).
        huge = mounts.enter_context(huge_tmpfs(run.path, 2 * size + MARGIN))
        if isinstance(huge, Path):
            ha, hb = (Path(shutil.copyfile(f, huge / f.name)) for f in (a, b))
            cases["qmpctl compare, huge"] = (lambda: engine(ha, hb, "map"),
                                             "method map on a tmpfs mounted huge=always "
                                             "(--ram-dir): 2 MiB pages")
        for block in blocks:
            cases[f"compare {block >> 10} KiB"] = (with_block(lambda: engine(method=chosen),
                                                              block), f"method {chosen}")
            cases[f"hashed 1 image {block >> 10} KiB"] = (with_block(hash_one, block),
                                                         "page_digests")
        best = dict.fromkeys(cases, float("inf"))
        for _ in range(max(1, args.repeat)):
            for name, (fn, _what) in cases.items():
                t = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t)
        pool.shutdown()
        anon_on_huge = anon_huge()

        print(f"images: 2 x {gib:.2f} GiB on {args.dir}; {os.cpu_count()} CPUs, {threads} threads;"
              f" {caches()}; best of {args.repeat}")
        print(f"in-memory buffers: {anon_on_huge / GiB:.2f} of {2 * gib:.2f} GiB on huge pages; "
              f"image files: st_blksize {page >> 10} KiB; {default_block >> 10} KiB blocks")
        for name, (_fn, what) in cases.items():
            print(f"{name:24s} {gib / best[name]:6.2f} GiB/s  {best[name] * 1000:7.1f} ms  {what}")
        ref = best[f"memcmp {threads} threads"]
        methods = METHODS
        bench_s = {m: best[f"compare, method {m}"] for m in methods}
        plain = min(bench_s["map"], bench_s["read"])
        fastest = min(methods, key=lambda m: bench_s[m])
        print(f"per method (RAM on {page >> 10} KiB pages, as on {args.dir}): "
              f"/ best plain compare (map, read) / memcmp {threads} threads")
        for m in methods:
            print(f"  {m:5s} {gib / bench_s[m]:6.2f} GiB/s   {plain / bench_s[m]:5.2f}   "
                  f"{ref / bench_s[m]:5.2f}")
        print(f"probe ({probe_mib} MiB of each image, {probe_s:.2f} s): "
              + ", ".join(f"{m} {g:.2f}" for m, g in figures.items())
              + f" GiB/s -> chooses {chosen}; the bench's fastest here: {fastest}; chosen / "
                f"fastest {bench_s[fastest] / bench_s[chosen]:5.2f}  (target >= 0.90)")
        on_huge = (f"{ref / best['qmpctl compare, huge']:5.2f}" if isinstance(huge, Path)
                   else f" {huge}")
        print(f"ratio compare on huge pages / memcmp {threads} thr. {on_huge}  (target >= 0.80; "
              "qmpctl migrate --ram-dir on a tmpfs mounted huge=always)")
        print(f"ratio hashed, 1 image / memcmp {threads} threads  "
              f"{ref / best['hashed, 1 image']:5.2f}  (target >= 0.50; hosts hash in parallel)")
        print(f"ratio compare memfd / compare tmpfs file      "
              f"{bench_s[chosen] / best['qmpctl compare, memfd']:5.2f}  "
              "(> 1: memory-backend-memfd would verify faster)")
        print(f"ratio read floor / memcmp {threads} threads       "
              f"{ref / best['read floor']:5.2f}  (the copy out of the files alone)")
        for fd in memfds:
            os.close(fd)
    finally:
        mounts.close()
        run.remove()
    return guest_files(args.guest_ram, max(1, args.repeat)) if args.guest_ram else 0


METHODS: tuple[Method, ...] = ("map", "read", "hash")


def guest_files(ram_mib: int, repeat: int) -> int:
    """One `qmpctl migrate --accel tcg --ram MIB` of the wave guest: each method
    timed on the run's own RAM files just before qmpctl compares them (the
    verdict's own seconds, best of `repeat`), then qmpctl's compare as it ran
    (first run on a host: the probe, its cache in a scratch directory)."""
    samples: dict[Method, list[float]] = {m: [] for m in METHODS}

    async def measure(src: Path, dst: Path) -> None:
        def work() -> None:
            layout = RamLayout.linear(0, src.stat().st_size)
            for _ in range(repeat):
                for m in METHODS:
                    with RamImage(src) as s, RamImage(dst) as d:
                        samples[m].append(compare_by(m, s, d, layout).gib_per_s)
        await asyncio.to_thread(work)

    saved = os.environ.get("XDG_CACHE_HOME")
    with tempfile.TemporaryDirectory(prefix="qmpctl-bench-cache-") as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        try:
            rep = asyncio.run(run_migrate(MigrateOptions(accel="tcg", ram=ram_mib),
                                          Hooks(before_verify=measure)))
        finally:
            if saved is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = saved
    v = rep.memory
    best = {m: max(g, default=0.0) for m, g in samples.items()}
    if v is None or v.choice is None or not all(best.values()):
        print(f"guest RAM files: the run compared nothing ({rep.verdict}: {rep.error})",
              file=sys.stderr)
        return 1
    plain = max(best["map"], best["read"])
    fastest = max(METHODS, key=lambda m: best[m])
    print(f"guest RAM files: TCG wave guest, {ram_mib} MiB, verdict {rep.verdict}; each method "
          f"on the run's two RAM files just before qmpctl compared them, best of {repeat}:")
    for m in METHODS:
        print(f"  {m:5s} {best[m]:6.2f} GiB/s   {best[m] / plain:5.2f} of the best plain compare")
    print(f"qmpctl migrate's compare: {choice_line(v.choice)}")
    median = statistics.median(samples[fastest])
    print(f"  ran {v.method} at {v.gib_per_s:.2f} GiB/s: {v.gib_per_s / best[fastest]:5.2f} of the "
          f"fastest on the same files ({fastest}, best {best[fastest]:.2f} GiB/s), "
          f"{v.gib_per_s / median:5.2f} of its median ({median:.2f}; one run against "
          f"{repeat}); target >= 0.90")
    return 0


if __name__ == "__main__":
    sys.exit(main())
