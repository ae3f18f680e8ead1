"""The pytest plugin driving real migrations in a pytester session: JUnit
properties, artifacts kept only for the failed test, and --qmpctl-timeout
cancelling a run that would take too long (its QEMUs shut down)."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import our_qemu_processes

pytestmark = pytest.mark.qemu

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
junit_family = xunit1
filterwarnings = ignore::pytest.PytestAssertRewriteWarning
"""

TARGET = 0x0A0_0123 + 0x30_0000  # a byte of the wave range nothing writes
SUITE = f"""
    import pytest
    from qmpctl.testing import assert_verified, corrupt_destination

    SMALL = dict(accel="tcg", ram=64, wave_end=18, timeout=120.0)

    async def test_verified(qmpctl_migrate):
        assert_verified(await qmpctl_migrate(**SMALL))

    async def test_corrupted(qmpctl_migrate):
        report = await qmpctl_migrate(hooks=corrupt_destination({TARGET:#x}), **SMALL)
        assert_verified(report)
"""


def properties(xml: Path) -> dict[str, dict[str, str]]:
    root = ET.parse(xml).getroot()
    return {case.get("name", ""): {p.get("name", ""): p.get("value", "")
                                   for p in case.iter("property")}
            for case in root.iter("testcase")}


def test_failed_test_keeps_artifacts_and_junit_has_the_figures(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SUITE)
    artifacts, xml = tmp_path / "artifacts", tmp_path / "junit.xml"
    result = pytester.runpytest(f"--qmpctl-artifacts={artifacts}", f"--junitxml={xml}")
    result.assert_outcomes(passed=1, failed=1)
    page = f"0x{TARGET & ~0xFFF:x}"
    result.stdout.fnmatch_lines([f"E * page gpa {page} (wave workload), first differing "
                                 f"byte +0x123: src * | dst *"])
    assert our_qemu_processes() == []

    props = properties(xml)
    ok, bad = props["test_verified"], props["test_corrupted"]
    assert ok["qmpctl_verdict"] == "verified" and ok["qmpctl_pages_differing"] == "0"
    assert ok["qmpctl_pages_compared"] == str(64 * 256) and int(ok["qmpctl_passes"]) >= 3
    assert int(ok["qmpctl_downtime_ms"]) >= 0
    assert bad["qmpctl_verdict"] == "mismatch" and bad["qmpctl_pages_differing"] == "1"

    # Only the failed test keeps a folder; in it, everything about its run.
    assert [p.name for p in artifacts.iterdir()] == ["test_suite.py_test_corrupted"]
    kept = artifacts / "test_suite.py_test_corrupted"
    run = kept / "run-1"
    assert {"src.log", "dst.log", "src.serial", "dst.serial", "report.json"} <= \
        {p.name for p in run.iterdir()}
    report = json.loads((run / "report.json").read_text())
    assert report["verdict"] == "mismatch"
    assert [m["gpa"] for m in report["memory"]["mismatches"]] == [TARGET & ~0xFFF]
    assert (run / "src.serial").stat().st_size > 0
    qmp = (kept / "qmp.log").read_text()
    assert "qemu.qmp.protocol.qmpctl-src DEBUG --> {" in qmp
    assert '"execute": "migrate"' in qmp and '"event": "MIGRATION"' in qmp
    assert "qemu.qmp.protocol.qmpctl-dst DEBUG <-- {" in qmp
    # The transcript went to the file only, not into pytest's captured log
    # (which may still carry a warning, e.g. a stale run directory swept).
    out = result.stdout.str()
    assert "--> {" not in out and "<-- {" not in out
    assert "Unknown ID" not in out  # no reply dropped by a cancelled heartbeat


def test_timeout_cancels_the_run_and_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_slow="""
        async def test_held_back(qmpctl_migrate):
            # 1 MiB/s until 50 passes: would take minutes.
            await qmpctl_migrate(accel="tcg", ram=64, wave_end=18, throttle=1,
                                 min_passes=50, timeout=300.0)
    """)
    result = pytester.runpytest("--qmpctl-timeout=8")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "qmpctl_migrate: the test exceeded --qmpctl-timeout=8; the run was cancelled and its "
        "QEMUs shut down (verdict interrupted: interrupted; migration cancelled)"])
    assert our_qemu_processes() == []


def test_survivor_check_sees_a_qmpctl_qemu_left_running() -> None:
    """What the fixture checks after each run: a QEMU named qmpctl-* still
    running as this process's child is found (this one is started here)."""
    from qmpctl.pytest_plugin import our_qemu_children

    assert our_qemu_children() == []
    qemu = subprocess.Popen(["qemu-system-x86_64", "-name", "qmpctl-survivor", "-machine",
                             "none", "-nodefaults", "-display", "none", "-S"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        found = our_qemu_children()
        assert len(found) == 1 and found[0].startswith(f"pid {qemu.pid} (qemu-system-x86_64")
    finally:
        qemu.kill()
        qemu.wait()
    assert our_qemu_children() == []
