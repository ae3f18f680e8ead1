"""What every guest qmpctl launches shares: where its image is, where its RAM
starts, and the `GuestCheck` model of a check the guest (or its image) passed.

Images are built by `make -C images` into images/out (or $QMPCTL_IMAGES).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from ..core.errors import HostError
from ..core.units import MiB
from ..host.kvm import Arch

RAM_BASE: dict[Arch, int] = {"x86_64": 0, "aarch64": 0x4000_0000}
# Below this offset into RAM live firmware, DTB, the guest image and (arm64)
# the GIC/ITS tables; the wave stays above it.
RESERVED_LOW: dict[Arch, int] = {"x86_64": 2 * MiB, "aarch64": 16 * MiB}


class GuestCheck(BaseModel):
    """One check of the guest's own state: what, when, and what was seen."""

    name: str
    stage: str
    ok: bool
    detail: str


def images_dir() -> Path:
    env = os.environ.get("QMPCTL_IMAGES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "images" / "out"


def image_path(*parts: str) -> Path:
    path = images_dir().joinpath(*parts)
    if not path.is_file():
        raise HostError(f"guest image {path} is missing; build it with `make -C images` "
                        "(the README's set-up command does this)")
    return path
