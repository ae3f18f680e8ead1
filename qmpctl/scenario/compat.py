"""Can these two QEMUs migrate this machine at all? Asked of the binaries.

Two QEMU releases agree on a versioned machine type (`options.choose_machine_type`)
but may still disagree on some device's state: arm64 CPU registers between
7.2 and 10.0, for one. Before any guest starts, a cross-version run migrates
the same machine, paused and never booted (the source started with `-S`,
nothing run), from a source QEMU to a destination QEMU over a unix socket.
If the destination cannot load that state, the pair is refused with QEMU's
own words, as a usage error, instead of a failed run after the guest booted.

A passing probe does not prove the real migration will load (a running guest
sends subsections a paused one may not); the real run checks that itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import replace

from ..core.errors import QmpctlError, UsageError
from ..qemu.cmdline import MachineSpec
from ..qemu.machine import QemuMachine
from ..qemu.rundir import RunDir
from .options import Resolved

PROBE_TIMEOUT = 60.0
_TIMESTAMP = re.compile(r"^\S+Z (?=\S)")  # -msg timestamp=on


def qemu_complaint(log: str, max_lines: int = 4) -> str:
    """The destination's own error lines from its stderr, trace lines dropped (pure)."""
    lines = [_TIMESTAMP.sub("", line).strip() for line in log.splitlines()]
    errors = [line for line in lines if line and "qemu-system-" in line.split(" ")[0]]
    return " | ".join(errors[-max_lines:]) or (lines[-1] if lines else "no output")


async def _final_status(machine: QemuMachine, deadline: float) -> str:
    """Poll `query-migrate` until a final status (or the QEMU is gone)."""
    while time.monotonic() < deadline:
        if not machine.is_running():
            return f"exited (code {machine.exit_code})"
        try:
            status = str((await machine.execute("query-migrate", timeout=5)).get("status"))
        except QmpctlError:
            code = await machine.wait_exit(2)
            return "monitor lost" if code is None else f"exited (code {code})"
        if status in ("completed", "failed", "cancelled"):
            return status
        await asyncio.sleep(0.05)
    return "timeout"


async def probe_pair(r: Resolved, run: RunDir, src_spec: MachineSpec,
                     dst_spec: MachineSpec) -> float:
    """Migrate the paused, unbooted machine of `src_spec` (the run's own source
    spec) into `dst_spec`'s; UsageError if the destination cannot load it.
    Returns the seconds it took."""
    t0 = time.monotonic()
    src_spec = replace(src_spec, incoming=False, paused=True, netns=None, trace_events=(),
                       name="qmpctl-xprobe-src")
    dst_spec = replace(dst_spec, incoming=True, netns=None, trace_events=(),
                       name="qmpctl-xprobe-dst")
    uri = f"unix:{run.side('xmig', 'sock')}"
    deadline = time.monotonic() + PROBE_TIMEOUT
    try:
        async with contextlib.AsyncExitStack() as stack:
            src = await stack.enter_async_context(
                QemuMachine(src_spec, src_spec.serial_log.with_suffix(".log")))
            dst = await stack.enter_async_context(
                QemuMachine(dst_spec, dst_spec.serial_log.with_suffix(".log")))
            await dst.execute("migrate-incoming", {"uri": uri})
            await src.execute("migrate", {"uri": uri})
            src_status = await _final_status(src, deadline)
            dst_status = await _final_status(dst, deadline)
            problem = None if (src_status, dst_status) == ("completed", "completed") else (
                f"source {src_status}, destination {dst_status}: "
                + qemu_complaint(dst.stderr_tail(4000)))
    finally:
        for spec in (src_spec, dst_spec):
            spec.ram_path.unlink(missing_ok=True)
    if problem is not None:
        raise UsageError(
            f"{r.qemu_src.describe()} -> {r.qemu_dst.describe()} cannot migrate this "
            f"machine ({r.machine}" + (f", -cpu {r.cpu}" if r.cpu else "") + "): the paused, "
            f"unbooted machine did not migrate before any guest started ({problem})")
    return round(time.monotonic() - t0, 3)
