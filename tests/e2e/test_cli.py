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
        kept = sorted(p.name for p in (tmp_path / "logs" / f"run-{i}").iterdir())
        assert kept == ["dst.log", "dst.serial", "src.log", "src.serial"]
    assert our_qemu_processes() == []


def test_repeat_must_be_positive() -> None:
    result = CliRunner().invoke(app, ["migrate", "--repeat", "0"])
    assert result.exit_code == 2
    assert "--repeat 0: must be at least 1" in result.output
