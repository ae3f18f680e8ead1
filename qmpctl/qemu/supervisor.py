"""Liveness of the QEMUs of a run, watched for the whole run, independent of
any display: a process that exits, a monitor that goes away, or a monitor
that stops answering (a stopped or hung QEMU) becomes an immediate failure
naming the side and how it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from collections.abc import Awaitable, Callable

from ..core.errors import QmpError, QmpTimeout, SideLost
from ..host.proc import process_state
from .machine import QemuMachine

log = logging.getLogger(__name__)

# What the rest of the run can add to a failure (e.g. the source's error-desc
# when the destination died mid-migration).
Context = Callable[[QemuMachine], Awaitable[str | None]]


def how_it_ended(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with code {code}"


_TRACE_LINE = re.compile(r"^\d+@\d+\.\d+:\w+")  # `PID@TIME:event ...` (trace events)
_QEMU_ERROR = re.compile(r"qemu-system-\w+: (.*)")
EXIT_GRACE_S = 1.0  # how long a QEMU whose monitor went away may take to be reaped
# How long a running QEMU may take to answer query-status before it counts as
# hung. Generous: a TCG QEMU loading a migration on a loaded 2-core host was
# seen silent for over 3 s, alive. A stopped process (SIGSTOP) is seen from
# its state at once, without waiting for this.
ANSWER_WITHIN_S = 10.0


def last_lines(text: str, n: int = 4) -> str:
    """QEMU's own last messages from its stderr (trace lines left out): the
    reason is often a few lines above the last (e.g. `Size mismatch: ram0`)."""
    lines = [line.strip() for line in text.strip().splitlines()
             if line.strip() and not _TRACE_LINE.match(line.strip())]
    errors = [m.group(1) for line in lines if (m := _QEMU_ERROR.search(line))]
    return " | ".join((errors or lines)[-n:])


def lost_cause(side: str, running: bool, exit_code: int | None, stopped: bool,
               error: QmpError | None, answer_within: float) -> str:
    """Why `side` counts as lost, the most telling cause first (pure): how
    its process ended, else that it is stopped, else what its monitor did."""
    if not running:
        return f"{side} QEMU {how_it_ended(exit_code)}"
    if stopped:
        return f"{side} QEMU is stopped (SIGSTOP)"
    if isinstance(error, QmpTimeout):
        return f"{side} QEMU did not answer query-status within {answer_within:g}s"
    return f"{side} QEMU's monitor connection was lost" + (f" ({error.desc})" if error else "")


def _stopped(machine: QemuMachine) -> bool:
    """The process we hold for this QEMU (QEMU, or the ssh to a remote one) is stopped."""
    return machine.pid is not None and process_state(machine.pid) == "T"


class Supervisor:
    """Watches the machines added to it; `watch()` raises SideLost on the first
    failure and otherwise runs until cancelled."""

    def __init__(self, interval: float = 0.5, answer_within: float = ANSWER_WITHIN_S,
                 context: Context | None = None,
                 migrating: Callable[[], bool] = lambda: True) -> None:
        self.interval, self.answer_within, self.context = interval, answer_within, context
        self.migrating = migrating
        self.machines: dict[str, QemuMachine] = {}
        self.stopped = False
        self._wake = asyncio.Event()

    def add(self, side: str, machine: QemuMachine) -> None:
        self.machines[side] = machine

    def forget(self, side: str) -> None:
        """Stop watching `side` (retired, or a guest that may now end by itself)."""
        self.machines.pop(side, None)

    async def _fail(self, side: str, machine: QemuMachine, what: str) -> SideLost:
        detail = what
        if (tail := last_lines(machine.stderr_tail(32768))):
            detail += f"; its last output: {tail}"
        if self.context is not None:
            with contextlib.suppress(Exception):
                if (extra := await self.context(machine)):
                    detail += f"; {extra}"
        log.error("%s: %s", side, detail)
        return SideLost(side, detail, machine.exit_code, self.migrating())

    async def check(self, side: str, machine: QemuMachine) -> SideLost | None:
        error: QmpError | None = None
        if (machine.is_running() and machine.qmp.runstate.name == "RUNNING"
                and not _stopped(machine)):
            try:
                if await self._answers(machine):
                    return None
            except QmpError as exc:
                error = exc
        # A dying QEMU drops its monitor (failing a heartbeat in flight at
        # once) before it is reaped: give the exit a moment, so the cause is
        # how it ended, not the monitor it took with it.
        if machine.is_running() and not _stopped(machine):
            await machine.wait_exit(EXIT_GRACE_S)
        running, stopped = machine.is_running(), _stopped(machine)
        # Stopped or hung: no command can get an answer; cleanup goes straight to signals.
        machine.unresponsive = running and (stopped or isinstance(error, QmpTimeout))
        return await self._fail(side, machine, lost_cause(
            side, running, machine.exit_code, stopped, error, self.answer_within))

    async def _answers(self, machine: QemuMachine) -> bool:
        """Whether `machine` answers query-status (a QmpError is the command's
        own); False as soon as its process is seen stopped while the question
        is out: a SIGSTOP landing then would otherwise cost the whole answer
        bound (seen in CI: a stopped destination named after 10 s, not 0.5)."""
        loop = asyncio.get_running_loop()

        async def until_stopped(bound: asyncio.Timeout) -> None:
            while True:
                await asyncio.sleep(self.interval)
                if _stopped(machine):
                    bound.reschedule(loop.time())  # stop waiting for the answer now
                    return

        poller: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(None) as bound:
                poller = asyncio.create_task(until_stopped(bound))
                await machine.execute("query-status", timeout=self.answer_within)
            return True
        except TimeoutError:  # only the poller sets this bound
            return False
        finally:
            if poller is not None:
                poller.cancel()

    async def first_failure(self, grace: float = 1.0) -> SideLost | None:
        """After the migration failed: did a side die? (A QEMU killed a moment
        ago may not be reaped yet, hence the grace.)"""
        deadline = asyncio.get_running_loop().time() + grace
        while True:
            for side, machine in list(self.machines.items()):
                if not machine.is_running() or machine.qmp.runstate.name != "RUNNING":
                    return await self.check(side, machine)
            if asyncio.get_running_loop().time() >= deadline:
                return None
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        """End `watch()` at its next step, even if a cancellation were lost."""
        self.stopped = True
        self._wake.set()

    async def finish(self, watcher: asyncio.Task[None]) -> None:
        """Stop `watcher` (a task running `watch()`) and let it end by itself:
        cancelling it under a heartbeat leaves QEMU's reply to a command
        nobody waits for (qemu.qmp then warns "Unknown ID ..., message
        dropped"). Cancelled at once when the run itself is being cancelled
        (an interrupt: cleanup must not wait), else only if it does not end
        within the heartbeat's bound."""
        self.stop()
        task = asyncio.current_task()
        if task is None or not task.cancelling():
            await asyncio.wait({watcher}, timeout=self.answer_within + 1)
        watcher.cancel()

    async def watch(self) -> None:
        while not self.stopped:
            for side, machine in list(self.machines.items()):
                if self.stopped:
                    return
                if (failure := await self.check(side, machine)) is not None:
                    raise failure
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
