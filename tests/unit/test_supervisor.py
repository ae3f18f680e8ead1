"""The supervisor ends when told to, even if its cancellation were lost."""

from __future__ import annotations

import asyncio

from qmpctl.qemu.supervisor import Supervisor, last_lines


async def test_stop_ends_watch_without_a_cancel() -> None:
    supervisor = Supervisor(interval=0.01)
    watcher = asyncio.create_task(supervisor.watch())
    await asyncio.sleep(0.05)
    assert not watcher.done()
    supervisor.stop()
    async with asyncio.timeout(2):
        await watcher  # returns on its own: no cancel() involved
    assert watcher.exception() is None


def test_a_dead_qemus_reason_is_its_own_error_lines_not_trace_events() -> None:
    log = ("2026-11-23T23:33:53.86Z qemu-system-x86_64: Size mismatch: ram0: 0xa000000 != "
           "0xc000000\n"
           "2026-11-23T23:33:53.86Z qemu-system-x86_64: error while loading state for "
           "instance 0x0 of device 'ram'\n"
           "8434@1795476833.862891:migrate_set_state new state failed\n")
    assert last_lines(log) == ("Size mismatch: ram0: 0xa000000 != 0xc000000 | error while "
                               "loading state for instance 0x0 of device 'ram'")
    assert last_lines("plain\nwords\n") == "plain | words"


def test_status_fields_are_read_in_kib() -> None:
    from qmpctl.host.selfmem import status_kib
    text = "Name:\tpython\nVmHWM:\t  161280 kB\nRssAnon:\t   41984 kB\n"
    assert (status_kib(text, "VmHWM"), status_kib(text, "RssAnon")) == (161280, 41984)
    assert status_kib(text, "RssShmem") is None
