"""The yardstick of `nox -s bench_verdict`: a raw QMP migration test, written
the way one writes it by hand (QEMU's migration-test recipe), with the guest
and settings of qmpctl's default TCG run (`qmpctl migrate --accel tcg`).

Independent of qmpctl's runner: `qemu.qmp` and the standard library, plus
qmpctl's image lookup to find the guest (nothing else of qmpctl). Both QEMUs
are started at once (the destination with `-incoming defer -S`), on shared
RAM files in /dev/shm; the source's first wave pass ('B' on its UART) says
the guest runs. The migration is held back (64 MiB/s, 1 ms downtime) until
QEMU reports a MIGRATION_PASS past the minimum passes, then released (8 GiB/s,
1000 ms), run to `completed` on both sides; the two RAM files are compared
once (read a MiB at a time and compared), and both QEMUs quit.

What qmpctl does beyond this (the evidence a hand-written test leaves out):
it checks the guest re-dirtied sent memory, compares every page with its
location and class, checks the wave's invariant on the destination, resumes
it and waits for the wave to go on there, then checks the invariant again.

Prints one JSON line: the phases and the total in seconds. Exit 0 when the
RAM files are equal, 1 when not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qemu.qmp import EventListener, QMPClient

from qmpctl.guests.images import image_path

# qmpctl's defaults for `migrate --accel tcg` (scenario/options.py,
# migration/policy.py, guests/wave.py default_wave for x86_64 and 160 MiB);
# tests/unit/test_raw_migrate.py keeps them equal.
QEMU = "qemu-system-x86_64"
RAM_MIB = 160
WAVE = "start=0x200000 end=0x6600000 stride=0x1000 delta=0x1 offset=0x0"
THROTTLE = 64 << 20  # max-bandwidth while held back
HELD_DOWNTIME_MS = 1
MIN_PASSES = 3  # released at the first MIGRATION_PASS beyond this
CONVERGE_BANDWIDTH = 8 << 30
DOWNTIME_MS = 1000


def argv(qemu: str, kernel: Path, run: Path, side: str) -> list[str]:
    """The QEMU command line of one side (as qmpctl's qemu/cmdline.py builds it)."""
    args = [
        qemu, "-name", f"raw-{side}", "-nodefaults", "-no-user-config", "-display", "none",
        "-no-reboot", "-accel", "tcg",
        "-object", f"memory-backend-file,id=ram0,size={RAM_MIB}M,"
                   f"mem-path={run / f'{side}.ram'},share=on",
        "-machine", "pc,memory-backend=ram0", "-m", f"{RAM_MIB}M", "-smp", "1",
        "-chardev", f"socket,id=qmp0,path={run / f'{side}.qmp'}",
        "-mon", "chardev=qmp0,mode=control",
        "-chardev", f"socket,id=serial0,path={run / f'{side}.serial'}",
        "-serial", "chardev:serial0",
        "-kernel", str(kernel), "-fw_cfg", f"name=opt/qmpctl/params,string={WAVE}",
    ]
    return args + (["-incoming", "defer", "-S"] if side == "dst" else [])


class Side:
    """One QEMU: its process, its monitor, and the 'B's on its UART."""

    def __init__(self, qemu: str, kernel: Path, run: Path, side: str) -> None:
        self.argv, self.run, self.side = argv(qemu, kernel, run, side), run, side
        self.qmp = QMPClient(f"raw-{side}")
        self.passes = 0
        self.first_pass = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self.serial: asyncio.Server | None = None

    async def _on_serial(self, reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            self.passes += chunk.count(b"B")
            if self.passes:
                self.first_pass.set()

    async def start(self) -> None:
        await self.qmp.start_server(str(self.run / f"{self.side}.qmp"))
        self.serial = await asyncio.start_unix_server(
            self._on_serial, path=str(self.run / f"{self.side}.serial"))
        log = (self.run / f"{self.side}.log").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        await self.qmp.accept()

    async def quit(self) -> None:
        with contextlib.suppress(Exception):  # QEMU hangs up as it quits
            await self.qmp.execute("quit")
        with contextlib.suppress(Exception):
            await self.qmp.disconnect()
        if self.proc is not None:
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.serial is not None:
            self.serial.close()


def same_ram(a: Path, b: Path, chunk: int = 1 << 20) -> bool:
    """Both files byte for byte, a MiB at a time (an mmap's `==` is identity,
    and a memoryview's compares element by element: both slower, or wrong)."""
    with a.open("rb", buffering=0) as fa, b.open("rb", buffering=0) as fb:
        while block := fa.read(chunk):
            if block != fb.read(chunk):
                return False
        return not fb.read(1)


async def migrate(qemu: str, kernel: Path, run: Path) -> tuple[bool, dict[str, float]]:
    t: dict[str, float] = {}
    t0 = time.monotonic()
    src, dst = Side(qemu, kernel, run, "src"), Side(qemu, kernel, run, "dst")
    try:
        await asyncio.gather(src.start(), dst.start())
        t["launch"] = time.monotonic() - t0
        await asyncio.wait_for(src.first_pass.wait(), 60)
        t["boot"] = time.monotonic() - t0 - t["launch"]

        t1 = time.monotonic()
        held = {"max-bandwidth": THROTTLE, "downtime-limit": HELD_DOWNTIME_MS}
        for side in (src, dst):
            await side.qmp.execute("migrate-set-capabilities", {"capabilities": [
                {"capability": "events", "state": True}]})
            await side.qmp.execute("migrate-set-parameters", held)
        uri = f"unix:{run / 'mig.sock'}"
        with dst.qmp.listener(("MIGRATION",)) as dst_events, \
                src.qmp.listener(("MIGRATION", "MIGRATION_PASS")) as events:
            await dst.qmp.execute("migrate-incoming", {"uri": uri})
            await src.qmp.execute("migrate", {"uri": uri})
            released = False
            async for event in events:
                if event["event"] == "MIGRATION_PASS" and not released \
                        and event["data"]["pass"] > MIN_PASSES:
                    await src.qmp.execute("migrate-set-parameters", {
                        "max-bandwidth": CONVERGE_BANDWIDTH, "downtime-limit": DOWNTIME_MS})
                    released = True
                elif event["event"] == "MIGRATION":
                    status = event["data"]["status"]
                    if status == "completed":
                        break
                    if status in ("failed", "cancelled"):
                        raise RuntimeError(f"migration {status}")
            if await asyncio.wait_for(final_status(dst_events), 30) != "completed":
                raise RuntimeError("the destination did not complete")
        t["migrate"] = time.monotonic() - t1

        t1 = time.monotonic()
        ok = await asyncio.to_thread(same_ram, run / "src.ram", run / "dst.ram")
        t["compare"] = time.monotonic() - t1
    finally:
        t1 = time.monotonic()
        await asyncio.gather(src.quit(), dst.quit())
        t["teardown"] = time.monotonic() - t1
    return ok, t


async def final_status(events: EventListener) -> str:
    """The destination's final migration status, from its events."""
    async for event in events:
        status = str(event["data"]["status"])
        if status in ("completed", "failed", "cancelled"):
            return status
    return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qemu", default=QEMU)
    args = parser.parse_args()
    t0 = time.monotonic()
    kernel = image_path("x86_64", "wave.elf")
    run = Path(tempfile.mkdtemp(prefix="raw-migrate-", dir="/dev/shm"))
    try:
        ok, phases = asyncio.run(migrate(args.qemu, kernel, run))
    finally:
        t1 = time.monotonic()
        shutil.rmtree(run, ignore_errors=True)
        cleanup = time.monotonic() - t1
    phases["rmtree"] = cleanup
    print(json.dumps({"equal": ok, "total": time.monotonic() - t0,
                      **{k: round(v, 3) for k, v in phases.items()}}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
