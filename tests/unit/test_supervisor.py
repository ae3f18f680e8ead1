"""The supervisor ends when told to, even if its cancellation were lost."""

from __future__ import annotations

import asyncio

from qmpctl.qemu.supervisor import Supervisor


async def test_stop_ends_watch_without_a_cancel() -> None:
    supervisor = Supervisor(interval=0.01)
    watcher = asyncio.create_task(supervisor.watch())
    await asyncio.sleep(0.05)
    assert not watcher.done()
    supervisor.stop()
    async with asyncio.timeout(2):
        await watcher  # returns on its own: no cancel() involved
    assert watcher.exception() is None
