"""One QEMU process and its QMP monitor, modelled on qemu.machine.QEMUMachine.

The controller owns the process from launch to `shutdown()`: QEMU runs in its
own session (a Ctrl-C on the terminal reaches only us, so we can cancel the
migration and resume the source first) and dies with us if we are killed
(PR_SET_PDEATHSIG). `shutdown()` is idempotent: quit, then SIGTERM, then
SIGKILL, and it always removes the sockets. Used as an async context
manager it launches on entry and shuts down on exit, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from qemu.qmp import ConnectError, EventListener, ExecuteError, QMPClient, QMPError

from ..core.errors import HostError, LaunchError, MonitorLost, QmpReplyError, QmpTimeout
from ..host.proc import die_with_parent, process_state
from ..host.procmem import read_memory, write_memory
from ..host.remote import Endpoint, RemoteHost
from .cmdline import QMP_PORT, SERIAL_PORT, MachineSpec, build_argv
from .console import SerialConsole
from .logfollow import LogFollower

log = logging.getLogger(__name__)


class QemuMachine:
    """A launched QEMU: `qmp` for commands and events, `console` for the UART."""

    def __init__(self, spec: MachineSpec, log_path: Path, host: RemoteHost | None = None
                 ) -> None:
        """`host`: a QEMU on the destination host, started and reached its way."""
        self.spec = spec
        self.name = spec.name
        self.host = host
        self.argv = build_argv(spec)
        self.pidfile = spec.ram_path.with_suffix(".pid")  # where `host` records QEMU's pid
        if host is not None:
            self.argv = host.command(host.tethered(self.argv, pidfile=self.pidfile), spec.env)
        self.log_path = log_path
        self.qmp = QMPClient(spec.name)
        self.console = SerialConsole(spec.serial_socket, spec.name)
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        # QEMU's log as it grows (logfollow): its trace lines are read during
        # the run, off the event loop; `log_text()` has them all.
        self.log = LogFollower(log_path)
        self._shut_down = False
        # The supervisor saw its monitor stop answering (stopped or hung,
        # possibly on another host where its state cannot be read): no `quit`.
        self.unresponsive = False

    async def _spawn(self) -> asyncio.subprocess.Process:
        self._log = self.log_path.open("wb")
        self.log.start()
        # A tethered QEMU (ssh) lives while its stdin does: held open, with heartbeats.
        held = self.host is not None and self.host.tethers
        self._proc = proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=subprocess.PIPE if held else subprocess.DEVNULL, stdout=self._log,
            stderr=self._log, start_new_session=True, preexec_fn=die_with_parent,
            env={**os.environ, **dict(self.spec.env)} if self.spec.env else None,
        )
        if held and self.host is not None:
            self.host.hold(proc)
        return proc

    async def _connect(self, endpoint: Endpoint, deadline: float) -> socket.socket:
        """A connection to the remote QEMU's `endpoint`, once it listens."""
        assert self.host is not None
        while True:
            try:
                return await self.host.connect(endpoint, max(1.0, deadline - time.monotonic()))
            except OSError as exc:
                if not self.is_running() or time.monotonic() > deadline:
                    raise LaunchError(
                        f"{self.name}: cannot reach its monitor ({endpoint.path.name}, port "
                        f"{endpoint.port}) on {self.host.name}: {exc}", self.argv,
                        self.exit_code, self.stderr_tail()) from exc
                await asyncio.sleep(0.05)

    async def _while_running(self, step: Awaitable[None], deadline: float) -> None:
        """Await `step` (a connection's handshake), unless QEMU ends first."""
        assert self._proc is not None
        work = asyncio.ensure_future(step)
        exited = asyncio.ensure_future(self._proc.wait())
        try:
            done, _ = await asyncio.wait({work, exited}, timeout=max(0.0, deadline -
                                                                    time.monotonic()),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if work in done:
            work.result()
            return
        work.cancel()
        with contextlib.suppress(BaseException):
            await work
        raise OSError("QEMU exited during start-up" if exited in done else
                      "no monitor connection in time")

    async def _launch_remote(self, timeout: float) -> None:
        """A QEMU on the other host: it listens, we connect (QMP, then serial)."""
        deadline = time.monotonic() + timeout
        spec = self.spec
        try:
            await self._spawn()
            sock = await self._connect(Endpoint(spec.qmp_socket, QMP_PORT), deadline)
            await self._while_running(self.qmp.connect(sock), deadline)
            sock = await self._connect(Endpoint(spec.serial_socket, SERIAL_PORT), deadline)
            await self._while_running(self.console.attach(sock), deadline)
        except (OSError, QMPError) as exc:
            await self.shutdown()
            raise LaunchError(f"{self.name}: cannot start remote QEMU: {exc}", self.argv,
                              self.exit_code, self.stderr_tail()) from exc
        except BaseException:
            await self.shutdown()
            raise

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def exit_code(self) -> int | None:
        code = self._proc.returncode if self._proc else None
        return self.host.exit_code(code) if self.host is not None else code

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def log_text(self) -> str:
        """QEMU's whole log so far (stderr and its trace lines)."""
        return await self.log.text()

    def stderr_tail(self, nbytes: int = 2000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-nbytes:].decode("utf-8", "replace")

    async def __aenter__(self) -> Self:
        await self.launch()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.shutdown()

    async def launch(self, timeout: float = 30.0) -> None:
        """Start QEMU and wait until its QMP monitor has connected and negotiated."""
        log.info("%s: launching %s%s", self.name,
                 "".join(f"{k}={v} " for k, v in self.spec.env), " ".join(self.argv))
        if self.host is not None:
            return await self._launch_remote(timeout)
        try:
            await self.qmp.start_server(str(self.spec.qmp_socket))
            await self.console.start()
            proc = await self._spawn()
        except (OSError, QMPError) as exc:
            await self.shutdown()
            raise LaunchError(f"{self.name}: cannot start QEMU: {exc}", self.argv, None, "") \
                from exc
        accept = asyncio.ensure_future(self.qmp.accept())
        exited = asyncio.ensure_future(proc.wait())
        try:
            done, _ = await asyncio.wait({accept, exited}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if accept in done and accept.exception() is None:
            return
        accept.cancel()
        with contextlib.suppress(BaseException):
            await accept
        reason = ("QEMU exited during start-up" if exited in done else
                  f"QMP did not connect within {timeout:.0f}s")
        if accept in done and isinstance(accept.exception(), ConnectError):
            reason = f"QMP handshake failed: {accept.exception()}"
        await self.shutdown()
        raise LaunchError(f"{self.name}: {reason}", self.argv, self.exit_code, self.stderr_tail())

    async def execute(self, command: str, arguments: dict[str, Any] | None = None,
                      timeout: float = 30.0) -> Any:
        """Run one QMP command. Failures are split by cause: QmpReplyError (QEMU
        said no), QmpTimeout (no answer in time), MonitorLost (no monitor).
        Nothing is sent to an unresponsive QEMU: it could only time out, and
        cleanup (cancel, status) must not wait on a stopped source."""
        if self.unresponsive:
            raise QmpTimeout(self.name, command, "not sent: QEMU stopped answering (the "
                             "supervisor saw it stopped or hung)", arguments)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow
            # a cancellation that races with the reply, and a supervisor that
            # lost its cancel would keep a finished run waiting forever.
            async with asyncio.timeout(timeout):
                return await self.qmp.execute(command, arguments)
        except ExecuteError as exc:
            raise QmpReplyError(self.name, command, exc.error_class, str(exc),
                                arguments) from exc
        except TimeoutError as exc:
            raise QmpTimeout(self.name, command, f"no reply within {timeout:g}s",
                             arguments) from exc
        except (QMPError, OSError, EOFError) as exc:
            raise MonitorLost(self.name, command,
                              f"monitor unavailable ({type(exc).__name__}: {exc}); "
                              f"QEMU exit code {self.exit_code}", arguments) from exc

    async def hmp(self, command_line: str) -> str:
        """A human-monitor command's text output (`info ramblock`, `info mtree -f`)."""
        return str(await self.execute("human-monitor-command", {"command-line": command_line}))

    def _own_pid(self) -> int:
        if self._proc is None or self._proc.returncode is not None:
            raise OSError(f"{self.name}: QEMU is not running")
        if self.host is not None and not self.host.same_files:
            raise OSError(f"{self.name}: QEMU runs on {self.host.name}, not here")
        return self._proc.pid

    def read_host_memory(self, address: int, size: int) -> bytes:
        """`size` bytes at `address` in this QEMU's address space (host.procmem)."""
        return read_memory(self._own_pid(), address, size)

    def write_host_memory(self, address: int, data: bytes) -> None:
        """Fault injection only: overwrite bytes in this QEMU's address space."""
        write_memory(self._own_pid(), address, data)

    def listener(self, *names: str) -> EventListener:
        """An event listener registered on this monitor (remove it when done)."""
        listener = EventListener(names)
        self.qmp.register_listener(listener)
        return listener

    async def status(self) -> str:
        reply = await self.execute("query-status")
        return str(reply["status"])

    async def wait_exit(self, timeout: float) -> int | None:
        if self._proc is None:
            return None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._proc.wait()
        return self._proc.returncode

    async def _stop(self, timeout: float) -> None:
        if self.pid is not None and process_state(self.pid) == "T":
            self.kill()  # stopped (SIGSTOP): it can answer nothing, and SIGKILL still works
        quit_sent = False
        if self.is_running() and self.qmp.runstate.name == "RUNNING" and not self.unresponsive:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.qmp.execute("quit")
                quit_sent = True
        first = () if self.unresponsive else (None,)  # nothing to wait for
        for sig in (*first, signal.SIGTERM, signal.SIGKILL):
            if not self.is_running():
                break
            assert self._proc is not None
            if sig is not None:
                log.info("%s: sending %s", self.name, sig.name)
                with contextlib.suppress(ProcessLookupError):
                    self._proc.send_signal(sig)
            await self.wait_exit(timeout if sig is None and quit_sent else 2)

    def kill(self) -> None:
        """SIGKILL now to the local process (QEMU, or the ssh holding a remote
        QEMU, whose tether then ends it); cleanup's last resort."""
        if self.is_running():
            assert self._proc is not None
            self._proc.kill()

    async def signal(self, sig: signal.Signals) -> str:
        """Send `sig` to QEMU itself, wherever it runs (fault injection:
        kill-dst, stop-dst); says to which process."""
        if not self.is_running():
            raise OSError(f"{self.name}: QEMU is not running")
        assert self._proc is not None
        if self.host is None:
            self._proc.send_signal(sig)
            return f"pid {self._proc.pid}"
        try:
            await self.host.signal(self._proc.pid, self.pidfile, sig)
        except HostError as exc:
            raise OSError(exc.message) from exc
        return f"pid in {self.pidfile} on {self.host.name}"

    async def _fetch_serial_log(self) -> None:
        """A remote QEMU's serial log, copied beside the local logs."""
        if self.host is None or self.host.same_files:
            return
        try:
            data = await self.host.read_file(self.spec.serial_log)
        except (OSError, HostError) as exc:
            log.warning("%s: could not fetch the serial log from %s: %s", self.name,
                        self.host.name, exc)
            return
        self.log_path.with_suffix(".serial").write_bytes(data)

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Stop QEMU and release everything; safe to call more than once.

        `quit` when the monitor answers; a QEMU whose monitor does not (a
        stopped or hung process) gets SIGTERM, then SIGKILL, each after a
        short grace, so cleanup stays bounded.
        """
        if self._shut_down:
            return
        self._shut_down = True
        try:
            await self._stop(timeout)
        except asyncio.CancelledError:
            # Cancelled mid-cleanup (a second signal, a test timeout): the
            # process must not outlive us, so kill it before giving way.
            self.kill()
            raise
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.qmp.disconnect()
            await self.console.close()
            await self.log.stop()
            if self._log is not None:
                self._log.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await self._fetch_serial_log()
            with contextlib.suppress(FileNotFoundError):
                self.spec.qmp_socket.unlink()
