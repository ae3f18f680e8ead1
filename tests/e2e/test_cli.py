"""The CLI end to end: one real TCG migration repeated, JSON report array."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qmpctl.cli import app
from tests.conftest import our_qemu_processes

pytestmark = pytest.mark.qemu


def test_repeat_tallies_and_writes_every_report(tmp_path: Path) -> None:
    report = tmp_path / "runs.json"
    result = CliRunner().invoke(app, [
        "migrate", "--accel", "tcg", "--ram", "64", "--wave-end", "18", "--repeat", "2",
        "--report", str(report), "--artifacts", str(tmp_path / "logs")])
    assert result.exit_code == 0, result.output
    runs = json.loads(report.read_text())
    assert [r["verdict"] for r in runs] == ["verified", "verified"]
    assert "2 runs: 2 verified" in result.output
    for i in (1, 2):  # logs kept per run, never RAM files
        kept = {p.name for p in (tmp_path / "logs" / f"run-{i}").iterdir()}
        # (the first run in a process also keeps its schema probe's log)
        assert {"dst.log", "dst.serial", "src.log", "src.serial"} <= kept
        assert not [name for name in kept if name.endswith((".ram", ".sock"))]
    assert our_qemu_processes() == []


def test_repeat_must_be_positive() -> None:
    result = CliRunner().invoke(app, ["migrate", "--repeat", "0"])
    assert result.exit_code == 2
    assert "--repeat 0: must be at least 1" in result.output


def test_until_fail_stops_at_the_first_run_that_does_not_verify(tmp_path: Path) -> None:
    """A corrupted destination byte fails run 1 of 3: the loop stops there and keeps
    run 1's logs; a clean run of 2 keeps nothing."""
    logs = tmp_path / "logs"
    small = ["migrate", "--accel", "tcg", "--ram", "64", "--wave-end", "18"]
    result = CliRunner().invoke(app, [*small, "--until-fail", "3", "--artifacts", str(logs),
                                      "--fault", "corrupt-dst=0x500123"])
    assert result.exit_code == 1, result.output
    assert "--until-fail: run 1 of 3 did not verify (mismatch)" in result.output
    assert sorted(p.name for p in logs.iterdir()) == ["run-1"]
    clean = tmp_path / "clean"
    result = CliRunner().invoke(app, [*small, "--until-fail", "2", "--artifacts", str(clean)])
    assert result.exit_code == 0, result.output
    assert "2 runs: 2 verified" in result.output
    assert not clean.exists() or list(clean.iterdir()) == []
    assert our_qemu_processes() == []


def test_until_ci_stops_once_the_interval_is_that_narrow(tmp_path: Path) -> None:
    """0 lost of n: Wilson's upper bound is z²/(n + z²), 0.56 at 3 runs and
    0.49 at 4, so a width of 0.5 stops a --repeat 30 after run 4."""
    report = tmp_path / "runs.json"
    result = CliRunner().invoke(app, [
        "migrate", "--accel", "tcg", "--ram", "64", "--wave-end", "18", "--repeat", "30",
        "--until-ci", "0.5", "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(report.read_text())) == 4
    assert ("--until-ci 0.5: after 4 runs the loss rate is 0/4 0.0% [0.0%, 49.0%], no wider "
            "than 0.5; stopping") in result.output
    assert "4 runs: 4 verified; loss rate 0/4 0.0% [0.0%, 49.0%]" in result.output
    assert our_qemu_processes() == []


@pytest.mark.parametrize(("args", "problem"), [
    (["--until-fail", "2"], "give --artifacts DIR"),
    (["--until-fail", "2", "--repeat", "2", "--artifacts", "/tmp"], "leave out --repeat"),
    (["--until-fail", "0", "--artifacts", "/tmp"], "--until-fail 0: must be at least 1"),
    (["--until-ci", "0.2"], "--until-ci stops a --repeat N early: give --repeat N"),
    (["--until-ci", "1.5", "--repeat", "3"], "--until-ci 1.5: a width between 0 and 1"),
])
def test_until_fail_is_checked_before_anything_starts(args: list[str], problem: str) -> None:
    result = CliRunner().invoke(app, ["migrate", *args])
    assert result.exit_code == 2 and problem in result.output, result.output
