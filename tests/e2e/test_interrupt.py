"""Ctrl-C in the middle of a migration: cancelled, source resumed, all cleaned up."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import our_qemu_processes

pytestmark = pytest.mark.qemu


def test_sigint_cancels_migration_and_cleans_up(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from qmpctl.cli import main; main()", "migrate",
         "--accel", "tcg", "--ram", "64", "--wave-end", "18", "--throttle", "1",
         "--min-passes", "50", "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("-name qmpctl-dst" in p
                                                  for p in our_qemu_processes()):
        time.sleep(0.2)
    time.sleep(2)  # the migration is running, throttled to 1 MiB/s
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    data = json.loads(report.read_text())
    assert data["verdict"] == "interrupted"
    assert data["source_state_after"] == "running"
    assert our_qemu_processes() == []
    assert not list(Path("/dev/shm").glob("qmpctl-*")), "run directory left behind"


def start_slow_run(report: Path) -> subprocess.Popen[str]:
    """A qmpctl migrate held back at 1 MiB/s; returns once it is migrating."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from qmpctl.cli import main; main()", "migrate",
         "--accel", "tcg", "--ram", "64", "--wave-end", "18", "--throttle", "1",
         "--min-passes", "50", "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("-name qmpctl-dst" in p
                                                  for p in our_qemu_processes()):
        time.sleep(0.2)
    time.sleep(1)
    return proc


def our_run_dirs() -> set[Path]:
    return set(Path("/dev/shm").glob("qmpctl-*"))


def test_a_second_sigint_does_not_abort_the_cleanup(tmp_path: Path) -> None:
    before = our_run_dirs()
    proc = start_slow_run(tmp_path / "r.json")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "cleaning up" in out and "Traceback" not in out, out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["verdict"] == "interrupted" and data["source_state_after"] == "running"
    assert our_qemu_processes() == []
    assert our_run_dirs() <= before, "run directory left behind"


def test_the_directory_of_a_killed_qmpctl_is_swept(tmp_path: Path) -> None:
    before = our_run_dirs()
    proc = start_slow_run(tmp_path / "r.json")
    proc.kill()  # no cleanup at all: its QEMUs die with it (PDEATHSIG), its files stay
    proc.communicate(timeout=30)
    left = our_run_dirs() - before
    assert left, "the killed run left nothing to sweep"
    deadline = time.monotonic() + 10
    while our_qemu_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    result = subprocess.run(
        [sys.executable, "-c", "from qmpctl.cli import main; main()", "doctor", "--clean"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert all(f"removed {d}" in result.stdout for d in left), result.stdout
    assert not (our_run_dirs() & left)
