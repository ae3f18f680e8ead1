"""The supervisor ends when told to, even if its cancellation were lost."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import pytest

from qmpctl.core.errors import MonitorLost, QmpError, QmpTimeout
from qmpctl.host.proc import process_state
from qmpctl.qemu.supervisor import Supervisor, last_lines, lost_cause


async def test_stop_ends_watch_without_a_cancel() -> None:
    supervisor = Supervisor(interval=0.01)
    watcher = asyncio.create_task(supervisor.watch())
    await asyncio.sleep(0.05)
    assert not watcher.done()
    supervisor.stop()
    async with asyncio.timeout(2):
        await watcher  # returns on its own: no cancel() involved
    assert watcher.exception() is None


class SlowMonitor:
    """A QEMU whose monitor takes 0.2 s to answer; counts what was cut short."""

    def __init__(self, delay: float = 0.2) -> None:
        self.delay = delay
        self.qmp = type("Qmp", (), {"runstate": type("S", (), {"name": "RUNNING"})()})()
        self.answered = self.cut = 0
        self.pid = None  # no process to look at

    def is_running(self) -> bool:
        return True

    async def execute(self, command: str, timeout: float) -> dict[str, str]:
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cut += 1
            raise
        self.answered += 1
        return {"status": "running"}


async def test_finish_lets_the_heartbeat_in_flight_get_its_answer() -> None:
    # A heartbeat cancelled under its command leaves a reply nobody reads
    # (qemu.qmp warns "Unknown ID ..., message dropped" into the user's log).
    supervisor, machine = Supervisor(interval=0.01), SlowMonitor()
    supervisor.add("destination", machine)  # type: ignore[arg-type]
    watcher = asyncio.create_task(supervisor.watch())
    await asyncio.sleep(0.1)  # a query-status is in flight now
    async with asyncio.timeout(2):
        await supervisor.finish(watcher)
    assert (machine.answered, machine.cut) == (1, 0)
    assert watcher.done() and not watcher.cancelled() and watcher.exception() is None


class StoppedProcess(SlowMonitor):
    """A real process, SIGSTOPped, behind a monitor that would never answer."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid, self.exit_code, self.unresponsive = pid, None, False  # type: ignore[assignment]

    def stderr_tail(self, _n: int) -> str:
        return ""

    async def execute(self, command: str, timeout: float) -> dict[str, str]:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


def stopped(pid: int) -> bool:
    """SIGSTOP `pid` and wait until the kernel shows it stopped."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while process_state(pid) != "T" and time.monotonic() < deadline:
        time.sleep(0.01)
    return process_state(pid) == "T"


async def test_a_stopped_process_is_named_without_waiting_for_the_heartbeat() -> None:
    proc = await asyncio.create_subprocess_exec("sleep", "60")
    try:
        assert stopped(proc.pid)
        machine = StoppedProcess(proc.pid)
        async with asyncio.timeout(2):  # far below the 10 s heartbeat bound
            lost = await Supervisor().check("dst", machine)  # type: ignore[arg-type]
        assert lost is not None and lost.message.startswith("dst QEMU is stopped (SIGSTOP)")
        assert machine.unresponsive
    finally:
        proc.kill()
        await proc.wait()


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


async def test_finish_under_cancellation_does_not_wait_for_the_heartbeat() -> None:
    """An interrupted run cleans up at once, even under a slow heartbeat."""
    supervisor, machine = Supervisor(interval=0.01), SlowMonitor(delay=60)
    supervisor.add("destination", machine)  # type: ignore[arg-type]
    watcher = asyncio.create_task(supervisor.watch())
    await asyncio.sleep(0.1)  # a query-status is in flight now

    async def run() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await supervisor.finish(watcher)

    task = asyncio.create_task(run())
    await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        async with asyncio.timeout(10):  # the heartbeat would take 60 s
            await task
    assert task.cancelled() and machine.cut == 1 and machine.answered == 0


class KilledUnderHeartbeat(SlowMonitor):
    """A QEMU SIGKILLed under a heartbeat: its monitor fails the command at
    once, the process is reaped a moment later (the order seen in 1 of 3
    `kill-dst@postcopy` runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.exit_code: int | None = None
        self.unresponsive = False
        self.reaped = asyncio.Event()

    def reap(self) -> None:
        self.exit_code = -9
        self.reaped.set()

    def is_running(self) -> bool:
        return self.exit_code is None

    def stderr_tail(self, _n: int) -> str:
        return ""

    async def execute(self, command: str, timeout: float) -> dict[str, str]:
        asyncio.get_running_loop().call_later(0.2, self.reap)
        raise MonitorLost("qmpctl-dst", command, "monitor unavailable (EOFError)")

    async def wait_exit(self, timeout: float) -> int | None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.reaped.wait()
        return self.exit_code


async def test_a_qemu_killed_under_the_heartbeat_is_named_killed() -> None:
    machine = KilledUnderHeartbeat()
    lost = await Supervisor().check("dst", machine)  # type: ignore[arg-type]
    assert lost is not None and lost.message.startswith("dst QEMU killed by SIGKILL"), lost
    assert not machine.unresponsive


@pytest.mark.parametrize(("running", "code", "stopped", "error", "cause"), [
    (False, -9, False, MonitorLost("m", "query-status", "EOF"), "dst QEMU killed by SIGKILL"),
    (False, -9, False, QmpTimeout("m", "query-status", "no reply"),
     "dst QEMU killed by SIGKILL"),
    (False, 1, False, None, "dst QEMU exited with code 1"),
    (True, None, True, QmpTimeout("m", "query-status", "no reply"),
     "dst QEMU is stopped (SIGSTOP)"),
    (True, None, False, QmpTimeout("m", "query-status", "no reply"),
     "dst QEMU did not answer query-status within 10s"),
    (True, None, False, MonitorLost("m", "query-status", "EOF"),
     "dst QEMU's monitor connection was lost (EOF)"),
    (True, None, False, None, "dst QEMU's monitor connection was lost"),
])
def test_the_cause_of_a_lost_side_prefers_how_the_process_ended(
        running: bool, code: int | None, stopped: bool, error: QmpError | None,
        cause: str) -> None:
    assert lost_cause("dst", running, code, stopped, error, 10.0) == cause


class RunningProcess(StoppedProcess):
    """A real process, running, behind a monitor that never answers."""


async def test_a_process_stopped_while_the_heartbeat_waits_is_named_at_once() -> None:
    # The SIGSTOP lands after query-status went out: a stopped QEMU never
    # answers, and waiting the 10 s bound made a CI run miss its 7 s liveness.
    proc = await asyncio.create_subprocess_exec("sleep", "60")
    try:
        machine = RunningProcess(proc.pid)
        asyncio.get_running_loop().call_later(0.2, os.kill, proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        async with asyncio.timeout(3):  # far below the 10 s heartbeat bound
            lost = await Supervisor(interval=0.05).check("dst", machine)  # type: ignore[arg-type]
        assert lost is not None and lost.message.startswith("dst QEMU is stopped (SIGSTOP)"), lost
        assert machine.unresponsive
        assert time.monotonic() - t0 >= 0.2  # it was asked, and running, first
    finally:
        proc.kill()
        await proc.wait()


async def test_a_heartbeat_answered_while_the_process_runs_is_not_cut() -> None:
    proc = await asyncio.create_subprocess_exec("sleep", "60")
    try:
        machine = SlowMonitor(delay=0.3)
        machine.pid = proc.pid  # type: ignore[assignment]
        lost = await Supervisor(interval=0.05).check("dst", machine)  # type: ignore[arg-type]
        assert lost is None and (machine.answered, machine.cut) == (1, 0)
    finally:
        proc.kill()
        await proc.wait()
