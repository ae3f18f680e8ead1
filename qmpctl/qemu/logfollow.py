"""A QEMU's log, read while QEMU writes it.

A traced QEMU's log grows with every event: one `kvm_dirty_ring_page` line
per page it harvests under --trace-kernel, tens of MB for a small guest and
far more for a big one. Read whole after the run, on the event loop, that
stalls qmpctl (and its QMP heartbeats) for as long as the read takes. The
follower reads what QEMU appended every `poll_s`, through aiofiles (each read
runs in a worker thread), so the loop never waits on the file and the run's
end reads only the last lines.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiofiles


class LogFollower:
    """The text of the file at `path` as it grows (`text()`); `start()` follows
    it in the background, `stop()` ends that (the text stays readable)."""

    def __init__(self, path: Path, poll_s: float = 0.2) -> None:
        self.path, self.poll_s = path, poll_s
        self._chunks: list[bytes] = []
        self._offset = 0
        self._lock = asyncio.Lock()  # one reader at a time: the offset is shared
        self._task: asyncio.Task[None] | None = None

    async def _catch_up(self) -> int:
        """Read what was appended since the last read; how many bytes."""
        async with self._lock:
            try:
                async with aiofiles.open(self.path, "rb") as f:
                    await f.seek(self._offset)
                    data = await f.read()
            except FileNotFoundError:
                return 0
            if data:
                self._chunks.append(data)
                self._offset += len(data)
            return len(data)

    async def _follow(self) -> None:
        while True:
            if not await self._catch_up():
                await asyncio.sleep(self.poll_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._follow(), name=f"follow {self.path.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def bytes_read(self) -> int:
        return self._offset

    async def text(self) -> str:
        """Everything written so far (decoded in a worker thread: it can be large)."""
        await self._catch_up()
        data = b"".join(self._chunks)
        self._chunks = [data] if data else []
        return await asyncio.to_thread(data.decode, "utf-8", "replace")
