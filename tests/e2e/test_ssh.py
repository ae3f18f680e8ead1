"""The destination on another host, reached through ssh, tested on one
machine: `--topology netns --dst-via ssh` starts an sshd of the run's own in
the destination's namespace (keys made for the run), and qmpctl drives that
"host" only through ssh: QEMU and the agent under `qmpctl tether`, QMP,
serial and the agent through `qmpctl relay`, a run directory of its own
there. Every test checks that nothing is left on the "remote": no QEMU, no
tether, relay, agent or sshd, no run directory."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from qmpctl.core.errors import ExitCode
from qmpctl.host.netns import host_problem, list_namespaces, sweep_stale_namespaces
from qmpctl.host.remote import SshHost
from qmpctl.host.sshd import sshd_problem
from qmpctl.qemu.machine import QemuMachine
from qmpctl.qemu.rundir import default_root, sweep_stale
from qmpctl.report.models import RunReport
from qmpctl.testing import Hooks, MigrateFn, assert_verified
from tests.conftest import our_qemu_processes

PROBLEM = host_problem() or sshd_problem()
pytestmark = [pytest.mark.skipif(PROBLEM is not None, reason=f"ssh via netns: {PROBLEM}"),
              pytest.mark.qemu]
SMALL: dict[str, Any] = dict(topology="netns", dst_via="ssh", accel="tcg", ram=64,
                             wave_end=18, timeout=120.0)
HELPERS = ("qmpctl tether", "qmpctl relay", "qmpctl agent", "sshd_config")


def our_helpers() -> list[str]:
    """tethers, relays, agents and sshds of ours still running (not zombies)."""
    out = subprocess.run(["ps", "-eo", "stat=,pid=,args="], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines()
            if any(h in line for h in HELPERS) and not line.lstrip().startswith("Z")]


def our_namespaces() -> set[str]:
    return {n for n in list_namespaces() if n.startswith("qmpctl-")}


def assert_nothing_left(report: RunReport, namespaces_before: set[str]) -> None:
    assert our_qemu_processes() == []
    assert our_helpers() == []
    assert report.config is not None and report.config.destination_host is not None
    remote_dir = Path(report.config.destination_host.run_dir)
    assert remote_dir.name.endswith("-dst") and not remote_dir.exists(), remote_dir
    assert our_namespaces() <= namespaces_before


async def test_ssh_precopy_verified(qmpctl_migrate: MigrateFn) -> None:
    before = our_namespaces()
    seen: dict[str, Any] = {}

    def look(src: QemuMachine, dst: QemuMachine) -> None:
        assert isinstance(dst.host, SshHost) and dst.pid is not None
        assert src.spec.netns is not None
        # The local process is ssh (exec'd by `ip netns exec` in the source's
        # namespace); QEMU runs on the "host", under its tether.
        local = Path(f"/proc/{dst.pid}/cmdline").read_bytes().split(b"\0")
        seen["local"] = local[0].decode()
        seen["local_ns"] = os.stat(f"/proc/{dst.pid}/ns/net").st_ino
        seen["src_ns"] = os.stat(f"/run/netns/{src.spec.netns}").st_ino
        seen["qemu_pid"] = int((dst.host.run_dir / "dst.pid").read_text())
        seen["qemu_ns"] = os.stat(f"/proc/{seen['qemu_pid']}/ns/net").st_ino
        seen["dst_ns"] = os.stat(f"/run/netns/{src.spec.netns.removesuffix('-src')}-dst").st_ino
        seen["remote_files"] = sorted(p.name for p in dst.host.run_dir.iterdir())
        seen["ram_path"] = dst.spec.ram_path

    async def before_migration(src: QemuMachine, dst: QemuMachine) -> None:
        await asyncio.to_thread(look, src, dst)
        seen["status"] = (await src.status(), await dst.status())

    report = await qmpctl_migrate(hooks=Hooks(before_migration=before_migration), **SMALL)
    assert_verified(report)
    cfg = report.config
    assert cfg is not None and cfg.destination_host is not None
    host = cfg.destination_host
    assert (host.reached_by, host.host, host.migration_address) == ("ssh", "root@192.0.2.6",
                                                                     "192.0.2.2")
    assert host.qmpctl_version
    assert seen["local"] == "ssh" and seen["local_ns"] == seen["src_ns"], seen
    assert seen["qemu_ns"] == seen["dst_ns"], seen  # QEMU runs in the "remote" namespace
    # its files are in the run directory there, sockets included: nothing on TCP
    assert {"agent.sock", "agent.pid", "dst.ram", "dst.pid", "dst.qmp.sock",
            "dst.serial.sock"} <= set(seen["remote_files"]), seen
    assert seen["ram_path"].parent == Path(host.run_dir)
    assert seen["status"] == ("running", "inmigrate"), seen
    assert cfg.verify == "hash" and report.memory is not None
    assert report.memory.pages_compared == report.memory.pages_total
    remote_checks = [c for c in report.guest_checks if "via qmpctl agent" in c.stage]
    assert [c.name for c in remote_checks] == ["wave-invariant", "wave-invariant"]
    assert all(c.ok for c in remote_checks)
    assert_nothing_left(report, before)


async def test_ssh_killed_destination(qmpctl_migrate: MigrateFn, tmp_path: Path) -> None:
    """kill-dst reaches QEMU on the "host" (by the pid its tether recorded);
    the run ends at once naming QEMU's end, the source runs on."""
    before = our_namespaces()
    t0 = time.monotonic()
    report = await qmpctl_migrate(fault=("kill-dst@pass:2",), artifacts=tmp_path, **SMALL)
    took = time.monotonic() - t0
    assert (report.verdict, report.exit_code) == ("migration-failed",
                                                  ExitCode.MIGRATION_FAILED), report.error
    assert report.error is not None
    assert report.error.startswith("dst QEMU killed by SIGKILL"), report.error
    assert "qemu-system-x86_64 (pid" in report.error  # the tether's word, from the remote
    assert report.source_state_after == "running"
    assert "on root@192.0.2.6 (ssh)" in report.faults[0].detail
    assert took < 60, took
    assert "killed by SIGKILL" in (tmp_path / "dst.log").read_text()  # fetched back
    assert_nothing_left(report, before)


async def test_no_qmpctl_on_the_host_is_an_error_before_anything_starts(
        qmpctl_migrate: MigrateFn) -> None:
    before = our_namespaces()
    report = await qmpctl_migrate(dst_qmpctl="/nonexistent/python3 -m qmpctl", **SMALL)
    assert (report.verdict, report.exit_code) == ("environment-error", ExitCode.ENVIRONMENT)
    assert report.error is not None and "cannot run qmpctl there" in report.error
    assert report.boot_s is None and report.migration is None  # the source never started
    assert_nothing_left(report, before)


async def test_an_unreachable_host_is_an_error_before_anything_starts(
        qmpctl_migrate: MigrateFn) -> None:
    report = await qmpctl_migrate(dst_host="root@192.0.2.99", accel="tcg", ram=64,
                                  wave_end=18)
    assert (report.verdict, report.exit_code) == ("environment-error", ExitCode.ENVIRONMENT)
    assert report.error is not None
    assert report.error.startswith("ssh root@192.0.2.99: the host cannot be reached"), \
        report.error
    assert report.boot_s is None and our_qemu_processes() == []


def test_a_killed_qmpctl_leaves_nothing_on_the_host(tmp_path: Path) -> None:
    """SIGKILL qmpctl mid-migration: its ssh sessions end, so each tether ends
    its QEMU or agent, and the agent's removes the run directory there."""
    report = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from qmpctl.cli import main; main()", "migrate",
         "--topology", "netns", "--dst-via", "ssh", "--accel", "tcg", "--ram", "64",
         "--wave-end", "18", "--throttle", "1", "--min-passes", "50", "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        remote: list[Path] = []
        while time.monotonic() < deadline and not remote:
            remote = [d for d in default_root().glob("qmpctl-*-dst") if (d / "dst.pid").exists()]
            time.sleep(0.2)
        assert remote, "the destination did not start"
        time.sleep(1)
        qemu_pid = int((remote[0] / "dst.pid").read_text())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (remote[0].exists() or our_helpers()
                                           or Path(f"/proc/{qemu_pid}").exists()):
        time.sleep(0.2)
    try:
        assert not remote[0].exists()
        assert not Path(f"/proc/{qemu_pid}").exists()
        assert our_qemu_processes() == [] and our_helpers() == []
    finally:
        sweep_stale()
        sweep_stale_namespaces(default_root())
    assert not report.exists()  # SIGKILL: no report, as ever
