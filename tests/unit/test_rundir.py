"""Run directories name their owner, so a dead owner's directory is swept."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from qmpctl.host.owner import OWNER, owner_alive
from qmpctl.qemu.rundir import Mount, RunDir, mount_of, run_root_problem, sweep_stale


def test_a_dead_owners_directory_is_swept(tmp_path: Path) -> None:
    mine = RunDir.create(tmp_path)
    dead = tmp_path / "qmpctl-dead"
    dead.mkdir()
    child = subprocess.Popen(["true"])
    child.wait()
    (dead / OWNER).write_text(f"{child.pid} 12345\n")  # gone (or reused: other start time)
    (dead / "src.ram").write_bytes(b"\0" * 4096)
    unknown = tmp_path / "qmpctl-unknown"
    unknown.mkdir()  # no owner file: not ours to judge
    assert owner_alive(mine.path) is True and owner_alive(dead) is False
    assert owner_alive(unknown) is None
    assert sweep_stale(tmp_path) == [dead]
    assert mine.path.is_dir() and unknown.is_dir() and not dead.exists()
    assert (mine.path / OWNER).read_text().split()[0] == str(os.getpid())
    mine.remove()


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683656k
90 27 0:40 / /mnt/huge\\040ram rw,relatime - tmpfs qmpctl rw,size=6291456k,huge=always
91 27 0:41 / /mnt/over rw,relatime - ext4 /dev/vdb rw
92 91 0:42 / /mnt/over rw,relatime - tmpfs qmpctl rw,size=1024k
"""


def test_the_mount_holding_a_path_is_the_deepest_and_last() -> None:
    assert mount_of("/dev/shm/qmpctl-x", MOUNTINFO) == Mount("/dev/shm", "tmpfs",
                                                             "rw,size=24683656k")
    assert mount_of("/dev/shmem", MOUNTINFO).fstype == "ext4"  # type: ignore[union-attr]
    huge = mount_of("/mnt/huge ram/a", MOUNTINFO)  # \\040 is a space in mountinfo
    assert huge is not None and huge.point == "/mnt/huge ram" and "huge=always" in huge.options
    assert mount_of("/mnt/over", MOUNTINFO).fstype == "tmpfs"  # type: ignore[union-attr]
    assert mount_of("/work", "") is None


def test_ram_root_problems(tmp_path: Path) -> None:
    assert run_root_problem(Path("shm")) == "must be an absolute path"
    assert run_root_problem(tmp_path / "missing") == "does not exist"
    (tmp_path / "file").write_text("")
    assert run_root_problem(tmp_path / "file") == "is not a directory"
    assert run_root_problem(Path("/dev/shm")) is None
    assert run_root_problem(Path("/proc")) is not None  # proc: not tmpfs


def test_ram_files_get_their_own_directory_swept_and_removed_alike(tmp_path: Path) -> None:
    root, ram_root = tmp_path / "run", tmp_path / "ram"
    root.mkdir()
    ram_root.mkdir()
    run = RunDir.create(root, ram_root)
    assert run.ram is not None and run.ram.parent == ram_root
    assert run.side("src", "ram") == run.ram / "src.ram"
    assert run.side("src", "qmp.sock") == run.path / "src.qmp.sock"
    assert owner_alive(run.ram) is True  # the next run's sweep leaves it alone
    run.remove()
    assert list(root.iterdir()) == [] and list(ram_root.iterdir()) == []
