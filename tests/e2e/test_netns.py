"""host.netns with real namespaces (this machine is root): a TCP connection
from the source namespace to a listener in the destination one, the link
taken down and up, a tc tbf rate, deletion, and the sweep of a dead run's
namespaces. Only 192.0.2.0/24 addresses, only inside namespaces made here."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from qmpctl.host.netns import NetnsPair, host_problem, list_namespaces, sweep_stale_namespaces
from qmpctl.qemu.rundir import RunDir

pytestmark = pytest.mark.skipif(host_problem(tools=("ip", "tc")) is not None,
                                reason=f"netns: {host_problem(tools=('ip', 'tc'))}")

PORT = 5201
SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
print("ready", flush=True)
while True:
    c, _ = s.accept()
    n = 0
    while chunk := c.recv(65536):
        n += len(chunk)
    c.sendall(str(n).encode())
    c.close()
"""
CLIENT = """
import socket, sys, time
t0 = time.monotonic()
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[4]))
    c.sendall(b"x" * int(sys.argv[3]))
    c.shutdown(socket.SHUT_WR)
    print(c.recv(100).decode(), round(time.monotonic() - t0, 3))
except OSError as exc:
    print("failed", exc)
    sys.exit(1)
"""


def in_ns(ns: str, script: str, *args: object) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-c", script, *map(str, args)]


def send(pair: NetnsPair, nbytes: int, timeout: float = 5.0) -> tuple[bool, str]:
    """From the source namespace to the destination's listener."""
    done = subprocess.run(in_ns(pair.src_ns, CLIENT, pair.dst_addr, PORT, nbytes, timeout),
                          capture_output=True, text=True, timeout=timeout + 30)
    return done.returncode == 0, done.stdout.strip()


@pytest.fixture
def pair() -> Iterator[NetnsPair]:
    # Named after a real run directory, so a concurrent qmpctl does not sweep it.
    with RunDir.create() as run_dir:
        netns = NetnsPair(run_dir.path.name)
        try:
            netns.create()
            yield netns
        finally:
            netns.delete()


@pytest.fixture
def listener(pair: NetnsPair) -> Iterator[None]:
    server = subprocess.Popen(in_ns(pair.dst_ns, SERVER, pair.dst_addr, PORT),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield
    finally:
        server.kill()
        server.wait()


def test_tcp_between_the_namespaces_then_deleted(pair: NetnsPair, listener: None) -> None:
    names = list_namespaces()
    assert pair.src_ns in names and pair.dst_ns in names
    pair.create()  # idempotent
    ok, out = send(pair, 100_000)
    assert ok, out
    assert out.split()[0] == "100000"
    # The veth lives only inside the namespaces, never in the host's own.
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "veth-src" not in host_links and "veth-dst" not in host_links
    src_addrs = subprocess.run(["ip", "-n", pair.src_ns, "-o", "addr"], capture_output=True,
                               text=True).stdout
    assert "192.0.2.1/30" in src_addrs
    pair.delete()
    pair.delete()  # idempotent
    names = list_namespaces()
    assert pair.src_ns not in names and pair.dst_ns not in names


def test_link_down_cuts_and_up_restores(pair: NetnsPair, listener: None) -> None:
    pair.link(False)
    ok, out = send(pair, 1000, timeout=1.0)
    assert not ok, out
    pair.link(True)
    deadline = time.monotonic() + 10
    while not (result := send(pair, 1000, timeout=1.0))[0] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert result[0], result[1]


def test_rate_limits_with_tbf_and_is_removed(pair: NetnsPair, listener: None) -> None:
    pair.rate(16)  # 16 Mbit/s: 2 MB take about 1 s
    shown = subprocess.run(["tc", "-n", pair.dst_ns, "qdisc", "show", "dev", "veth-dst"],
                           capture_output=True, text=True).stdout
    assert "tbf" in shown and "rate 16Mbit" in shown
    ok, out = send(pair, 2_000_000, timeout=20)
    assert ok, out
    assert out.split()[0] == "2000000"
    assert float(out.split()[1]) >= 0.7, f"2 MB at 16 Mbit/s took only {out.split()[1]} s"
    pair.rate(None)
    pair.rate(None)  # nothing left to remove: fine
    for ns, dev in ((pair.src_ns, "veth-src"), (pair.dst_ns, "veth-dst")):
        shown = subprocess.run(["tc", "-n", ns, "qdisc", "show", "dev", dev],
                               capture_output=True, text=True).stdout
        assert "tbf" not in shown


def test_a_dead_runs_namespaces_are_swept() -> None:
    run_dir = RunDir.create()
    dead = NetnsPair(run_dir.path.name)
    alive_dir = RunDir.create()
    alive = NetnsPair(alive_dir.path.name)
    try:
        dead.create()
        alive.create()
        run_dir.remove()  # what rundir.sweep_stale does once its qmpctl died
        removed = sweep_stale_namespaces(run_dir.path.parent)
        assert {dead.src_ns, dead.dst_ns} <= set(removed)
        assert alive.src_ns not in removed and alive.dst_ns not in removed
        names = list_namespaces()
        assert dead.src_ns not in names and alive.src_ns in names and alive.dst_ns in names
    finally:
        dead.delete()
        alive.delete()
        run_dir.remove()
        alive_dir.remove()
