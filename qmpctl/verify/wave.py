"""The "wave" workload's invariant, checked from a RAM image alone.

The guest adds `delta` to one byte per `stride` block, low to high, pass after
pass. At any instant the blocks below the write point hold v+delta and the rest
hold v (mod 256): reading the bytes in address order, every byte equals its
predecessor except at most one edge where it steps down by `delta`. A page
lost in migration holds an older value and breaks that shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .ramimage import RamImage, RamLayout


@dataclass(frozen=True)
class WaveParams:
    start: int  # guest-physical, inclusive
    end: int  # guest-physical, exclusive
    stride: int = 4096
    delta: int = 1
    offset: int = 0  # byte within each stride block

    @property
    def blocks(self) -> int:
        return (self.end - self.start) // self.stride

    def fw_cfg_string(self) -> str:
        return (f"start=0x{self.start:x} end=0x{self.end:x} stride=0x{self.stride:x} "
                f"delta=0x{self.delta:x} offset=0x{self.offset:x}")

    def problems(self) -> list[str]:
        """Why these parameters are unusable (empty when they are fine)."""
        out = []
        if self.stride <= 0 or self.stride % 8:
            out.append(f"stride {self.stride} must be a positive multiple of 8")
        elif self.start % self.stride or self.end % self.stride:
            out.append("wave start and end must be multiples of the stride")
        if self.end <= self.start:
            out.append("wave end must be above its start")
        if not 1 <= self.delta <= 255:
            out.append(f"delta {self.delta} must be in 1..255")
        if not 0 <= self.offset < self.stride:
            out.append(f"offset {self.offset} must be inside the stride")
        return out


@dataclass(frozen=True)
class WaveCheck:
    ok: bool
    blocks: int
    edges: int  # positions where the value changes
    value: int  # value of the first block (v or v+delta)
    first_bad_gpa: int | None
    detail: str


def check_samples(samples: npt.NDArray[np.uint8], delta: int) -> tuple[int, int | None, str]:
    """(edges, index of the first offending block or None, detail) — pure."""
    steps = (samples[:-1].astype(np.int16) - samples[1:].astype(np.int16)) % 256
    changes = np.flatnonzero(steps)
    bad = [int(i) + 1 for i in changes if steps[i] != delta]
    if bad:
        i = bad[0]
        return len(changes), i, (
            f"block {i} holds 0x{int(samples[i]):02x} after 0x{int(samples[i - 1]):02x}: "
            f"not equal and not one step of {delta} behind")
    if len(changes) > 1:
        i = int(changes[1]) + 1
        return len(changes), i, f"{len(changes)} edges, at most one allowed (second at block {i})"
    return len(changes), None, "one edge" if len(changes) else "no edge (all blocks equal)"


def wave_samples(image: RamImage, layout: RamLayout, params: WaveParams) -> npt.NDArray[np.uint8]:
    lo = layout.offset(params.start) + params.offset
    hi = layout.offset(params.end)
    if len(layout.pieces(params.start, params.end)) != 1:
        raise ValueError(f"wave 0x{params.start:x}-0x{params.end:x} is not one stretch of RAM "
                         f"({layout.describe()})")
    return np.array(image.bytes[lo:hi:params.stride])


def check_wave(image: RamImage, layout: RamLayout, params: WaveParams) -> WaveCheck:
    samples = wave_samples(image, layout, params)
    edges, bad, detail = check_samples(samples, params.delta)
    return WaveCheck(
        ok=bad is None, blocks=len(samples), edges=edges,
        value=int(samples[0]) if len(samples) else 0,
        first_bad_gpa=None if bad is None else params.start + bad * params.stride,
        detail=detail,
    )
