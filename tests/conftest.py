"""Shared fixtures. Tests that launch QEMU use the real binaries and images
built by the README's set-up; KVM tests carry the plugin's `qmpctl_kvm`
marker, which skips them naming the missing capability. `pytester` runs the
plugin's own tests in a scratch directory.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import psutil
import pytest

pytest_plugins = ["pytester"]

OUR_QEMU = "qmpctl-"  # every QEMU we launch is named qmpctl-src / qmpctl-dst / qmpctl-probe

# This session's mark: every process it starts inherits it, so the leak checks
# below see this session's QEMUs only, never those of another qmpctl or test
# run on the same machine.
SESSION_VAR = "QMPCTL_TEST_SESSION"
os.environ[SESSION_VAR] = uuid.uuid4().hex


def _ours(proc: psutil.Process, descendants: set[int]) -> bool:
    """Started by this session: it carries the session's mark (local and
    namespaced launches inherit the environment) or descends from this process
    (QEMU started over ssh by a test's own sshd, which drops the environment)."""
    if proc.pid in descendants:
        return True
    try:
        return proc.environ().get(SESSION_VAR) == os.environ[SESSION_VAR]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def our_qemu_processes() -> list[str]:
    """Command lines of the live QEMU processes this test session launched."""
    descendants = {p.pid for p in psutil.Process().children(recursive=True)}
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or ())
        if "qemu-system-" in line and f"-name {OUR_QEMU}" in line and _ours(proc, descendants):
            found.append(f"{proc.pid} {line}")
    return found


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


LONG_WHY = ("long (minutes): not in CI, to keep it short; `pytest --long` or "
            "QMPCTL_LONG_TESTS=1 runs it (`nox -s lab` does, for the lab's)")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true",
                     help="also run the tests marked `long` (CI leaves them to `nox -s lab`)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`long` tests are skipped, saying so, unless asked for. Inside a lab the
    outer session already chose (it delegates only what it runs), and first:
    a skipped test never boots a lab."""
    if config.getoption("long") or os.environ.get("QMPCTL_LONG_TESTS") \
            or os.environ.get("QMPCTL_LAB"):
        return
    for item in items:
        if item.get_closest_marker("long") is not None:
            item.add_marker(pytest.mark.skip(reason=LONG_WHY))


def have_qemu(arch: str) -> bool:
    return shutil.which(f"qemu-system-{arch}") is not None
