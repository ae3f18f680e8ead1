"""Bad input fails before any guest starts, with one specific line (checks
against the QEMU schema run a short-lived probe QEMU first). Expectations
hold on any host; the checks against this host's KVM facts are unit tests
with the facts injected (tests/unit/test_inputs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qmpctl.cli import app
from qmpctl.core.units import MiB
from qmpctl.guests.images import image_path
from qmpctl.host.kvm import host_arch
from qmpctl.host.memory import mem_total
from tests.conftest import our_qemu_processes

runner = CliRunner()


@pytest.mark.parametrize(("args", "message"), [
    (["--dirty-ring", "3000", "--accel", "kvm"],
     "--dirty-ring 3000: must be a power of two (or 0 for bitmap)"),
    (["--arch", "riscv64"], "unknown arch 'riscv64'; choose one of x86_64, aarch64"),
    (["--qemu", "/nonexistent/qemu-system-x86_64"],
     "QEMU binary not found: /nonexistent/qemu-system-x86_64"),
    (["--qemu-src", "8.2"],
     "no QEMU 8.2 for x86_64 is known; known: 10.0 ("),
    (["--report", "/nonexistent-dir/r.json"],
     "--report /nonexistent-dir/r.json: directory /nonexistent-dir does not exist"),
    (["--transport", "rdma"], "--transport 'rdma': choose unix, tcp or file"),
    (["--compare-method", "fast"], "--compare-method 'fast': choose auto, map, read or hash"),
    (["--verify", "hash", "--compare-method", "map"],
     "--compare-method map: --verify hash, so each side's pages are hashed where they live"),
    (["--wave-end", "500"], "wave range 0x200000-0x1f400000 must lie in RAM from 0x200000 "
                            "(below it: firmware, the guest and its tables); RAM is "
                            "0x0-0xa000000"),
    (["--ram", "4096", "--wave-end", "3100"], "RAM is 0x0-0xc0000000, 0x100000000-0x140000000"),
    (["--arch", "aarch64", "--smp", "1"], "needs at least 2 vCPUs"),
    (["--guest", "linux", "--ram", "128"], "--ram 128: Linux guests need at least 256 MiB"),
    (["--exclude", "0x1000"], "--exclude '0x1000': expected START-END[:REASON]"),
    (["--ram", "0"], "--ram 0 MiB: must be at least 32"),
    (["--smp", "300"], "--smp 300: must be 1..8"),
    (["--accel", "tcg", "--dirty-ring", "1024"],
     "--dirty-ring 1024: only applies to KVM, and this run uses TCG (requested)"),
    (["--capability", "no-such-cap", "--accel", "tcg"],
     "unknown migration capability 'no-such-cap' for QEMU 10."),
    (["--parameter", "multifd-compression=lz4", "--accel", "tcg"],
     "migration parameter multifd-compression='lz4': choose one of none, zlib"),
    (["--accel", "tcg", "--qemu", "7.2", "--zero-page-detection", "none"],
     "unknown migration parameter 'zero-page-detection' for QEMU 7.2."),
    (["--accel", "tcg", "--dirty-limit", "50"],
     "--dirty-limit: dirty-limit meters the KVM dirty ring, and this run uses TCG"),
    (["--accel", "tcg", "--multifd", "2", "--multifd-compression", "lz4"],
     "--multifd-compression 'lz4': choose none, zlib or zstd"),
    (["--accel", "tcg", "--xbzrle-cache", "8", "--multifd", "2"],
     "QEMU does not combine xbzrle and multifd"),
    (["--parameter", "no-such-param=1", "--accel", "tcg"],
     "unknown migration parameter 'no-such-param' for QEMU 10."),
    (["--ram-dir", "shm"], "--ram-dir shm: must be an absolute path"),
    (["--ram-dir", "/nonexistent"], "--ram-dir /nonexistent: does not exist"),
    (["--ram-dir", "/etc/hostname"], "--ram-dir /etc/hostname: is not a directory"),
    (["--ram-dir", "/etc"], "not tmpfs: guest RAM must live in memory"),
    (["--timeout", "nan"], "--timeout nan: must be a positive number of seconds"),
    (["--hold-timeout", "inf"], "--hold-timeout inf: must be a positive number of seconds"),
    (["--boot-timeout", "-1"], "--boot-timeout -1.0: must be a positive number of seconds"),
    (["--guest", "kernel", "--kernel", "/etc/passwd", "--guest-timeout", "nan"],
     "--guest-timeout nan: must be a positive number of seconds"),
    (["--guest", "kernel", "--kernel", "/etc/passwd"],
     "--kernel /etc/passwd: not a kernel image QEMU boots on x86: no ELF, multiboot or "
     "Linux boot protocol header"),
    (["--guest", "kernel", "--arch", "aarch64", "--kernel", "/etc/passwd"],
     "--kernel /etc/passwd: a text file, not a kernel image"),
    (["--parameter", "downtime-limit=-1", "--accel", "tcg"],
     "migration parameter downtime-limit=-1: must be 0..2000000 for QEMU 10."),
    (["--parameter", "max-bandwidth=-5", "--accel", "tcg"],
     "migration parameter max-bandwidth=-5: must be >= 0 (unsigned) for QEMU 10."),
    (["--exclude", "0x1001-0x2000:odd"],
     "--exclude 0x1001-0x2000: not aligned to 4 KiB pages, which are compared whole; the "
     "pages it touches are 0x1000-0x2000"),
])
def test_usage_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["migrate", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert our_qemu_processes() == []


@pytest.mark.parametrize(("args", "message"), [
    (["--report", "/proc/x.json"], "--report /proc/x.json: not writable"),
    (["--artifacts", "/proc/x"], "--artifacts /proc/x: cannot create it"),
])
def test_unwritable_paths_are_refused_before_launch(args: list[str], message: str) -> None:
    """Even as root: qmpctl writes a probe file instead of trusting permissions."""
    result = runner.invoke(app, ["migrate", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert our_qemu_processes() == []


def test_ram_that_does_not_fit_is_refused_before_launch() -> None:
    total = mem_total()
    assert total is not None
    ram = total // MiB * 3 // 4  # one copy fits in memory, two do not fit on /dev/shm
    result = runner.invoke(app, ["migrate", "--accel", "tcg", "--ram", str(ram)])
    assert result.exit_code == 3, result.output
    assert "not enough room for 2 copies of guest RAM in /dev/shm" in result.output
    assert "MiB missing" in result.output
    assert our_qemu_processes() == []


def test_ram_beyond_the_host_is_refused_for_its_size() -> None:
    """Not with a message about the wave's stride, which that size also breaks."""
    result = runner.invoke(app, ["migrate", "--ram", "999999999"])
    assert result.exit_code == 3, result.output
    assert "--ram 999999999 MiB: more than this host's memory" in result.output
    assert "stride" not in result.output


def test_a_truncated_elf_kernel_is_refused_before_launch(tmp_path: Path) -> None:
    whole = (image_path("x86_64", "wave.elf")).read_bytes()
    cut = tmp_path / "cut.elf"
    cut.write_bytes(whole[:3000])
    result = runner.invoke(app, ["migrate", "--guest", "kernel", "--kernel", str(cut)])
    assert result.exit_code == 2, result.output
    assert f"--kernel {cut}: a truncated ELF file: segment 0 ends at byte" in result.output
    assert our_qemu_processes() == []


@pytest.mark.parametrize("args", [
    ["--smp", "300"],  # refused by the options
    ["--accel", "tcg", "--parameter", "downtime-limit=-1"],  # by the QEMU's schema
])
def test_every_usage_error_writes_the_report(args: list[str], tmp_path: Path) -> None:
    """One rule: once --report itself is checked, it is written whatever the verdict."""
    report = tmp_path / "r.json"
    result = runner.invoke(app, ["migrate", *args, "--report", str(report)])
    assert result.exit_code == 2, result.output
    written = json.loads(report.read_text())
    assert (written["verdict"], written["exit_code"]) == ("usage-error", 2)
    assert written["error"] in result.output


def test_kvm_requested_for_a_foreign_arch() -> None:
    foreign = "aarch64" if host_arch() == "x86_64" else "x86_64"
    result = runner.invoke(app, ["migrate", "--arch", foreign, "--accel", "kvm"])
    assert result.exit_code == 2
    assert f"--accel kvm: KVM cannot run {foreign} guests on this host" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--exclude", "0x100000000-0x100001000"],
     "--exclude 0x100000000-0x100001000: outside guest RAM 0x0-0xa000000"),
    (["--exclude", "0x0-0xa000000"],
     "--exclude: the exclusions cover all of guest RAM; nothing would be compared"),
    (["--arch", "aarch64", "--exclude", "0x0-0x1000"],
     "--exclude 0x0-0x1000: outside guest RAM 0x40000000-0x4a000000"),
])
def test_exclusions_checked_before_launch(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["migrate", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert our_qemu_processes() == []
