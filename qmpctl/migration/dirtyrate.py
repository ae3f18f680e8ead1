"""`calc-dirty-rate` on a running guest: in dirty-ring mode its success proves
the ring is on (off by default: see docs/findings.md)."""

from __future__ import annotations

import asyncio
import time

from pydantic import Field

from ..core.errors import HostError
from ..core.model import Model
from ..qemu.machine import QemuMachine


class DirtyRateProbe(Model):
    mode: str
    calc_time_s: float
    dirty_rate_mib_s: int | None
    vcpu_dirty_rates_mib_s: list[int] = Field(default_factory=list)


async def probe_dirty_rate(machine: QemuMachine, mode: str, calc_time: float = 1.0
                           ) -> DirtyRateProbe:
    """calc-dirty-rate in `mode`, then wait for `query-dirty-rate` to be measured."""
    await machine.execute("calc-dirty-rate", {"calc-time": int(calc_time), "mode": mode})
    deadline = time.monotonic() + calc_time + 10
    while time.monotonic() < deadline:
        info = await machine.execute("query-dirty-rate")
        if info.get("status") == "measured":
            return DirtyRateProbe(
                mode=mode, calc_time_s=calc_time, dirty_rate_mib_s=info.get("dirty-rate"),
                vcpu_dirty_rates_mib_s=[int(v["dirty-rate"])
                                        for v in info.get("vcpu-dirty-rate", [])],
            )
        await asyncio.sleep(0.2)
    raise HostError(f"calc-dirty-rate ({mode}) did not finish")
