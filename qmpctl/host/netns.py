"""Two network namespaces joined by a veth pair: source and destination QEMU
on either side of a real (virtual) link that can be taken down or rate-limited.

Everything goes through iproute2 (`ip`, `tc`) as subprocesses; the command
lists are built by pure methods (unit-tested without root). The veth is
created directly inside the two namespaces, so nothing appears in the host's
own namespace and deleting the namespaces deletes the link. Namespaces are
named after the run directory (`qmpctl-<suffix>-src`, `-dst`): those left by
a qmpctl that died are swept once its run directory is gone
(`sweep_stale_namespaces`). Addresses are TEST-NET-1 (192.0.2.0/24, RFC
5737) only, and exist only inside the two namespaces.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from ..core.errors import HostError, UsageError

log = logging.getLogger(__name__)

Side = Literal["src", "dst"]
LinkSide = Literal["src", "dst", "both"]
SIDES: tuple[Side, ...] = ("src", "dst")
NETNS_PREFIX = "qmpctl-"  # the run directory's prefix (qmpctl.qemu.rundir.PREFIX)
_OURS = re.compile(rf"^({re.escape(NETNS_PREFIX)}.+)-(src|dst|hub|h\d+)$")
TBF_LATENCY = "100ms"  # how long a packet may wait in the tbf queue before it is dropped
_TIMEOUT = 15.0


def namespace_name(base: str, side: str) -> str:
    """The namespace of `side` for the run directory named `base`."""
    return f"{base}-{side}"


def host_problem(euid: int | None = None,
                 which: Callable[[str], str | None] = shutil.which,
                 tools: tuple[str, ...] = ("ip",)) -> str | None:
    """Why this host cannot make network namespaces here, or None (pure when
    `euid` and `which` are given)."""
    if (os.geteuid() if euid is None else euid) != 0:
        return ("network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN); "
                "run qmpctl as root")
    for tool in tools:
        if which(tool) is None:
            return f"`{tool}` (iproute2) not found in PATH; install iproute2"
    return None


def check_host(tools: tuple[str, ...] = ("ip",)) -> None:
    if (problem := host_problem(tools=tools)) is not None:
        raise HostError(f"--topology netns: {problem}")


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT,
                              check=False, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise HostError(f"cannot run `{argv[0]}` (iproute2): {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"`{' '.join(argv)}` did not finish within {_TIMEOUT:g}s") from exc
    if check and done.returncode != 0:
        raise HostError(f"`{' '.join(argv)}` failed (exit {done.returncode}): "
                        f"{done.stderr.strip() or done.stdout.strip()}")
    return done


def list_namespaces() -> list[str]:
    """Named network namespaces (`ip netns list`)."""
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).stdout.splitlines()
            if line.strip()]


def tbf_burst(mbit: int) -> int:
    """Bucket size in bytes: 10 ms at the rate, at least 32 KiB (above any
    MTU and the timer tick's worth of data at low rates)."""
    return max(32 * 1024, mbit * 1_000_000 // 8 // 100)


@dataclass
class NetnsPair:
    """`base`-src and `base`-dst joined by a veth (`veth-src` / `veth-dst`).

    `create()` and `delete()` are idempotent; `delete()` removes whatever of
    the pair exists, so it also cleans up after a half-finished `create()`.
    """

    base: str  # the run directory's name, e.g. qmpctl-k2j4x9_a
    src_addr: str = "192.0.2.1"
    dst_addr: str = "192.0.2.2"
    prefix_len: int = 30
    # A second veth, the management network (QMP, serial, the agent), as
    # between real hosts: faults cut or slow the migration link only, so a
    # cut link breaks the migration, not qmpctl's hold on the destination.
    mgmt_src_addr: str = "192.0.2.5"
    mgmt_dst_addr: str = "192.0.2.6"

    def __post_init__(self) -> None:
        if not self.base.startswith(NETNS_PREFIX):
            raise ValueError(f"namespace base {self.base!r} must start with {NETNS_PREFIX!r}")

    def namespace(self, side: Side) -> str:
        return namespace_name(self.base, side)

    @property
    def src_ns(self) -> str:
        return self.namespace("src")

    @property
    def dst_ns(self) -> str:
        return self.namespace("dst")

    @staticmethod
    def device(side: Side) -> str:
        return f"veth-{side}"

    @staticmethod
    def mgmt_device(side: Side) -> str:
        return f"mgmt-{side}"

    def mgmt_address(self, side: Side) -> str:
        return self.mgmt_src_addr if side == "src" else self.mgmt_dst_addr

    def address(self, side: Side) -> str:
        return self.src_addr if side == "src" else self.dst_addr

    def _ip(self, side: Side, *args: str) -> list[str]:
        return ["ip", "-n", self.namespace(side), *args]

    def create_commands(self) -> list[list[str]]:
        """Both namespaces, the veth between them, addresses, links up (pure)."""
        cmds = [["ip", "netns", "add", self.namespace(s)] for s in SIDES]
        for device, address in ((self.device, self.address),
                                (self.mgmt_device, self.mgmt_address)):
            cmds.append(["ip", "link", "add", device("src"), "netns", self.src_ns, "type",
                         "veth", "peer", "name", device("dst"), "netns", self.dst_ns])
            for s in SIDES:
                cmds += [self._ip(s, "addr", "add", f"{address(s)}/{self.prefix_len}",
                                  "dev", device(s)),
                         self._ip(s, "link", "set", "dev", device(s), "up")]
        # QEMU's UDP NIC loops back through 127.0.0.1
        return cmds + [self._ip(s, "link", "set", "dev", "lo", "up") for s in SIDES]

    def delete_commands(self, existing: list[str]) -> list[list[str]]:
        """Delete whichever of the two namespaces is in `existing` (pure)."""
        return [["ip", "netns", "delete", self.namespace(s)] for s in SIDES
                if self.namespace(s) in existing]

    def link_commands(self, up: bool, side: LinkSide = "dst") -> list[list[str]]:
        """Set one end of the veth, or both, down or up (pure)."""
        sides = SIDES if side == "both" else (side,)
        return [self._ip(s, "link", "set", "dev", self.device(s), "up" if up else "down")
                for s in sides]

    def rate_commands(self, mbit: int | None) -> list[list[str]]:
        """tc tbf at `mbit` Mbit/s on both veth ends; None: remove it (pure)."""
        if mbit is None:
            return [["tc", "-n", self.namespace(s), "qdisc", "del", "dev", self.device(s),
                     "root"] for s in SIDES]
        if mbit < 1:
            raise UsageError(f"link rate {mbit} Mbit/s: must be at least 1")
        return [["tc", "-n", self.namespace(s), "qdisc", "replace", "dev", self.device(s),
                 "root", "tbf", "rate", f"{mbit}mbit", "burst", str(tbf_burst(mbit)),
                 "latency", TBF_LATENCY] for s in SIDES]

    def exists(self) -> bool:
        """Both namespaces are there."""
        names = list_namespaces()
        return all(self.namespace(s) in names for s in SIDES)

    def create(self) -> None:
        """Make both namespaces and the link; on failure remove what was made."""
        check_host()
        if self.exists():
            return
        log.info("creating namespaces %s, %s (%s <-> %s)", self.src_ns, self.dst_ns,
                 self.src_addr, self.dst_addr)
        try:
            for cmd in self.create_commands():
                _run(cmd)
        except BaseException:
            self.delete()
            raise

    def delete(self) -> None:
        """Remove both namespaces (and with them the veth); nothing if gone.
        A namespace still holding a process disappears when that process exits."""
        if host_problem() is not None:
            return  # nothing can have been created
        for cmd in self.delete_commands(list_namespaces()):
            log.info("deleting %s", cmd[-1])
            _run(cmd)

    def link(self, up: bool, side: LinkSide = "dst") -> None:
        """Set the destination's end of the veth (or `side`) down or up."""
        for cmd in self.link_commands(up, side):
            _run(cmd)

    def rate(self, mbit: int | None) -> None:
        """Limit both directions to `mbit` Mbit/s with tc tbf; None removes it."""
        check_host(("ip", "tc"))
        if mbit is not None:
            for cmd in self.rate_commands(mbit):
                _run(cmd)
            return
        for s, cmd in zip(SIDES, self.rate_commands(None), strict=True):
            shown = _run(["tc", "-n", self.namespace(s), "qdisc", "show", "dev",
                          self.device(s), "root"]).stdout
            if "tbf" in shown:
                _run(cmd)

    def __enter__(self) -> NetnsPair:
        self.create()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.delete()
        except HostError as problem:
            if exc is None:
                raise
            # Do not hide why the run ended; the next run sweeps what is left.
            log.error("%s", problem.message)


@dataclass
class NetnsStar:
    """One LAN of hosts: `base`-hub holds a bridge (192.0.2.1/24), and each of
    `base`-h1 .. -hN a veth to it (192.0.2.11, .12, ...) and its own
    loopback; a fleet's scheduler in the hub, a worker in each host. A host's
    link is cut on the hub's side. Named after a run directory, as NetnsPair."""

    base: str
    hosts: int
    hub_addr: str = "192.0.2.1"
    prefix_len: int = 24

    def __post_init__(self) -> None:
        if not self.base.startswith(NETNS_PREFIX):
            raise ValueError(f"namespace base {self.base!r} must start with {NETNS_PREFIX!r}")
        if not 1 <= self.hosts <= 200:
            raise ValueError(f"{self.hosts} hosts: 1 to 200 fit in 192.0.2.0/24")

    @property
    def hub(self) -> str:
        return namespace_name(self.base, "hub")

    def host(self, i: int) -> str:
        return namespace_name(self.base, f"h{i}")

    @staticmethod
    def address(i: int) -> str:
        return f"192.0.2.{10 + i}"

    @property
    def names(self) -> list[str]:
        return [self.hub, *(self.host(i) for i in range(1, self.hosts + 1))]

    def create_commands(self) -> list[list[str]]:
        """The hub's bridge, each host's veth to it, addresses, links up (pure)."""
        hub = ["ip", "-n", self.hub]
        cmds = [["ip", "netns", "add", n] for n in self.names]
        cmds += [[*hub, "link", "add", "br0", "type", "bridge"],
                 [*hub, "addr", "add", f"{self.hub_addr}/{self.prefix_len}", "dev", "br0"],
                 [*hub, "link", "set", "dev", "br0", "up"],
                 [*hub, "link", "set", "dev", "lo", "up"]]
        for i in range(1, self.hosts + 1):
            ns = ["ip", "-n", self.host(i)]
            cmds += [[*hub, "link", "add", f"to-h{i}", "type", "veth", "peer", "name", "eth0",
                      "netns", self.host(i)],
                     [*hub, "link", "set", "dev", f"to-h{i}", "master", "br0"],
                     [*hub, "link", "set", "dev", f"to-h{i}", "up"],
                     [*ns, "addr", "add", f"{self.address(i)}/{self.prefix_len}", "dev", "eth0"],
                     [*ns, "link", "set", "dev", "eth0", "up"],
                     [*ns, "link", "set", "dev", "lo", "up"]]
        return cmds

    def link_commands(self, i: int, up: bool) -> list[list[str]]:
        """Host i's link to the hub, down or up (pure)."""
        return [["ip", "-n", self.hub, "link", "set", "dev", f"to-h{i}", "up" if up else "down"]]

    def create(self) -> None:
        """Make every namespace and link; on failure remove what was made."""
        check_host()
        try:
            for cmd in self.create_commands():
                _run(cmd)
        except BaseException:
            self.delete()
            raise

    def delete(self) -> None:
        """Remove whichever of the namespaces exist (their veths go with them)."""
        if host_problem() is not None:
            return
        existing = list_namespaces()
        for name in self.names:
            if name in existing:
                _run(["ip", "netns", "delete", name])

    def link(self, i: int, up: bool) -> None:
        for cmd in self.link_commands(i, up):
            _run(cmd)


def stale_namespaces(names: list[str], run_dir_exists: Callable[[str], bool]) -> list[str]:
    """Our namespaces whose run directory is gone (pure)."""
    return [n for n in names
            if (m := _OURS.match(n)) is not None and not run_dir_exists(m.group(1))]


def sweep_stale_namespaces(run_root: Path) -> list[str]:
    """Delete `qmpctl-<suffix>-src/-dst` namespaces whose run directory
    `run_root/qmpctl-<suffix>` no longer exists (its qmpctl died; the run
    directory itself is swept by qmpctl.qemu.rundir.sweep_stale); return them."""
    if host_problem() is not None:
        return []
    removed = []
    for name in stale_namespaces(list_namespaces(), lambda base: (run_root / base).is_dir()):
        try:
            _run(["ip", "netns", "delete", name])
        except HostError as exc:
            log.warning("could not remove stale namespace %s: %s", name, exc.message)
            continue
        removed.append(name)
    return removed


CLONE_NEWNET = 0x40000000


def socket_in(namespace: str, make: Callable[[], socket.socket]) -> socket.socket:
    """`make()` a socket inside `namespace`, as a process on that host would.

    A socket belongs to the network namespace it was created in, whichever
    thread uses it later; so a thread of its own enters the namespace
    (setns), makes the socket and ends, and our other threads never move."""
    out: list[socket.socket] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {namespace}: {os.strerror(err)}")
            finally:
                os.close(fd)
            out.append(make())
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=work, name=f"netns-{namespace}")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return out[0]


def connect_in(namespace: str, host: str, port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP connection to host:port made from inside `namespace` (blocking)."""
    return socket_in(namespace, lambda: socket.create_connection((host, port), timeout))
