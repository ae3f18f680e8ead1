"""`qmpctl migrate --bisect N` under a real `git bisect run`: a history of
QEMU wrappers in which one commit breaks migration finds that commit.

The regression is simulated in the wrapper, QEMU and migration are real: from
the bad commit on, the destination maps its guest RAM privately (`share=off`),
so what it loads never reaches the RAM file the destination's memory is read
from, and every page the guest wrote differs. Good commits exec QEMU as is."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import our_qemu_processes

pytestmark = pytest.mark.qemu
QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
GOOD = f"""#!{sys.executable}
import os, sys
os.execv({QEMU!r}, [{QEMU!r}, *sys.argv[1:]])
"""
BAD = f"""#!{sys.executable}
import os, sys
args = sys.argv[1:]
if "-incoming" in args:  # the regression: the destination's RAM is private
    args = [a.replace("share=on", "share=off") for a in args]
os.execv({QEMU!r}, [{QEMU!r}, *args])
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, text=True,
                          capture_output=True).stdout.strip()


def history(repo: Path, bad_from: int, commits: int) -> list[str]:
    """`commits` commits of a `qemu` wrapper, bad from commit `bad_from` (1-based)."""
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.invalid")
    git(repo, "config", "user.name", "t")
    shas = []
    for n in range(1, commits + 1):
        wrapper = repo / "qemu"
        wrapper.write_text(BAD if n >= bad_from else GOOD)
        wrapper.chmod(0o755)
        (repo / "NOTES").write_text(f"step {n}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"step {n}")
        shas.append(git(repo, "rev-parse", "HEAD"))
    return shas


def test_git_bisect_run_finds_the_commit_that_loses_pages(tmp_path: Path) -> None:
    repo = tmp_path / "history"
    repo.mkdir()
    shas = history(repo, bad_from=4, commits=6)
    git(repo, "bisect", "start", shas[-1], shas[0])
    run = subprocess.run(
        ["git", "-C", str(repo), "bisect", "run", sys.executable, "-m", "qmpctl", "migrate",
         "--accel", "tcg", "--ram", "64", "--wave-end", "18", "--qemu", str(repo / "qemu"),
         "--bisect", "2"], text=True, capture_output=True, timeout=600)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert f"{shas[3]} is the first bad commit" in out, out
    assert "bisect: bad: run 1 of 2 lost pages" in out
    assert "bisect: good: no loss in 2 runs: loss rate below 65.8% (95 % Wilson upper bound)" \
        in out
    assert our_qemu_processes() == []


def test_an_untestable_commit_is_skipped_and_bad_input_aborts(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "qmpctl", "migrate", "--accel", "tcg", "--ram", "64",
            "--wave-end", "18"]
    broken = tmp_path / "qemu"  # a build that does not even start: this commit is untestable
    broken.write_text(f"#!/bin/sh\ncase \"$1\" in -version|-L) exec {QEMU} \"$@\";; esac\n"
                      "echo 'qemu: broken build' >&2\nexit 1\n")  # says its version, runs nothing
    broken.chmod(0o755)
    skipped = subprocess.run([*base, "--qemu", str(broken), "--bisect", "2"], text=True,
                             capture_output=True, timeout=120)
    assert skipped.returncode == 125, skipped.stderr
    assert "bisect: skip: run 1 of 2 could not decide (environment-error)" in skipped.stderr
    missing = subprocess.run([*base, "--qemu", str(tmp_path / "typo"), "--bisect", "2"],
                             text=True, capture_output=True, timeout=120)
    assert missing.returncode == 128, missing.stderr  # bad input, the same at every commit
    assert "QEMU binary not found" in missing.stderr
    bad = subprocess.run([*base, "--bisect", "2", "--repeat", "3"], text=True,
                         capture_output=True, timeout=120)
    assert bad.returncode == 128, bad.stderr  # git bisect run aborts: no commit is blamed
    assert "--bisect N repeats by itself" in bad.stderr
