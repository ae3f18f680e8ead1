"""The CLI's output paths, without QEMU: a run's outcome is faked, the
process and its pipes are real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from qmpctl.core.errors import VERDICTS, ExitCode, QmpctlError, ReportUnwritten, verdict_for
from qmpctl.report.write import write_report

# A `qmpctl migrate` whose run is replaced by a report with the given verdict.
FAKE_RUN = textwrap.dedent("""
    import sys
    import qmpctl.cli as cli
    from qmpctl.core.errors import VERDICTS
    from qmpctl.scenario.runner import new_report

    verdict = sys.argv.pop(1)

    async def fake(opts, live, repeat, until_fail=False, until_ci=None, stop_label=""):
        rep = new_report()
        rep.verdict, rep.exit_code = verdict, int(VERDICTS[verdict])
        return [rep]

    cli._run = fake
    sys.argv = ["qmpctl", "migrate", "--accel", "tcg", "--ram", "64", *sys.argv[1:]]
    cli.main()
""")


def run_into_closed_pipe(*args: str,
                         stderr_too: bool = False) -> subprocess.CompletedProcess[bytes]:
    """Run the fake migrate with stdout (and stderr) a pipe nobody reads any more
    (`qmpctl migrate | true`)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-c", FAKE_RUN, *args], stdout=write,
                              stderr=write if stderr_too else subprocess.PIPE, timeout=60)
    finally:
        os.close(write)


@pytest.mark.parametrize("verdict", ["verified", "mismatch", "inconclusive"])
@pytest.mark.parametrize("extra", [(), ("--json",)])
@pytest.mark.parametrize("stderr_too", [False, True])
def test_a_closed_output_pipe_keeps_the_verdicts_exit_code(
        verdict: str, extra: tuple[str, ...], stderr_too: bool) -> None:
    done = run_into_closed_pipe(verdict, *extra, stderr_too=stderr_too)
    assert done.returncode == VERDICTS[verdict], done.stderr  # type: ignore[index]
    if not stderr_too:
        assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr


def run_fake(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", FAKE_RUN, *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs of its own (needs root)."""
    where = tmp_path / "fs"
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)]).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.parametrize(("verdict", "code"), [("verified", 8), ("mismatch", 1),
                                               ("inconclusive", 6)])
def test_a_report_that_cannot_be_written_has_its_own_exit_code(verdict: str, code: int) -> None:
    """/dev/full passes the probe (it opens); the final write fails: the verdict
    is still printed, and a verified run exits 8, not 0; a run that did not
    verify keeps its own code."""
    done = run_fake(verdict, "--report", "/dev/full")
    assert done.returncode == code, done.stderr
    assert f"verdict: {verdict.upper()}" in done.stdout + done.stderr
    assert ("--report /dev/full: could not be written (No space left on device)"
            in done.stderr), done.stderr
    assert "Traceback" not in done.stderr


def test_a_full_file_system_is_refused_before_the_run(small_fs: Path) -> None:
    (small_fs / "fill").write_bytes(bytes(64 << 10))
    done = run_fake("verified", "--report", str(small_fs / "r.json"))
    assert done.returncode == 2, done.stderr
    assert "not writable (No space left on device)" in done.stderr
    assert "verdict:" not in done.stdout  # nothing ran
    assert sorted(p.name for p in small_fs.iterdir()) == ["fill"]


def test_a_report_is_written_whole_or_not_at_all(small_fs: Path) -> None:
    """The disk fills up while the report is written: the previous report stays
    as it was, and nothing partial is left beside it."""
    path = small_fs / "r.json"
    path.write_text('{"old": true}\n')
    with pytest.raises(ReportUnwritten, match="No space left on device"):
        write_report(path, "x" * (128 << 10))
    assert path.read_text() == '{"old": true}\n'
    assert [p.name for p in small_fs.iterdir()] == ["r.json"]
    write_report(path, '{"new": true}\n')
    assert path.read_text() == '{"new": true}\n'
    assert [p.name for p in small_fs.iterdir()] == ["r.json"]


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_exit_table() -> dict[str, int]:
    """The README's "Verdicts and exit codes" table (between its snippet markers,
    which docs/verdicts.md includes): verdict -> exit code."""
    text = README.read_text().split("--8<-- [start:verdicts]", 1)[1]
    text = text.split("--8<-- [end:verdicts]", 1)[0]
    rows = re.findall(r"^\| (\d+) \| `([a-z-]+)` \|", text, re.MULTILINE)
    return {verdict: int(code) for code, verdict in rows}


def test_the_readmes_exit_code_table_is_the_codes() -> None:
    assert readme_exit_table() == {v: int(c) for v, c in VERDICTS.items()}
    assert set(VERDICTS.values()) == set(ExitCode)  # every exit code has its verdict


def error_classes() -> list[type[QmpctlError]]:
    out, todo = [], [QmpctlError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo += cls.__subclasses__()
    return out


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_maps_to_a_row_of_the_table(cls: type[QmpctlError]) -> None:
    assert readme_exit_table()[verdict_for(cls.exit_code)] == cls.exit_code


@pytest.mark.parametrize("verdict", [v for v in VERDICTS if v != "report-unwritten"])
def test_every_verdict_agrees_in_exit_code_verdict_line_and_report(
        verdict: str, tmp_path: Path) -> None:
    """Each row of the table through the real CLI (the run faked): the process's
    exit code, the verdict line and the report written all say the same."""
    report = tmp_path / "r.json"
    done = run_fake(verdict, "--report", str(report))
    code = readme_exit_table()[verdict]
    assert done.returncode == code, done.stderr
    assert f"verdict: {verdict.upper()} (exit {code})" in done.stdout + done.stderr
    written = json.loads(report.read_text())
    assert (written["verdict"], written["exit_code"]) == (verdict, code)
