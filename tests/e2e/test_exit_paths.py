"""Every exit path of `qmpctl migrate` as a CI job sees it: the real command
in a real process, its exit code, the verdict line and the report agreeing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qmpctl.core.errors import VERDICTS
from qmpctl.core.units import MiB
from qmpctl.host.memory import mem_total
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


SLOW = [*SMALL, "--throttle", "4", "--min-passes", "50"]  # still migrating when hit


def shm_busting_ram() -> str:
    total = mem_total()
    assert total is not None
    return str(total // MiB * 3 // 4)  # fits in memory once, not twice on /dev/shm


# (id, args, signal after seconds or None, exit code); the verdict is the table's.
EXIT_PATHS = [
    ("verified", SMALL, None, 0),
    ("mismatch", [*SMALL, "--fault", "corrupt-dst=0x500123"], None, 1),
    ("usage-error", [*SMALL, "--smp", "300"], None, 2),
    ("environment-error", ["--accel", "tcg", "--ram", "RAM"], None, 3),
    ("migration-failed", [*SLOW, "--fault", "kill-dst@pass:2"], None, 4),
    ("guest-failed", [*SMALL, "--boot-timeout", "0.01"], None, 5),
    ("interrupted", SLOW, 3.0, 130),
]


@pytest.mark.parametrize(("verdict", "args", "signal_after", "code"), EXIT_PATHS,
                         ids=[row[0] for row in EXIT_PATHS])
def test_exit_path(verdict: str, args: list[str], signal_after: float | None, code: int,
                   tmp_path: Path) -> None:
    """Exit code, verdict line, report and the README's table agree on each path."""
    assert VERDICTS[verdict] == code  # type: ignore[index]
    report = tmp_path / "r.json"
    argv = [sys.executable, "-m", "qmpctl", "migrate",
            *[shm_busting_ram() if a == "RAM" else a for a in args], "--report", str(report)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if signal_after is not None:
        time.sleep(signal_after)
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert our_qemu_processes() == []
    assert proc.returncode == code, err
    written = json.loads(report.read_text())
    assert (written["verdict"], written["exit_code"]) == (verdict, code)
    line = (f"qmpctl: {written['error']}" if verdict == "usage-error"
            else f"verdict: {verdict.upper()} (exit {code})")
    assert line in out + err
    assert "Traceback" not in err
