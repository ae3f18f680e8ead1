"""Postcopy recovery: break the migration channel after the switchover, then
bring both sides back together, as QEMU's migration-test does.

Once the source switched to postcopy, neither side holds the whole guest, so a
broken channel can only be repaired: both sides sit in `postcopy-paused`, the
destination listens again (`migrate-recover URI`) and the source reconnects
(`migrate URI resume=true`). With `fail_first`, the first attempt goes to a
listener that accepts and hangs up at once, so the source's resume handshake
fails and it must pause again and be recovered a second time (QEMU's
double-failure case). A cut migration link (`--fault
link-down-for=S@status:postcopy-paused` with --topology netns) is recovered
the same way once it is back: a destination that never saw the break is
paused too, and the source's attempts are retried while the link is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from ..core.errors import MigrationFailed, QmpReplyError
from ..qemu.machine import QemuMachine
from .models import RecoveryAttempt

NOTICE_S = 3.0  # how long the destination may take to notice the break itself
RETRY_S = 1.0


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


class Recovery:
    """Recovers a paused postcopy migration; the driver calls `recover()` each
    time the source reports `postcopy-paused`."""

    def __init__(self, dst: QemuMachine, new_uri: Callable[[], str], run_dir: Path,
                 fail_first: bool = False, timeout: float = 30.0) -> None:
        self.dst, self.new_uri, self.run_dir = dst, new_uri, run_dir
        self.fail_first, self.timeout = fail_first, timeout
        self.attempts: list[RecoveryAttempt] = []
        self._server: asyncio.Server | None = None
        self._listening: str | None = None
        self._deadline: float | None = None

    async def _wait_paused(self, machine: QemuMachine, side: str, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status = (await machine.execute("query-migrate", timeout=5)).get("status")
            if status == "postcopy-paused":
                return
            await asyncio.sleep(0.05)
        raise MigrationFailed(f"postcopy recovery: the {side} did not reach postcopy-paused "
                              f"within {within:g}s")

    async def before_pause(self) -> None:
        """Wait until the destination took over the guest (its run state leaves
        `inmigrate` once it handled postcopy's RUN): a channel broken before
        that makes the destination give up instead of pausing."""
        deadline = time.monotonic() + self.timeout
        while await self.dst.status() == "inmigrate":
            if time.monotonic() > deadline:
                raise MigrationFailed("postcopy: the destination did not take over the guest "
                                      f"within {self.timeout:g}s of the switchover")
            await asyncio.sleep(0.02)

    async def _decoy(self) -> str:
        """A unix socket that accepts and closes every connection."""
        path = self.run_dir / "recover-decoy.sock"
        if self._server is None:
            self._server = await asyncio.start_unix_server(_hang_up, path=str(path))
        return f"unix:{path}"

    async def _pause_destination(self) -> bool:
        """The destination notices a closed channel at once, a cut link only
        when TCP gives up (minutes): then pause it too, as an operator (or
        libvirt's keepalive) would. True when qmpctl had to."""
        try:
            await self._wait_paused(self.dst, "destination", NOTICE_S)
            return False
        except MigrationFailed:
            pass
        try:
            await self.dst.execute("migrate-pause")
        except QmpReplyError:
            # It noticed meanwhile: a link back up delivers the source's FIN.
            if (await self.dst.execute("query-migrate", timeout=5)).get("status") \
                    != "postcopy-paused":
                raise
            return False
        await self._wait_paused(self.dst, "destination", self.timeout)
        return True

    async def _listen(self) -> str:
        """The destination listens again; a listener an attempt never reached
        (the link was down) is still there and is reused."""
        uri = self.new_uri()
        try:
            await self.dst.execute("migrate-recover", {"uri": uri})
        except QmpReplyError:
            if self._listening is None:
                raise
            return self._listening
        self._listening = uri
        return uri

    async def recover(self, src: QemuMachine, elapsed_s: float) -> None:
        """Resume the source into the destination, retrying (1 s apart) until
        an attempt is under way or `timeout` since the first pause passed."""
        self._deadline = self._deadline or time.monotonic() + self.timeout
        await self._wait_paused(src, "source", self.timeout)
        paused_dst = await self._pause_destination()
        while True:
            if time.monotonic() > self._deadline:
                raise MigrationFailed(f"postcopy recovery did not succeed within "
                                      f"{self.timeout:g}s ({len(self.attempts)} attempts)")
            failing = self.fail_first and not self.attempts
            if self.attempts and not self.attempts[-1].meant_to_fail:
                await asyncio.sleep(RETRY_S)  # the link may still be down
            uri = await self._decoy() if failing else await self._listen()
            attempt = RecoveryAttempt(attempt=len(self.attempts) + 1, uri=uri,
                                      meant_to_fail=failing, elapsed_s=elapsed_s,
                                      paused_destination=paused_dst)
            self.attempts.append(attempt)
            try:
                await src.execute("migrate", {"uri": uri, "resume": True})
            except QmpReplyError as exc:
                attempt.error = exc.desc
                continue
            # The postcopy bandwidth was capped only so the break fell inside postcopy.
            await src.execute("migrate-set-parameters", {"max-postcopy-bandwidth": 0})
            return

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
