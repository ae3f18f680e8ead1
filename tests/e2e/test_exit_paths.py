"""Every exit path of `qmpctl migrate` as a CI job sees it: the real command
in a real process, its exit code, the verdict line and the report agreeing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import our_qemu_processes

pytestmark = pytest.mark.qemu

SMALL = ["--accel", "tcg", "--ram", "64", "--wave-end", "18", "--timeout", "120"]


def qmpctl(*args: str, closed_stdout: bool = False) -> subprocess.CompletedProcess[str]:
    """`python -m qmpctl ARGS`; `closed_stdout`: as `qmpctl ... | true`."""
    read, write = os.pipe()
    if closed_stdout:
        os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "qmpctl", *args],
                              stdout=write if closed_stdout else subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
        if not closed_stdout:
            os.close(read)
    assert our_qemu_processes() == []
    return done


def test_a_verified_run_exits_0_when_stdout_is_closed(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    done = qmpctl("migrate", *SMALL, "--report", str(report), closed_stdout=True)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads(report.read_text())["verdict"] == "verified"


def test_a_verified_run_whose_report_cannot_be_written_exits_8() -> None:
    done = qmpctl("migrate", *SMALL, "--report", "/dev/full")
    assert done.returncode == 8, done.stderr
    assert "verdict: VERIFIED (exit 0)" in done.stdout
    assert "--report /dev/full: could not be written (No space left on device)" in done.stderr
    assert "Traceback" not in done.stderr
