"""Labs for real: an arm64 KVM host booted under TCG (nested virtualization)
runs a command against this checkout, and the plugin runs a user's
qmpctl_kvm test there. The arm64 KVM ITS tests themselves run through the lab
in test_its_aarch64.py."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qmpctl.lab.suite import lab_available

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(
    (why := lab_available("aarch64")) is not None, reason=f"no aarch64 lab here: {why}")]
QMPCTL = [sys.executable, "-m", "qmpctl"]


def test_lab_run_returns_the_exit_code_and_brings_back_what_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    script = ("import os; open(os.environ['OUT'], 'w').write(open('/proc/cpuinfo').read()"
              " + 'kvm=' + str(os.path.exists('/dev/kvm')))")
    proc = subprocess.run(
        [*QMPCTL, "lab", "run", "--", "sh", "-c", f"OUT={out} python3 -c \"{script}\"; "
         f"echo lab-says-hello; exit 7", str(out)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 7, proc.stderr
    assert "lab-says-hello" in proc.stdout
    assert "tcg (TCG with nested virtualization" in proc.stderr
    assert "1 file(s) brought back; exit 7" in proc.stderr
    text = out.read_text()
    assert "CPU implementer" in text and text.endswith("kvm=True")  # arm64, with /dev/kvm


def test_plugin_runs_a_test_this_host_cannot_run_in_the_lab(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    pytester.makepyfile(textwrap.dedent("""
        import os, platform
        import pytest

        @pytest.mark.qmpctl_kvm(ring=True, arch="aarch64", ring_with_bitmap=True)
        def test_in_lab():
            assert platform.machine() == "aarch64" and os.environ["QMPCTL_LAB"] == "aarch64"
            assert os.path.exists("/dev/kvm")

        @pytest.mark.qmpctl_kvm(arch="aarch64")
        def test_fails_in_lab():
            assert 1 == 2, "the lab's own failure"

        @pytest.mark.skip(reason="skipped here")
        @pytest.mark.qmpctl_kvm(arch="aarch64")
        def test_skipped_is_never_carried():
            pass
    """))
    result = pytester.runpytest_subprocess("-rA", timeout=600)
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*[in the aarch64 lab]*the lab's own failure*",
                                 "*skipped here*"])
    # the lab's own pytest (its console, in the failure's message) ran two tests, not three
    console = result.stdout.str().partition("--- lab console ---")[2]
    assert re.search(r"\b1 failed, 1 passed in ", console), console
