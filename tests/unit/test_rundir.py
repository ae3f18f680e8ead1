"""Run directories name their owner, so a dead owner's directory is swept."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from qmpctl.qemu.rundir import OWNER, RunDir, owner_alive, sweep_stale


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
