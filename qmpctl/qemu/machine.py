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
import subprocess
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from qemu.qmp import ConnectError, EventListener, ExecuteError, QMPClient, QMPError

from ..core.errors import LaunchError, MonitorLost, QmpReplyError, QmpTimeout
from ..host.proc import die_with_parent, process_state
from ..host.procmem import read_memory, write_memory
from .cmdline import MachineSpec, build_argv
from .console import SerialConsole
from .logfollow import LogFollower

log = logging.getLogger(__name__)


class QemuMachine:
    """A launched QEMU: `qmp` for commands and events, `console` for the UART."""

    def __init__(self, spec: MachineSpec, log_path: Path) -> None:
        self.spec = spec
        self.name = spec.name
        self.argv = build_argv(spec)
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
        self._proc = proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=self._stdin(), stdout=self._log,
            stderr=self._log, start_new_session=True, preexec_fn=die_with_parent,
            env={**os.environ, **dict(self.spec.env)} if self.spec.env else None,
        )
        self._spawned(proc)
        return proc

    def _stdin(self) -> int:
        return subprocess.DEVNULL

    def _spawned(self, proc: asyncio.subprocess.Process) -> None:
        """Just started (a remote QEMU's tether is held from here)."""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def exit_code(self) -> int | None:
        return self._proc.returncode if self._proc else None

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

    def _log_launch(self) -> None:
        log.info("%s: launching %s%s", self.name,
                 "".join(f"{k}={v} " for k, v in self.spec.env), " ".join(self.argv))

    async def launch(self, timeout: float = 30.0) -> None:
        """Start QEMU and wait until its QMP monitor has connected and negotiated."""
        self._log_launch()
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
        self._proc.send_signal(sig)
        return f"pid {self._proc.pid}"

    async def _after_shutdown(self) -> None:
        """Once QEMU is gone (a remote QEMU's serial log is fetched here)."""

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
                    await self._after_shutdown()
            with contextlib.suppress(FileNotFoundError):
                self.spec.qmp_socket.unlink()
