#!/usr/bin/env python3
"""Reproduce a qmpctl migration that lost pages, with nothing but QEMU, the
`qemu.qmp` package and Python's stdlib (no qmpctl).

    python3 repro.py [--runs N] [--keep] [--dir TMPFS_DIR]

Each run: start both QEMUs with the command lines in plan.json (QEMU connects
to our QMP and serial sockets, as under qmpctl), wait for the guest's wave to
run, set the same capabilities and parameters on both sides, migrate, hold
convergence back exactly as qmpctl did (throttled, 1 ms downtime, until
`min_passes` dirty syncs and the guest wrote a pass since the migration
began, or `hold_timeout_s`), then release it; once both sides completed,
compare the two RAM files page by page (compare.py). Exit 1 if any run lost
pages, 0 if none did, 3 if no run got as far as comparing. Set QEMU_SRC /
QEMU_DST to run other QEMU binaries.
"""

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from qemu.qmp import EventListener, QMPClient

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compare  # type: ignore[import-not-found]  # noqa: E402  (beside this script)

PLAN = json.loads((HERE / "plan.json").read_text())
FINAL = ("completed", "failed", "cancelled")
STREAMING = ("active", "device")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Serial:
    """The guest's UART: counts wave passes ('B') once the wave announced itself."""

    def __init__(self) -> None:
        self.text = ""

    @property
    def passes(self) -> int:
        head = self.text.find("QMPCTL wave ")
        line_end = self.text.find("\n", head) if head >= 0 else -1
        return self.text.count("B", line_end) if line_end >= 0 else 0

    async def accept(self, reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            self.text += data.decode("utf-8", "replace")


class Qemu:
    def __init__(self, side: str, run: Path, port: int) -> None:
        self.side, self.run, self.serial = side, run, Serial()
        fill = {"{run}": str(run), "{repro}": str(HERE), "{port}": str(port)}

        def sub(text: str) -> str:
            for key, value in fill.items():
                text = text.replace(key, value)
            return text

        self.argv = [sub(a) for a in PLAN["argv"][side]]
        self.argv[0] = os.environ.get(f"QEMU_{side.upper()}", self.argv[0])
        self.files = {k: sub(v) for k, v in PLAN["files"][side].items()}
        self.qmp, self.events = QMPClient(side), EventListener()
        self.proc: asyncio.subprocess.Process | None = None
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self.serial.accept,
                                                      path=self.files["serial_socket"])
        await self.qmp.start_server(self.files["qmp_socket"])
        out = os.open(self.run / f"{self.side}.log", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_us)
        finally:
            os.close(out)
        await asyncio.wait_for(self.qmp.accept(), 30)
        self.qmp.register_listener(self.events)

    async def cmd(self, name: str, args: dict[str, Any] | None = None) -> Any:
        return await asyncio.wait_for(self.qmp.execute(name, args), 30)

    async def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):  # gone already, or not answering: killed below
            await self.cmd("quit")
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        with contextlib.suppress(Exception):  # QEMU closed the monitor as it quit
            await self.qmp.disconnect()
        if self.server is not None:
            self.server.close()

    async def until_final(self, timeout: float) -> str:
        """This side's migration status once final (completed, failed, cancelled)."""
        status = (await self.cmd("query-migrate")).get("status", "none")
        while status not in FINAL:
            event: Any = await asyncio.wait_for(self.events.get(), timeout)
            if event["event"] == "MIGRATION":
                status = event["data"]["status"]
        return str(status)


async def settings(q: Qemu) -> None:
    caps = [{"capability": k, "state": v} for k, v in PLAN["capabilities"].items()]
    if caps:
        await q.cmd("migrate-set-capabilities", {"capabilities": caps})
    if PLAN["parameters"]:
        await q.cmd("migrate-set-parameters", PLAN["parameters"])


async def migrate(src: Qemu, dst: Qemu, uri: str) -> None:
    """qmpctl's hold-back: release once past min_passes and the guest re-dirtied."""
    await dst.cmd("migrate-incoming", {"uri": uri})
    passes_before, t0 = src.serial.passes, time.monotonic()
    await src.cmd("migrate", {"uri": uri})
    status, pass_no, released = "setup", 0, False
    sent, moved_at = -1, time.monotonic()
    while status not in FINAL:
        elapsed = time.monotonic() - t0
        if elapsed > PLAN["migration_timeout_s"]:
            await src.cmd("migrate_cancel")
            raise RuntimeError(f"migration still {status} after {elapsed:.0f} s: cancelled")
        event: Any = None
        with contextlib.suppress(TimeoutError):
            event = await asyncio.wait_for(src.events.get(), 0.5)
        now = (await src.cmd("query-migrate")).get("ram", {}).get("transferred", 0)
        if now != sent:
            sent, moved_at = now, time.monotonic()
        elif status in STREAMING and time.monotonic() - moved_at > PLAN["stuck_s"]:
            await src.cmd("migrate_cancel")  # as qmpctl does
            raise RuntimeError(f"no byte sent for {time.monotonic() - moved_at:.0f} s: the "
                               f"stream is stuck ({PLAN['stuck_why']}); cancelled")
        if event is not None and event["event"] == "MIGRATION":
            status = event["data"]["status"]
            log(f"source: {status}")
        elif event is not None and event["event"] == "MIGRATION_PASS":
            pass_no = event["data"]["pass"]
        redirtied = src.serial.passes > passes_before
        if not released and pass_no > PLAN["min_passes"] and (
                redirtied or elapsed > PLAN["hold_timeout_s"]):
            released = True
            why = "the guest rewrote sent memory" if redirtied else "hold timeout"
            log(f"pass {pass_no}: release {PLAN['release']} ({why}; "
                f"{src.serial.passes - passes_before} wave passes since migrate)")
            await src.cmd("migrate-set-parameters", PLAN["release"])
    info = await src.cmd("query-migrate")
    if status != "completed":
        raise RuntimeError(f"migration {status}: {info.get('error-desc', '')}")
    if (dst_status := await dst.until_final(30)) != "completed":
        raise RuntimeError(f"the destination's migration ended {dst_status}")
    log(f"completed: {info['ram']['dirty-sync-count']} dirty syncs, "
        f"downtime {info.get('downtime')} ms")


async def one_run(root: str) -> bool:
    run = Path(tempfile.mkdtemp(prefix="qmpctl-repro-", dir=root))
    port = free_port()
    src, dst = Qemu("src", run, port), Qemu("dst", run, port)
    try:
        await src.start()
        deadline = time.monotonic() + PLAN["boot_timeout_s"]
        while src.serial.passes < 1:
            if time.monotonic() > deadline or (src.proc and src.proc.returncode is not None):
                raise RuntimeError("the guest's wave did not start (src.log, serial)")
            await asyncio.sleep(0.05)
        await dst.start()
        for q in (dst, src):
            await settings(q)
        await migrate(src, dst, PLAN["uri"].replace("{run}", str(run)).replace(
            "{port}", str(port)))
        for fault in PLAN["corrupt_dst"]:  # qmpctl's --fault corrupt-dst, replayed
            corrupt(dst.files["ram_file"], fault["offset"])
            log(f"fault: destination byte at gpa 0x{fault['gpa']:x} flipped (xor 0x5a)")
        return bool(compare.main(["compare.py", src.files["ram_file"],
                                  dst.files["ram_file"], str(HERE / "plan.json")]) == 1)
    finally:
        for q in (src, dst):
            try:
                await q.stop()
            except Exception as exc:  # the other one must stop too
                log(f"{q.side}: stopping it: {exc!r}")
        if KEEP:
            log(f"kept {run}")
        else:
            shutil.rmtree(run, ignore_errors=True)


def die_with_us() -> None:
    """In the QEMU child: SIGKILL when this script dies (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def corrupt(ram_file: str, offset: int) -> None:
    with open(ram_file, "r+b") as f:
        f.seek(offset)
        old = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([old ^ 0x5A]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main() -> int:
    global KEEP
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep each run's directory")
    ap.add_argument("--dir", default="/dev/shm", help="tmpfs for RAM files and sockets")
    args = ap.parse_args()
    KEEP = args.keep
    lost = compared = 0
    for i in range(1, args.runs + 1):
        log(f"run {i}/{args.runs} ({PLAN['run']})")
        try:
            lost += await one_run(args.dir)
            compared += 1
        except (TimeoutError, RuntimeError, OSError) as exc:
            log(f"run {i}: could not compare: {exc}")
    print(f"RESULT lost={lost} compared={compared} runs={args.runs}")
    return 1 if lost else (0 if compared else 3)


KEEP = False
if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
