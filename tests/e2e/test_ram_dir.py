"""End-to-end: guest RAM on a tmpfs of huge pages (`--ram-dir`).

The RAM files then sit on 2 MiB pages, and the compare's memcmp through their
mappings runs at close to memory speed (about 1.8 times its speed on
/dev/shm's 4 KiB pages here, `nox -s bench`). The verdict must be as exact
there: a run verifies, and one corrupted byte is still found at its page.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from qmpctl.testing import ExitCode, Hooks, MigrateFn, assert_verified, corrupt_destination
from tests.conftest import our_qemu_processes

pytestmark = pytest.mark.qemu

SMALL = dict(accel="tcg", ram=64, timeout=120.0)
TARGET = 0xD00123


@pytest.fixture
def huge_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A private tmpfs mounted huge=always, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the huge-page compare is unit-tested "
                    "through /dev/shm's read path only")
    where = tmp_path / "huge"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "huge=always,size=512m", "qmpctl-test",
                    str(where)], check=True)
    try:
        probe = where / "probe"
        probe.write_bytes(b"\0" * 4096)
        if probe.stat().st_blksize != 2 << 20:
            pytest.skip(f"this kernel backs a huge=always tmpfs with "
                        f"{probe.stat().st_blksize} B pages (transparent huge pages off?)")
        probe.unlink()
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


async def test_ram_on_huge_pages_is_verified_in_place(qmpctl_migrate: MigrateFn,
                                                       huge_tmpfs: Path) -> None:
    rep = await qmpctl_migrate(ram_dir=huge_tmpfs, **SMALL)
    assert_verified(rep)
    assert rep.config is not None and rep.config.ram_dir == str(huge_tmpfs)
    assert rep.memory is not None
    assert (rep.memory.method, rep.memory.ram_page_kib) == ("map", 2048)
    assert rep.memory.pages_compared == 64 * 256
    assert os.listdir(huge_tmpfs) == [], "the run left files in --ram-dir"
    assert our_qemu_processes() == []


async def test_a_corrupted_byte_on_huge_pages_is_found(qmpctl_migrate: MigrateFn,
                                                       huge_tmpfs: Path) -> None:
    rep = await qmpctl_migrate(ram_dir=huge_tmpfs, hooks=corrupt_destination(TARGET), **SMALL)
    assert rep.exit_code == ExitCode.MISMATCH, rep.error
    assert rep.memory is not None and rep.memory.method == "map"
    assert [m.gpa for m in rep.memory.mismatches] == [TARGET & ~0xFFF]
    assert rep.memory.mismatches[0].first_diff == TARGET & 0xFFF
    assert os.listdir(huge_tmpfs) == []


async def test_netns_puts_both_sides_ram_there(qmpctl_migrate: MigrateFn,
                                               huge_tmpfs: Path) -> None:
    """Through `ip netns exec` the destination shares this host's files, so
    its RAM goes to --ram-dir too (over ssh it would keep its own)."""
    seen: list[Path] = []

    async def record(src: Path, dst: Path) -> None:
        seen.extend((src, dst))
        assert all(p.stat().st_blksize == 2 << 20 for p in seen)  # on huge pages

    rep = await qmpctl_migrate(ram_dir=huge_tmpfs, topology="netns",
                               hooks=Hooks(before_verify=record), **SMALL)
    assert_verified(rep)
    assert [p.parent.parent for p in seen] == [huge_tmpfs, huge_tmpfs], seen
    assert os.listdir(huge_tmpfs) == []
