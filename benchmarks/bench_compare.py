"""Verification engine throughput against this machine's plain memory compare.

Creates two identical RAM images of SIZE GiB on tmpfs, then measures, in the
same run: (a) the baseline, numpy equality of two in-memory buffers of the
same size, and (b) qmpctl's full page-by-page comparison of the two files
(reading and comparing every page). Prints best-of-N GiB/s and the ratio b/a.
Shared, noisy machines: figures, not assertions.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from qmpctl.qemu.rundir import RunDir
from qmpctl.verify.compare import compare_images
from qmpctl.verify.ramimage import RamImage, RamLayout


def best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times)


def baseline(data: np.ndarray, repeat: int) -> float:
    """numpy equality of two in-memory buffers of the same size (warm, best of N)."""
    words, other = data.view(np.uint64), data.copy().view(np.uint64)
    return best(lambda: np.array_equal(words, other), repeat)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    size = int(args.gib * (1 << 30)) // 4096 * 4096
    gib = size / (1 << 30)
    data = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    run = RunDir.create()
    try:
        a, b = run.side("a", "ram"), run.side("b", "ram")
        for p in (a, b):
            data.tofile(p)
        base = baseline(data, args.repeat)

        def engine() -> None:
            with RamImage(Path(a)) as s, RamImage(Path(b)) as d:
                assert compare_images(s, d, RamLayout(0, size)).identical

        eng = best(engine, args.repeat)
        print(f"image size          {gib:.2f} GiB on {run.path.parent} ({os.cpu_count()} CPUs)")
        print(f"baseline (numpy ==) {gib / base:6.2f} GiB/s  in-memory buffers")
        print(f"qmpctl compare      {gib / eng:6.2f} GiB/s  two RAM files, read+compare")
        print(f"ratio               {base / eng:6.2f}  (target >= 0.70)")
    finally:
        run.remove()


if __name__ == "__main__":
    main()
