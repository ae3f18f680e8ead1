"""The CLI's output paths, without QEMU: a run's outcome is faked, the
process and its pipes are real."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# A `qmpctl migrate` whose run is replaced by a report with the given verdict.
FAKE_RUN = textwrap.dedent("""
    import sys
    import qmpctl.cli as cli
    from qmpctl.core.errors import VERDICTS
    from qmpctl.scenario.runner import new_report

    verdict = sys.argv.pop(1)

    async def fake(opts, live, repeat, until_fail=False):
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
    from qmpctl.core.errors import VERDICTS

    done = run_into_closed_pipe(verdict, *extra, stderr_too=stderr_too)
    assert done.returncode == VERDICTS[verdict], done.stderr  # type: ignore[index]
    if not stderr_too:
        assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr
