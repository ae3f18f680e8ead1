"""How qmpctl reaches the destination host: one small object per way.

`NetnsHost`: the destination's network namespace stands for the other host
(`ip netns exec`); it shares this machine's files, and QEMU's monitor and
console listen on TCP on the management veth, reached from the source's
namespace. `SshHost`: another machine (or a namespace running sshd), driven
through `ssh -o BatchMode=yes HOST -- COMMAND`: the run has a directory of its
own there (made and removed by the `qmpctl tether` that holds the agent),
QEMU's monitor, console and the agent listen on unix sockets in it, and each
management connection is an ssh session running `qmpctl relay`; only the
migration stream uses the network between the hosts. Whatever qmpctl starts
there runs under `qmpctl tether`, which ends it when the session ends or
goes silent (see qmpctl.host.tether).

Both give the same few verbs: `command()` (a local argv that runs an argv on
that host), `connect()` (a management connection to a listener of QEMU's or
the agent's), `signal()`, `read_file()`, `check()` and `cleanup()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..core.aio import terminate
from ..core.errors import HostError
from .netns import connect_in

log = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = 2.0  # the controller's heartbeat to each tether (which waits 15 s)
SSH_ALIVE_S = 2  # ServerAliveInterval; with ServerAliveCountMax 5: a silent link ends ssh in ~10 s


@dataclass(frozen=True)
class Endpoint:
    """Where a remote QEMU (or the agent) listens for qmpctl: a TCP port on an
    address (netns) or a unix socket in the remote run directory (ssh)."""

    path: Path
    port: int


class RemoteHost(ABC):
    """The destination host, as qmpctl drives it."""

    name: str  # in messages: "namespace qmpctl-…-dst", "root@192.0.2.6 (ssh)"
    run_dir: Path  # the run's directory there
    tcp_listen: str | None  # QEMU's monitor and console listen on TCP at this address
    same_files: bool  # the run directory is this machine's own (no copying back)
    tethers = False  # what it runs there lives while its local process's stdin does
    qmpctl: tuple[str, ...]  # how that host runs qmpctl

    @abstractmethod
    def command(self, argv: Sequence[str], env: Sequence[tuple[str, str]] = ()) -> list[str]:
        """The local argv that runs `argv` (with `env`) on that host (pure)."""

    def tethered(self, argv: Sequence[str], pidfile: Path | None = None,
                 run_dir: Path | None = None) -> list[str]:
        """`argv` as that host runs what it holds for the controller (pure)."""
        return list(argv)

    @abstractmethod
    async def connect(self, endpoint: Endpoint, timeout: float) -> socket.socket:
        """A management connection to `endpoint` (once it listens)."""

    @abstractmethod
    async def signal(self, pid: int | None, pidfile: Path, sig: signal.Signals) -> None:
        """Send `sig` to a process of ours there (`pid`: the local process
        that runs it, when that is the process itself)."""

    async def read_file(self, path: Path) -> bytes:
        return await asyncio.to_thread(path.read_bytes)

    async def check(self, files: Sequence[Path], qemu: Path, version: str) -> str | None:
        """Before anything starts: can the destination run there? The remote
        qmpctl's version, or None."""
        return None

    @abstractmethod
    async def cleanup(self) -> None:
        """Kill whatever of ours still runs there and remove the run directory."""

    @abstractmethod
    def hold(self, proc: asyncio.subprocess.Process) -> None:
        """Keep a tethered process alive (heartbeats on its stdin)."""

    def exit_code(self, returncode: int | None) -> int | None:
        """A local process's return code as the remote process's (negative: signal)."""
        return returncode


@dataclass
class NetnsHost(RemoteHost):
    """The destination's namespace of a netns pair, reached from the source's."""

    namespace: str
    reach_from: str
    address: str
    run_dir: Path

    def __post_init__(self) -> None:
        self.name = f"namespace {self.namespace}"
        self.qmpctl = (sys.executable, "-m", "qmpctl")
        self.tcp_listen = self.address
        self.same_files = True

    def command(self, argv: Sequence[str], env: Sequence[tuple[str, str]] = ()) -> list[str]:
        # `ip netns exec` execs argv: the local process is the remote one.
        return ["ip", "netns", "exec", self.namespace, *argv]

    async def connect(self, endpoint: Endpoint, timeout: float) -> socket.socket:
        return await asyncio.to_thread(connect_in, self.reach_from, self.address,
                                       endpoint.port, timeout)

    async def signal(self, pid: int | None, pidfile: Path, sig: signal.Signals) -> None:
        if pid is not None:
            os.kill(pid, sig)

    async def cleanup(self) -> None:
        """Nothing: the run directory is this machine's own (RunDir removes it)."""

    def hold(self, proc: asyncio.subprocess.Process) -> None:
        """Nothing: `ip netns exec` execs in place, and dies with qmpctl."""


def ssh_exit_problem(returncode: int, stderr: str, target: str) -> str | None:
    """Why ssh itself failed (exit 255), in words (pure)."""
    if returncode != 255:
        return None
    text = stderr.strip().splitlines()
    last = text[-1] if text else "no output"
    if "Permission denied" in stderr:
        hint = ("ssh key authentication failed (qmpctl runs ssh with BatchMode=yes: no "
                "password prompts; give a key with --ssh-option=-i/path/to/key)")
    elif "Host key verification failed" in stderr:
        hint = "the host key is not known: connect once by hand, or add it to known_hosts"
    elif re.search(r"Could not resolve|No route|Connection (refused|timed out)|"
                   r"Network is unreachable", stderr):
        hint = "the host cannot be reached"
    else:
        hint = "ssh failed"
    return f"ssh {target}: {hint}: {last}"


@dataclass
class SshHost(RemoteHost):
    """Another machine, through ssh with key authentication only."""

    tethers = True

    target: str  # [user@]host
    run_dir: Path
    options: tuple[str, ...] = ()  # more ssh arguments (-i KEY, -p PORT, -o ...)
    qmpctl: tuple[str, ...] = ("python3", "-m", "qmpctl")  # how that host runs qmpctl
    via: tuple[str, ...] = ()  # a local prefix for ssh itself (ip netns exec SRC)
    heartbeat_s: float = 15.0
    _held: list[asyncio.subprocess.Process] = field(default_factory=list, init=False)
    _beats: list[asyncio.Task[None]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.name = f"{self.target} (ssh)"
        self.tcp_listen = None
        self.same_files = False

    def ssh(self, remote_command: str) -> list[str]:
        """ssh running a shell command line there (pure)."""
        return [*self.via, "ssh", "-o", "BatchMode=yes", "-o", f"ServerAliveInterval={SSH_ALIVE_S}",
                "-o", "ServerAliveCountMax=5", "-o", "ConnectTimeout=10", *self.options,
                self.target, "--", remote_command]

    def command(self, argv: Sequence[str], env: Sequence[tuple[str, str]] = ()) -> list[str]:
        prefix = ["env", *(f"{k}={v}" for k, v in env)] if env else []
        return self.ssh(shlex.join([*prefix, *argv]))

    def tethered(self, argv: Sequence[str], pidfile: Path | None = None,
                 run_dir: Path | None = None) -> list[str]:
        opts = [f"--heartbeat={self.heartbeat_s:g}"]
        if pidfile is not None:
            opts.append(f"--pidfile={pidfile}")
        if run_dir is not None:
            opts.append(f"--run-dir={run_dir}")
        return [*self.qmpctl, "tether", *opts, "--", *argv]

    def hold(self, proc: asyncio.subprocess.Process) -> None:
        self._held.append(proc)
        self._beats.append(asyncio.create_task(self._heartbeat(proc)))

    @staticmethod
    async def _heartbeat(proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None
        with contextlib.suppress(OSError, ConnectionError):
            while proc.returncode is None:
                proc.stdin.write(b"\n")
                await proc.stdin.drain()
                await asyncio.sleep(HEARTBEAT_EVERY_S)

    def exit_code(self, returncode: int | None) -> int | None:
        # the tether exits 128+N for a child killed by signal N
        if returncode is not None and 128 < returncode < 128 + 65:
            return -(returncode - 128)
        return returncode

    async def run(self, remote_command: str, timeout: float = 30.0,
                  stdout: int | IO[bytes] = subprocess.PIPE) -> tuple[int, bytes, str]:
        """A short command there: (exit code, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            *self.ssh(remote_command), stdin=subprocess.DEVNULL, stdout=stdout,
            stderr=subprocess.PIPE)
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate()
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise HostError(f"ssh {self.target}: `{remote_command}` did not finish within "
                            f"{timeout:g}s") from exc
        assert proc.returncode is not None
        return proc.returncode, out or b"", err.decode(errors="replace")

    async def connect(self, endpoint: Endpoint, timeout: float) -> socket.socket:
        """An ssh session running `qmpctl relay` to the unix socket: ours is
        one end of a socket pair, ssh's stdin/stdout the other."""
        ours, theirs = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.ssh(shlex.join([*self.qmpctl, "relay", f"--wait={timeout:g}",
                                      str(endpoint.path)])),
                stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._held.append(proc)
        return ours

    async def signal(self, pid: int | None, pidfile: Path, sig: signal.Signals) -> None:
        code, _, err = await self.run(
            f"kill -{sig.name.removeprefix('SIG')} \"$(cat {shlex.quote(str(pidfile))})\"",
            timeout=15)
        if code != 0:
            raise HostError(f"ssh {self.target}: cannot send {sig.name} to the process in "
                            f"{pidfile}: {err.strip()}")

    async def read_file(self, path: Path) -> bytes:
        code, out, err = await self.run(f"cat {shlex.quote(str(path))}")
        if code != 0:
            raise OSError(f"{self.target}:{path}: {err.strip()}")
        return out

    async def check(self, files: Sequence[Path], qemu: Path, version: str) -> str | None:
        """Reachable with keys only, qmpctl runs there, the same QEMU and the
        guest's files are at the same paths. Raises HostError naming what is
        missing."""
        code, out, err = await self.run("true")
        if (problem := ssh_exit_problem(code, err, self.target)) is not None:
            raise HostError(problem)
        if code != 0:
            raise HostError(f"ssh {self.target}: `true` failed (exit {code}): {err.strip()}")
        qmpctl = shlex.join([*self.qmpctl, "version"])
        code, out, err = await self.run(qmpctl)
        if code != 0:
            raise HostError(f"{self.target}: cannot run qmpctl there (`{qmpctl}`, exit "
                            f"{code}): {err.strip()[-300:]}; install qmpctl on that host or "
                            "name its command with --dst-qmpctl")
        remote_version = out.decode(errors="replace").strip()
        code, out, err = await self.run(f"{shlex.quote(str(qemu))} --version")
        if code != 0:
            raise HostError(f"{self.target}: the destination's QEMU {qemu} does not run there "
                            f"(exit {code}): {err.strip()[-300:]}; the destination QEMU must "
                            "be at the same path on both hosts")
        first = out.decode(errors="replace").splitlines()[:1]
        if not first or f"version {version}" not in first[0]:
            raise HostError(f"{self.target}: {qemu} is {first[0] if first else '?'}, here it "
                            f"is QEMU {version}; give the destination's version with "
                            "--qemu-dst")
        missing = []
        for path in files:
            code, _, _ = await self.run(f"test -r {shlex.quote(str(path))}")
            if code != 0:
                missing.append(str(path))
        if missing:
            raise HostError(f"{self.target}: the destination needs these files at the same "
                            f"paths, not readable there: {', '.join(missing)}")
        code, _, err = await self.run(f"test ! -e {shlex.quote(str(self.run_dir))}")
        if code != 0:
            raise HostError(f"{self.target}: {self.run_dir} already exists")
        return remote_version

    def cleanup_command(self) -> str:
        """Kill every process whose pid file is in the run directory, remove
        the directory (pure)."""
        d = shlex.quote(str(self.run_dir))
        return (f"for f in {d}/*.pid; do [ -f \"$f\" ] && kill -KILL \"$(cat \"$f\")\" "
                f"2>/dev/null; done; rm -rf {d}; test ! -e {d}")

    async def cleanup(self) -> None:
        for beat in self._beats:
            beat.cancel()
        for proc in self._held:
            await terminate(proc)
        if not self._held:
            return  # nothing was started there, so nothing to remove
        try:
            code, _, err = await self.run(self.cleanup_command(), timeout=30)
        except HostError as exc:
            log.error("%s; the tether there removes %s when it notices", exc.message,
                      self.run_dir)
            return
        if code != 0:
            log.error("ssh %s: could not remove %s (exit %d): %s", self.target, self.run_dir,
                      code, err.strip())
