"""Ctrl-C in the middle of a migration: cancelled, source resumed, all cleaned up.

Each test waits for the run's own readiness (the driver's `migration active` log
line, printed once the migration is under way) rather than guessing with
sleeps, and checks only what the run itself owned: its QEMUs, and the run
directories whose owner file names its pid (so another qmpctl on the machine
does not make these tests fail)."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qmpctl.host.owner import OWNER, PREFIX
from qmpctl.qemu.rundir import default_root
from tests.conftest import our_qemu_processes

pytestmark = pytest.mark.qemu

MIGRATING = re.compile(r"migration active at ")  # driver.py logs each status at -v


class SlowRun:
    """A `qmpctl -v migrate` held back at 1 MiB/s, its combined output read by a
    thread so the test can wait for a line without blocking on the pipe."""

    def __init__(self, report: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from qmpctl.cli import main; main()", "-v", "migrate",
             "--accel", "tcg", "--ram", "64", "--wave-end", "18", "--throttle", "1",
             "--min-passes", "50", "--report", str(report)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_migrating(self, timeout: float = 90) -> None:
        """Return once the migration is active; fail if it never is."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"qmpctl ended before migrating:\n{''.join(self.seen)}")
            self.seen.append(line)
            if MIGRATING.search(line):
                return
        pytest.fail(f"no active migration within {timeout} s:\n{''.join(self.seen)}")

    def finish(self, timeout: float = 60) -> str:
        """Wait for the process; its whole output."""
        self.proc.wait(timeout=timeout)
        while (line := self.lines.get(timeout=timeout)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


@pytest.fixture
def slow_run(tmp_path: Path) -> Iterator[SlowRun]:
    """A SlowRun reporting to tmp_path/r.json, killed if the test failed first
    (its QEMUs die with it: PDEATHSIG)."""
    run = SlowRun(tmp_path / "r.json")
    yield run
    if run.proc.poll() is None:
        run.proc.kill()
        run.proc.wait(timeout=30)


def run_dirs_of(pid: int) -> set[Path]:
    """The run directories process `pid` claimed (their owner file names it)."""
    found = set()
    for d in default_root().glob(f"{PREFIX}*"):
        try:
            if (d / OWNER).read_text().split()[0] == str(pid):
                found.add(d)
        except (OSError, IndexError):
            continue
    return found


def test_sigint_cancels_migration_and_cleans_up(slow_run: SlowRun, tmp_path: Path) -> None:
    run = slow_run
    run.wait_migrating()
    assert run_dirs_of(run.proc.pid), "the run's own directory was not found while it ran"
    run.proc.send_signal(signal.SIGINT)
    out = run.finish()
    assert run.proc.returncode == 130, out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["verdict"] == "interrupted"
    assert data["source_state_after"] == "running"
    assert our_qemu_processes() == []
    assert not run_dirs_of(run.proc.pid), "run directory left behind"


def test_a_second_sigint_does_not_abort_the_cleanup(slow_run: SlowRun, tmp_path: Path) -> None:
    run = slow_run
    run.wait_migrating()
    run.proc.send_signal(signal.SIGINT)
    time.sleep(0.05)  # the second Ctrl-C lands while the first one's cleanup runs
    run.proc.send_signal(signal.SIGINT)
    out = run.finish()
    assert run.proc.returncode == 130, out
    # -v logs the run's Interrupted with its traceback; a second Ctrl-C that
    # broke the cleanup would surface as KeyboardInterrupt instead of a verdict.
    assert "cleaning up" in out and "KeyboardInterrupt" not in out, out
    assert "verdict: INTERRUPTED (exit 130)" in out, out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["verdict"] == "interrupted" and data["source_state_after"] == "running"
    assert our_qemu_processes() == []
    assert not run_dirs_of(run.proc.pid), "run directory left behind"


def test_the_directory_of_a_killed_qmpctl_is_swept(slow_run: SlowRun, tmp_path: Path) -> None:
    run = slow_run
    run.wait_migrating()
    run.proc.kill()  # no cleanup at all: its QEMUs die with it (PDEATHSIG), its files stay
    run.finish(timeout=30)
    left = run_dirs_of(run.proc.pid)
    assert left, "the killed run left nothing to sweep"
    deadline = time.monotonic() + 10
    while our_qemu_processes() and time.monotonic() < deadline:
        time.sleep(0.1)  # PDEATHSIG is delivered asynchronously
    assert our_qemu_processes() == []
    result = subprocess.run(
        [sys.executable, "-c", "from qmpctl.cli import main; main()", "doctor", "--clean"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert all(f"removed {d}" in result.stdout for d in left), result.stdout
    assert not run_dirs_of(run.proc.pid)
