"""A QEMU on the destination host, `QemuMachine`'s other way of running.

The host (`host.remote.RemoteHost`) is a network namespace or another
machine reached over ssh. There QEMU listens for QMP and serial and the
controller connects (a local QEMU connects to the controller); it lives
while its tether does (ssh: stdin held open, with heartbeats); its exit
code, signals and serial log go through the host; and its memory is
readable here only when that host shares this one's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable
from pathlib import Path

from qemu.qmp import QMPError

from ..core.errors import HostError, LaunchError
from ..host.remote import Endpoint, RemoteHost
from .cmdline import QMP_PORT, SERIAL_PORT, MachineSpec
from .machine import QemuMachine

log = logging.getLogger(__name__)


class RemoteQemuMachine(QemuMachine):
    """A QEMU on `host`, started and reached its way."""

    def __init__(self, spec: MachineSpec, log_path: Path, host: RemoteHost) -> None:
        super().__init__(spec, log_path)
        self.host = host
        self.pidfile = spec.ram_path.with_suffix(".pid")  # where `host` records QEMU's pid
        self.argv = host.command(host.tethered(self.argv, pidfile=self.pidfile), spec.env)

    def _stdin(self) -> int:
        # A tethered QEMU (ssh) lives while its stdin does: held open.
        return subprocess.PIPE if self.host.tethers else subprocess.DEVNULL

    def _spawned(self, proc: asyncio.subprocess.Process) -> None:
        if self.host.tethers:
            self.host.hold(proc)

    async def _connect(self, endpoint: Endpoint, deadline: float) -> socket.socket:
        """A connection to the remote QEMU's `endpoint`, once it listens."""
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

    async def launch(self, timeout: float = 30.0) -> None:
        """Start QEMU there; it listens, we connect (QMP, then serial)."""
        self._log_launch()
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
    def exit_code(self) -> int | None:
        return self.host.exit_code(super().exit_code)

    def _own_pid(self) -> int:
        if not self.host.same_files:
            raise OSError(f"{self.name}: QEMU runs on {self.host.name}, not here")
        return super()._own_pid()

    async def signal(self, sig: signal.Signals) -> str:
        """`sig` to QEMU itself on its host (through the pid file there)."""
        if not self.is_running():
            raise OSError(f"{self.name}: QEMU is not running")
        assert self._proc is not None
        try:
            await self.host.signal(self._proc.pid, self.pidfile, sig)
        except HostError as exc:
            raise OSError(exc.message) from exc
        return f"pid in {self.pidfile} on {self.host.name}"

    async def _after_shutdown(self) -> None:
        """Its serial log, copied beside the local logs."""
        if self.host.same_files:
            return
        try:
            data = await self.host.read_file(self.spec.serial_log)
        except (OSError, HostError) as exc:
            log.warning("%s: could not fetch the serial log from %s: %s", self.name,
                        self.host.name, exc)
            return
        self.log_path.with_suffix(".serial").write_bytes(data)
