"""--topology netns: source and destination QEMU in two network namespaces the
run makes, joined by a veth (192.0.2.1/30 <-> 192.0.2.2/30), migrating over TCP
across it. Written on the pytest plugin; TCG and a small wave keep it quick."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from qmpctl.cli import app
from qmpctl.host.netns import host_problem, list_namespaces
from qmpctl.host.remote import NetnsHost
from qmpctl.qemu.machine import QemuMachine
from qmpctl.scenario.options import MigrateOptions, effective_transport, effective_verify, resolve
from qmpctl.testing import Hooks, MigrateFn, assert_verified
from tests.conftest import our_qemu_processes

NETNS_PROBLEM = host_problem()
needs_netns = pytest.mark.skipif(NETNS_PROBLEM is not None, reason=f"netns: {NETNS_PROBLEM}")
SMALL: dict[str, Any] = dict(accel="tcg", ram=64, wave_end=18, timeout=120.0)
# 192.0.2.2:4444 as /proc/net/tcp writes it (little-endian address, hex port), ESTABLISHED.
TO_DST = "020200C0:115C"


def our_namespaces() -> set[str]:
    return {n for n in list_namespaces() if n.startswith("qmpctl-")}


def net_ns(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def migration_connections(pid: int) -> list[str]:
    """Established TCP connections to 192.0.2.2:4444 seen from `pid`'s namespace."""
    lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    return [ln for ln in lines if ln.split()[2] == TO_DST and ln.split()[3] == "01"]


@needs_netns
@pytest.mark.qemu
async def test_netns_precopy_verified(qmpctl_migrate: MigrateFn) -> None:
    before = our_namespaces()
    seen: dict[str, Any] = {}

    async def before_migration(src: QemuMachine, dst: QemuMachine) -> None:
        # Each QEMU runs in its own namespace (not ours). The source's monitor and
        # console are the run directory's unix sockets; the destination, a
        # remote host, listens on TCP in its namespace and is reached over the veth.
        assert src.pid is not None and dst.pid is not None
        assert isinstance(dst.host, NetnsHost)
        seen["ns"] = {net_ns(src.pid), net_ns(dst.pid), net_ns(os.getpid())}
        seen["named"] = (net_ns(src.pid) == os.stat(f"/run/netns/{src.spec.netns}").st_ino
                         and net_ns(dst.pid) == os.stat(f"/run/netns/{dst.host.namespace}").st_ino)
        seen["status"] = (await src.status(), await dst.status())
        seen["remote"] = (dst.spec.listen, dst.host.reach_from == src.spec.netns,
                          dst.spec.qmp_socket.exists(), src.spec.qmp_socket.exists())

    async def on_pass(n: int, src: QemuMachine, dst: QemuMachine) -> None:
        if n == 1:
            assert src.pid is not None
            seen["tcp"] = migration_connections(src.pid)

    report = await qmpctl_migrate(hooks=Hooks(before_migration=before_migration,
                                              on_pass=on_pass),
                                  topology="netns", **SMALL)
    assert_verified(report)
    assert our_qemu_processes() == []
    cfg = report.config
    assert cfg is not None and cfg.topology == "netns" and cfg.transport == "tcp"
    assert cfg.netns is not None
    assert (cfg.netns.src_address, cfg.netns.dst_address, cfg.netns.prefix_len) == (
        "192.0.2.1", "192.0.2.2", 30)
    assert cfg.netns.src_namespace.startswith("qmpctl-")
    assert cfg.netns.src_namespace.endswith("-src") and cfg.netns.dst_namespace.endswith("-dst")
    assert len(seen["ns"]) == 3 and seen["named"] is True, seen
    assert seen["status"] == ("running", "inmigrate"), seen
    assert len(seen["tcp"]) == 1, seen  # the migration stream crossed the veth
    assert seen["remote"] == ("192.0.2.6", True, False, True), seen  # management veth
    # the destination's RAM was hashed where it lives, by qmpctl agent
    assert cfg.verify == "hash" and report.memory is not None
    assert report.memory.pages_compared == report.memory.pages_total
    remote_checks = [c for c in report.guest_checks if "via qmpctl agent" in c.stage]
    assert [c.name for c in remote_checks] == ["wave-invariant", "wave-invariant"]
    assert all(c.ok for c in remote_checks)
    assert all(not b.compared and "another host" in b.reason
               for b in report.ramblocks if b.name != "ram0")
    left = our_namespaces()
    assert cfg.netns.src_namespace not in left and cfg.netns.dst_namespace not in left
    assert left <= before, f"namespaces left behind: {left - before}"


def start_slow_netns_run(report: Path) -> subprocess.Popen[str]:
    """A netns qmpctl migrate held back at 1 MiB/s; returns once it is migrating."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from qmpctl.cli import main; main()", "migrate",
         "--topology", "netns", "--accel", "tcg", "--ram", "64", "--wave-end", "18",
         "--throttle", "1", "--min-passes", "50", "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("-name qmpctl-dst" in p
                                                  for p in our_qemu_processes()):
        time.sleep(0.2)
    time.sleep(1)
    return proc


@needs_netns
@pytest.mark.qemu
def test_sigint_deletes_the_namespaces(tmp_path: Path) -> None:
    before = our_namespaces()
    proc = start_slow_netns_run(tmp_path / "r.json")
    made = our_namespaces() - before
    assert len(made) == 2, made
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["verdict"] == "interrupted" and data["source_state_after"] == "running"
    assert {data["config"]["netns"]["src_namespace"],
            data["config"]["netns"]["dst_namespace"]} == made
    assert our_qemu_processes() == []
    assert not (our_namespaces() & made)


def kill_a_netns_run(report: Path) -> set[str]:
    """SIGKILL a migrating netns run; return the namespaces it left."""
    before = our_namespaces()
    proc = start_slow_netns_run(report)
    proc.kill()  # no cleanup: its QEMUs die with it, its namespaces and directory stay
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while our_qemu_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert our_qemu_processes() == []
    return our_namespaces() - before


@needs_netns
@pytest.mark.qemu
async def test_a_killed_runs_namespaces_are_swept_by_the_next(
        qmpctl_migrate: MigrateFn, tmp_path: Path) -> None:
    left = kill_a_netns_run(tmp_path / "r.json")
    assert len(left) == 2, left
    report = await qmpctl_migrate(topology="netns", **SMALL)
    assert_verified(report)
    assert not (our_namespaces() & left)


def test_netns_implies_tcp() -> None:
    assert effective_transport(MigrateOptions.from_kwargs(topology="netns")) == "tcp"
    assert effective_transport(MigrateOptions.from_kwargs()) == "unix"
    assert effective_transport(MigrateOptions.from_kwargs(transport="tcp")) == "tcp"


@needs_netns
def test_netns_with_explicit_tcp_resolves() -> None:
    # tcp is what netns needs: given explicitly it is accepted, and it is
    # what netns gives when left out (unix is refused: the next test).
    given = resolve(MigrateOptions.from_kwargs(topology="netns", transport="tcp", accel="tcg"))
    implied = resolve(MigrateOptions.from_kwargs(topology="netns", accel="tcg"))
    assert effective_transport(given.options) == effective_transport(implied.options) == "tcp"
    assert effective_verify(given.options) == "hash"  # the destination is remote


runner = CliRunner()


@pytest.mark.parametrize(("args", "message"), [
    (["--topology", "netns", "--transport", "unix"],
     "--transport unix: --topology netns puts source and destination in two network "
     "namespaces and migrates over TCP across the veth between them"),
    (["--topology", "bridge"], "--topology 'bridge': choose local or netns"),
])
def test_bad_topology_input(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["migrate", "--accel", "tcg", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert our_qemu_processes() == []
