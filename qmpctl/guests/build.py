"""`qmpctl images build`: guest images built on demand, by the same make
recipes the repository's set-up runs (images/Makefile; a wheel ships them in
qmpctl/_data), into the first place qmpctl looks for images (`guests.images`):
$QMPCTL_IMAGES, a checkout's images/out, else the per-user cache.

The bare-metal guests are always (re)built (about a second); `--linux` adds
the Linux guests (Debian's kernel and busybox via apt), `--lab ARCH` a KVM lab
(mmdebstrap). Missing tools are named with their Debian packages before make
starts, rather than as make's "command not found" halfway through.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..core.errors import HostError, UsageError
from ..host.kvm import ARCHES
from .images import DATA, cache_dir, checkout_root, image_roots

# What each part needs: a command (or a file) -> the Debian package that has it.
BAREMETAL_NEEDS = {"make": "make", "gcc": "gcc", "ld": "binutils",
                   "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu"}
LINUX_NEEDS = {"apt-get": "apt", "apt-cache": "apt", "dpkg-deb": "dpkg", "cpio": "cpio",
               "gzip": "gzip", "/usr/lib/x86_64-linux-gnu/libc.a": "libc6-dev",
               "/usr/aarch64-linux-gnu/lib/libc.a": "libc6-dev-arm64-cross"}
LAB_NEEDS = {"mmdebstrap": "mmdebstrap", "depmod": "kmod", "cpio": "cpio",
             "python3": "python3", "apt-cache": "apt"}
# Everything building every image needs (docs/install.md and `qmpctl doctor` list it).
ALL_NEEDS = {**BAREMETAL_NEEDS, **LINUX_NEEDS, **LAB_NEEDS}


@dataclass(frozen=True)
class BuildPlan:
    recipes: Path  # the images/ directory holding the Makefile
    out: Path
    goals: tuple[str, ...]
    needs: dict[str, str]
    variables: tuple[str, ...] = ()  # make VAR=value arguments beside OUT


def recipes_dir() -> Path:
    """The image recipes: the checkout's images/ when running from one, else the package's."""
    checkout = checkout_root()
    recipes = checkout / "images" if checkout is not None else DATA / "images"
    if not (recipes / "Makefile").is_file():
        raise HostError(f"no image recipes in {recipes}: this qmpctl was installed without "
                        "them (install it from its wheel or sdist)")
    return recipes


def plan_build(linux: bool, labs: Sequence[str]) -> BuildPlan:
    """What `qmpctl images build [--linux] [--lab ARCH]...` runs (pure but for the
    environment the image roots come from); bad --lab values are a UsageError."""
    bad = [a for a in labs if a not in ARCHES]
    if bad:
        raise UsageError(f"--lab {bad[0]}: no such lab; one of {', '.join(ARCHES)}")
    goals = ["baremetal"]
    needs = dict(BAREMETAL_NEEDS)
    if linux:
        goals.append("linux")
        needs |= LINUX_NEEDS
    for arch in dict.fromkeys(labs):
        goals.append(f"lab-{arch}")
        needs |= LAB_NEEDS
    # A checkout keeps its .deb downloads in images/cache; an installed qmpctl in the cache.
    variables = () if checkout_root() else (f"LINUX_CACHE={cache_dir() / 'linux'}",)
    return BuildPlan(recipes_dir(), image_roots()[0].path, tuple(goals), needs, variables)


def missing_tools(needs: dict[str, str]) -> list[str]:
    """The commands and files of `needs` this host lacks."""
    return [n for n in needs
            if not (Path(n).is_file() if n.startswith("/") else shutil.which(n))]


def missing_message(needs: dict[str, str], missing: Sequence[str]) -> str:
    packages = sorted({needs[m] for m in missing})
    return (f"missing {', '.join(missing)}: install the Debian packages with "
            f"`apt-get install {' '.join(packages)}` (as root)")


def lab_requirements(requires: Sequence[str]) -> list[str]:
    """qmpctl's runtime and `pytest`-extra requirements from its metadata's
    Requires-Dist lines (what a lab image carries as wheels; pure)."""
    out = []
    for line in requires:
        spec, _, marker = line.partition(";")
        marker = marker.replace("'", '"').replace(" ", "")
        if not marker or marker == 'extra=="pytest"':
            out.append(spec.strip())
    return out


def make_env(recipes: Path) -> dict[str, str]:
    """make's environment: the pip and, outside a checkout, the requirements a
    lab build needs (build.sh reads them from pyproject.toml in a checkout)."""
    env = dict(os.environ)
    pip = Path(sys.executable).with_name("pip")
    if pip.is_file():
        env["PIP"] = str(pip)
    if not (recipes.parent / "pyproject.toml").is_file():
        env["QMPCTL_LAB_REQUIREMENTS"] = "\n".join(
            lab_requirements(metadata.requires("qmpctl") or []))
    return env


def run_build(plan: BuildPlan) -> None:
    """Run make for `plan`, its output on the terminal; a HostError if a tool is
    missing or make fails."""
    if missing := missing_tools(plan.needs):
        raise HostError("qmpctl images build: " + missing_message(plan.needs, missing))
    plan.out.mkdir(parents=True, exist_ok=True)
    argv = ["make", "-s", "--no-print-directory", "-C", str(plan.recipes), f"OUT={plan.out}",
            *plan.variables, *plan.goals]
    rc = subprocess.run(argv, env=make_env(plan.recipes), check=False).returncode
    if rc != 0:
        raise HostError(f"qmpctl images build: make exited {rc} ({' '.join(argv)})")
