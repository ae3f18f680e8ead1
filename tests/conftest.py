"""Shared fixtures. Tests that launch QEMU use the real binaries and images
built by the README's set-up; KVM tests carry the plugin's `qmpctl_kvm`
marker, which skips them naming the missing capability. `pytester` runs the
plugin's own tests in a scratch directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

pytest_plugins = ["pytester"]

OUR_QEMU = "qmpctl-"  # every QEMU we launch is named qmpctl-src / qmpctl-dst / qmpctl-probe


def our_qemu_processes() -> list[str]:
    out = subprocess.run(["pgrep", "-a", "-f", "qemu-system-"], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if f"-name {OUR_QEMU}" in line]


@pytest.fixture(scope="session", autouse=True)
def no_qemu_left_behind() -> Iterator[None]:
    """After the whole suite, no QEMU process of ours may survive."""
    before = our_qemu_processes()
    yield
    leftover = [p for p in our_qemu_processes() if p not in before]
    assert not leftover, f"QEMU processes survived the suite: {leftover}"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The compare-method probe's cache (XDG_CACHE_HOME) in a scratch directory,
    for this process and every qmpctl it starts: tests never read or write the
    user's cache."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


def have_qemu(arch: str) -> bool:
    return shutil.which(f"qemu-system-{arch}") is not None
