"""Where qmpctl finds its guest images, in order:

1. `$QMPCTL_IMAGES`: when set, the only place (an explicit choice is not
   second-guessed by a fallback);
2. the source checkout's images/out, when qmpctl runs from a checkout: its
   images are built from the same sources as the code that runs (`./bootstrap
   setup`), while the cache may hold another version's;
3. the per-user cache, `qmpctl images build` (`$QMPCTL_CACHE`, else
   `$XDG_CACHE_HOME/qmpctl`, else ~/.cache/qmpctl), one directory per qmpctl
   version so an upgrade never runs images an older recipe built;
4. the package data: the bare-metal guests a wheel ships (qmpctl/_data).

Each image is looked up on its own: an installed qmpctl runs its bare-metal
guests from the package data and the Linux guests from the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .. import __version__
from ..core.errors import HostError

ImageSource = Literal["QMPCTL_IMAGES", "checkout", "cache", "package"]
PACKAGE = Path(__file__).resolve().parents[1]
DATA = PACKAGE / "_data"  # setup.py's build hook puts recipes and bare-metal images here


@dataclass(frozen=True)
class ImageRoot:
    source: ImageSource
    path: Path


def checkout_root() -> Path | None:
    """The source checkout qmpctl runs from (editable install, PYTHONPATH), if any."""
    root = PACKAGE.parent
    if (root / "pyproject.toml").is_file() and (root / "images" / "Makefile").is_file():
        return root
    return None


def cache_dir() -> Path:
    """The per-user cache: $QMPCTL_CACHE, else $XDG_CACHE_HOME/qmpctl, else ~/.cache/qmpctl."""
    if env := os.environ.get("QMPCTL_CACHE"):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "qmpctl"


def cache_images() -> Path:
    return cache_dir() / "images" / __version__


def image_roots() -> list[ImageRoot]:
    """Where images are looked for, first match wins (see the module docstring)."""
    if env := os.environ.get("QMPCTL_IMAGES"):
        return [ImageRoot("QMPCTL_IMAGES", Path(env))]
    roots = []
    if (checkout := checkout_root()) is not None:
        roots.append(ImageRoot("checkout", checkout / "images" / "out"))
    roots.append(ImageRoot("cache", cache_images()))
    roots.append(ImageRoot("package", DATA / "images" / "out"))
    return roots


def find_root(*parts: str) -> ImageRoot | None:
    """The first root holding the file `parts`, or None."""
    return next((r for r in image_roots() if r.path.joinpath(*parts).is_file()), None)


def images_dir(*parts: str) -> Path:
    """The images directory holding the file `parts`, else the first in the
    search order (where a missing image is reported, and built)."""
    root = find_root(*parts)
    return (root or image_roots()[0]).path


def build_hint(*parts: str) -> str:
    """The command that builds the image `parts`."""
    if parts[:1] == ("lab",):
        arch = parts[1] if len(parts) > 1 else "ARCH"
        cmd, make = f"qmpctl images build --lab {arch}", f"make -C images lab-{arch}"
    elif "linux" in parts:
        cmd, make = "qmpctl images build --linux", "make -C images linux"
    else:
        cmd, make = "qmpctl images build", "make -C images"
    if checkout_root() is not None and not os.environ.get("QMPCTL_IMAGES"):
        return f"`{make}` (./bootstrap setup does) or `{cmd}`"
    return f"`{cmd}`"


def image_path(*parts: str) -> Path:
    """The image file `parts` (e.g. "x86_64", "wave.elf"), or a HostError naming
    where it was looked for and how to build it."""
    if (root := find_root(*parts)) is not None:
        return root.path.joinpath(*parts)
    looked = ", ".join(f"{r.path} ({r.source})" for r in image_roots())
    raise HostError(f"guest image {'/'.join(parts)} is missing (looked in {looked}); "
                    f"build it with {build_hint(*parts)}")


# Every image qmpctl launches (lab: its manifest stands for the whole image).
KNOWN_IMAGES: tuple[tuple[str, ...], ...] = (
    ("x86_64", "wave.elf"), ("x86_64", "probe64.elf"), ("aarch64", "its.elf"),
    ("x86_64", "linux", "vmlinuz"), ("x86_64", "linux", "initrd.img"),
    ("aarch64", "linux", "vmlinuz"), ("aarch64", "linux", "initrd.img"),
    ("lab", "aarch64", "manifest.txt"), ("lab", "x86_64", "manifest.txt"),
)
