"""Fires `--fault` specs from the migration's own events and records each.

The injector knows nothing of the runner: it is handed the two machines, a
link (the netns topology, when there is one) and a map from guest-physical
address to the destination's RAM file, and it is called at every pass and
status event, on a timer, and once after the migration completed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Protocol

from pydantic import Field

from ..core.model import Model
from ..qemu.machine import QemuMachine
from ..verify.ramimage import flip_byte
from .spec import FaultSpec

log = logging.getLogger(__name__)


class Link(Protocol):
    """The link between the two hosts (qmpctl.host.netns.NetnsPair)."""

    def link(self, up: bool) -> None: ...
    def rate(self, mbit: int | None) -> None: ...


class FaultRecord(Model):
    """One fault qmpctl injected, and when."""

    fault: str
    at_s: float = Field(description="seconds after `migrate` was issued")
    pass_no: int
    status: str
    detail: str


class FaultInjector:
    def __init__(self, faults: list[FaultSpec], link: Link | None = None,
                 ram_offset: Callable[[int], int] | None = None) -> None:
        self.faults = faults
        self.link = link
        self.ram_offset = ram_offset
        self.records: list[FaultRecord] = []
        self.src: QemuMachine | None = None
        self.dst: QemuMachine | None = None
        self.started = 0.0
        self.pass_no = 0
        self.status = "none"
        self._fired: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def begin(self, src: QemuMachine, dst: QemuMachine) -> None:
        """The migration starts now: arm the timers. (Called from the run's
        `at_migrate` point, just after the runner took the migration's origin,
        `driver.Started`: fault times count from no earlier than the driver's,
        so what a fault sets off is never stamped before it.)"""
        self.src, self.dst, self.started = src, dst, time.monotonic()
        for i, f in enumerate(self.faults):
            if f.when.kind == "after":
                self._tasks.append(asyncio.create_task(self._after(i, float(f.when.value))))

    def end(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _after(self, i: int, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._fire(i)

    async def on_pass(self, n: int) -> None:
        self.pass_no = n
        for i, f in enumerate(self.faults):
            if f.when.kind == "pass" and int(f.when.value) == n:
                await self._fire(i)

    async def on_status(self, status: str) -> None:
        self.status = status
        for i, f in enumerate(self.faults):
            if f.when.kind == "status" and f.when.value == status:
                await self._fire(i)

    async def after_migration(self) -> None:
        for i, f in enumerate(self.faults):
            if f.when.kind == "completed":
                await self._fire(i)

    async def _fire(self, i: int) -> None:
        if i in self._fired:
            return
        self._fired.add(i)
        f = self.faults[i]
        detail = await self._act(f)
        record = FaultRecord(fault=f.text, at_s=round(time.monotonic() - self.started, 3),
                             pass_no=self.pass_no, status=self.status, detail=detail)
        log.warning("fault injected: %s at +%.2f s (%s)", f.text, record.at_s, detail)
        self.records.append(record)

    async def _act(self, f: FaultSpec) -> str:
        src, dst = self.src, self.dst
        assert src is not None and dst is not None
        match f.kind:
            case "kill-src":
                src.kill()
                return f"SIGKILL to the source QEMU (pid {src.pid})"
            case "kill-dst":
                return f"SIGKILL to the destination QEMU ({await dst.signal(signal.SIGKILL)})"
            case "stop-src":
                return f"SIGSTOP to the source QEMU ({await src.signal(signal.SIGSTOP)})"
            case "stop-dst":
                return f"SIGSTOP to the destination QEMU ({await dst.signal(signal.SIGSTOP)})"
            case "drop-qmp-src":
                await src.qmp.disconnect()
                return "qmpctl closed its monitor connection to the source"
            case "link-down" | "link-down-for" | "rate":
                return self._link(f)
            case "corrupt-dst":
                return self._corrupt(int(f.value or 0), dst)
        raise AssertionError(f.kind)

    def _link(self, f: FaultSpec) -> str:
        assert self.link is not None, "link faults need --topology netns (checked in resolve)"
        if f.kind == "rate":
            self.link.rate(int(f.value or 0))
            return f"tc tbf limits the link to {f.value:g} Mbit/s"
        self.link.link(False)
        if f.kind == "link-down":
            return "link down"
        self._tasks.append(asyncio.create_task(self._link_up_after(f.value or 0)))
        return f"link down for {f.value:g} s"

    async def _link_up_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        assert self.link is not None
        self.link.link(True)
        log.warning("fault: link up again after %.2f s", seconds)

    def _corrupt(self, gpa: int, dst: QemuMachine) -> str:
        assert self.ram_offset is not None
        old, new = flip_byte(dst.spec.ram_path, self.ram_offset(gpa))
        return f"destination byte at gpa 0x{gpa:x} flipped 0x{old:02x} -> 0x{new:02x}"
