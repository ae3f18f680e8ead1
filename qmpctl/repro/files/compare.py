#!/usr/bin/env python3
"""List the 4 KiB pages that differ between the source's and the destination's
RAM files; exit 1 if any do, 0 if none. Python stdlib only.

    python3 compare.py SRC.ram DST.ram [plan.json]

plan.json (the reproducer's) maps file offsets to guest-physical addresses
and names the ranges qmpctl left out of its verdict."""

import json
import mmap
import sys
from collections.abc import Iterator, Sequence
from typing import Any

PAGE, CHUNK = 4096, 1 << 20


def gpa_of(offset: int, segments: Sequence[dict[str, int]]) -> int:
    """Guest-physical address of a RAM file offset (x86: RAM above 3 GiB is at 4 GiB)."""
    for s in segments:
        if s["offset"] <= offset < s["offset"] + s["size"]:
            return s["gpa"] + offset - s["offset"]
    return offset


def differing(src: str, dst: str, segments: Sequence[dict[str, int]] = (),
              exclude: Sequence[Sequence[int]] = ()) -> Iterator[tuple[int, int, int, int, int]]:
    """Yield (offset, gpa, first differing byte index, src byte, dst byte) per page."""
    with open(src, "rb") as a, open(dst, "rb") as b:
        ma = mmap.mmap(a.fileno(), 0, access=mmap.ACCESS_READ)
        mb = mmap.mmap(b.fileno(), 0, access=mmap.ACCESS_READ)
        if len(ma) != len(mb):
            sys.exit(f"compare: {src} has {len(ma)} bytes, {dst} {len(mb)}")
        for chunk in range(0, len(ma), CHUNK):
            if ma[chunk:chunk + CHUNK] == mb[chunk:chunk + CHUNK]:
                continue
            for off in range(chunk, min(chunk + CHUNK, len(ma)), PAGE):
                sp, dp = ma[off:off + PAGE], mb[off:off + PAGE]
                gpa = gpa_of(off, segments)
                if sp != dp and not any(lo <= gpa < hi for lo, hi in exclude):
                    i = next(i for i in range(PAGE) if sp[i] != dp[i])
                    yield off, gpa, i, sp[i], dp[i]


def main(argv: Sequence[str]) -> int:
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    plan: dict[str, Any] = {}
    if len(argv) == 4:
        with open(argv[3]) as f:
            plan = json.load(f)
    pages = list(differing(argv[1], argv[2], plan.get("ram_segments", ()),
                           plan.get("exclude", ())))
    for off, gpa, i, s, d in pages[:20]:
        print(f"page gpa 0x{gpa:x} (file offset 0x{off:x}): byte +0x{i:x} "
              f"src 0x{s:02x} dst 0x{d:02x}")
    print(f"{len(pages)} pages differ" + ("" if pages else ": nothing lost"))
    return 1 if pages else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
