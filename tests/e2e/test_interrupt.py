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
