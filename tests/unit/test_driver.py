"""driver.migrate against a scripted QMP peer pair: what it sends, what it
records, and how each way a migration ends is reported. A fake QMP server is
fine here: these are the driver's protocol decisions (the e2e tests prove
real migrations with real QEMUs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qmpctl.core.errors import MigrationFailed
from qmpctl.migration import driver
from qmpctl.migration.models import MigrationStats
from qmpctl.migration.policy import Converge, HoldBack
from qmpctl.qemu.cmdline import MachineSpec
from qmpctl.qemu.machine import QemuMachine

GREETING = {"QMP": {"version": {"qemu": {"major": 10, "minor": 0, "micro": 2},
                                "package": ""}, "capabilities": []}}
PASS_S = 0.02
RAM = 64 << 20


@dataclass
class Script:
    """One migration as a pair of QEMUs would play it.

    The source makes a pass every PASS_S once `migrate` arrives and completes
    on the pass after a downtime limit of at least 1 s is set (what Converge
    asks), unless `fail_at_pass` fails it first (with `error_desc`) or
    `never_completes`. The destination ends in `dst_final`."""

    fail_at_pass: int | None = None
    error_desc: str = "Unable to write to socket: Broken pipe"
    never_completes: bool = False
    dst_final: str = "completed"
    src_commands: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: str = "none"
    passes: int = 0
    may_complete: bool = False
    src_writer: asyncio.StreamWriter | None = None
    dst_writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None

    def query_migrate(self) -> dict[str, Any]:
        info: dict[str, Any] = {"status": self.status}
        if self.status != "none":
            info["ram"] = {"transferred": self.passes * (8 << 20), "total": RAM,
                           "remaining": 0 if self.status == "completed" else 8 << 20,
                           "normal": self.passes * 2048, "duplicate": 0, "page-size": 4096,
                           "dirty-sync-count": self.passes, "mbps": 100.0,
                           "dirty-pages-rate": 1000}
        if self.status == "failed":
            info["error-desc"] = self.error_desc
        return info

    @staticmethod
    def emit(writer: asyncio.StreamWriter | None, event: str, data: dict[str, Any]) -> None:
        if writer is not None:
            now = time.time()
            writer.write(json.dumps({"event": event, "data": data, "timestamp": {
                "seconds": int(now), "microseconds": int(now % 1 * 1e6)}}).encode() + b"\n")

    def set_status(self, status: str) -> None:
        self.status = status
        self.emit(self.src_writer, "MIGRATION", {"status": status})

    async def play(self) -> None:
        self.set_status("setup")
        self.set_status("active")
        while True:
            await asyncio.sleep(PASS_S)
            self.passes += 1
            self.emit(self.src_writer, "MIGRATION_PASS", {"pass": self.passes})
            if self.passes == self.fail_at_pass:
                self.set_status("failed")
                self.emit(self.dst_writer, "MIGRATION", {"status": "failed"})
                return
            if self.may_complete and not self.never_completes:
                self.set_status("device")
                self.set_status("completed")
                self.emit(self.dst_writer, "MIGRATION", {"status": self.dst_final})
                return

    def reply(self, side: str, cmd: str, args: dict[str, Any]) -> Any:
        if side == "src":
            self.src_commands.append((cmd, args))
            if cmd == "migrate":
                self.task = asyncio.get_running_loop().create_task(self.play())
            if cmd == "migrate-set-parameters" and args.get("downtime-limit", 0) >= 1000:
                self.may_complete = True
            if cmd == "query-migrate":
                return self.query_migrate()
        elif cmd == "query-migrate":
            return {"status": "active"}
        if cmd == "query-status":
            return {"status": "postmigrate" if self.status == "completed" else "running",
                    "running": self.status != "completed"}
        return {}

    def server(self, side: str) -> Any:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            setattr(self, f"{side}_writer", writer)
            writer.write(json.dumps(GREETING).encode() + b"\n")
            decoder, buf = json.JSONDecoder(), ""
            while chunk := await reader.read(4096):
                buf += chunk.decode()
                while buf.strip():
                    try:
                        msg, end = decoder.raw_decode(buf.lstrip())
                    except json.JSONDecodeError:
                        break
                    buf = buf.lstrip()[end:]
                    ret = self.reply(side, msg["execute"], msg.get("arguments", {}))
                    writer.write(json.dumps({"return": ret, "id": msg.get("id")}).encode()
                                 + b"\n")
                await writer.drain()
        return serve


@contextlib.asynccontextmanager
async def pair(script: Script, tmp_path: Path) -> AsyncIterator[tuple[QemuMachine, QemuMachine]]:
    machines, servers = [], []
    for side in ("src", "dst"):
        sock = tmp_path / f"{side}.sock"
        servers.append(await asyncio.start_unix_server(script.server(side), path=str(sock)))
        spec = MachineSpec(arch="x86_64", binary=Path("/bin/false"), accel="tcg", ram_mib=64,
                           ram_path=tmp_path / f"{side}.ram", qmp_socket=sock,
                           serial_socket=tmp_path / f"{side}.s", serial_log=tmp_path / side,
                           name=f"fake-{side}")
        m = QemuMachine(spec, tmp_path / f"{side}.log")
        await m.qmp.connect(str(sock))
        machines.append(m)
    try:
        yield machines[0], machines[1]
    finally:
        if script.task is not None:
            script.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await script.task
        for m in machines:
            with contextlib.suppress(EOFError, ConnectionError):
                await m.qmp.disconnect()
        for s in servers:
            s.close()


def policy(min_passes: int = 3) -> HoldBack:
    return HoldBack(Converge(), min_passes=min_passes, hold_timeout_s=30)


async def test_a_held_back_migration_is_released_after_its_passes_and_completes(
        tmp_path: Path) -> None:
    script, stats = Script(), MigrationStats(status="none")
    async with pair(script, tmp_path) as (src, dst):
        await driver.migrate(src, dst, "unix:/nowhere", policy(3), stats, timeout=10)
    sent = [(c, a) for c, a in script.src_commands if c != "qmp_capabilities"]
    commands = [c for c, _ in sent]
    assert sent[0] == ("migrate", {"uri": "unix:/nowhere"})
    release = commands.index("migrate-set-parameters")
    assert sent[release][1] == {"max-bandwidth": 8 << 30, "downtime-limit": 1000}
    assert stats.status == "completed" and stats.statuses[-1] == "completed"
    assert [d.action for d in stats.decisions] == ["EndHoldBack", "SetParameters"]
    assert stats.decisions[0].pass_no == 4  # released once pass 4 shows 3 syncs done
    assert stats.throttled_passes == 3
    assert [s.pass_no for s in stats.samples] == list(range(1, len(stats.samples) + 1))
    assert stats.samples[-1].pass_no >= 4


async def test_a_failed_source_raises_with_qemus_error_desc(tmp_path: Path) -> None:
    script, stats = Script(fail_at_pass=2), MigrationStats(status="none")
    async with pair(script, tmp_path) as (src, dst):
        with pytest.raises(MigrationFailed) as err:
            await driver.migrate(src, dst, "unix:/nowhere", policy(3), stats, timeout=10)
    assert err.value.message == f"migration failed: {script.error_desc}"
    assert err.value.error_desc == script.error_desc and stats.error_desc == script.error_desc
    assert stats.throttled_passes == stats.passes  # never released: all passes were held


async def test_a_migration_that_never_finishes_says_why_at_the_timeout(tmp_path: Path) -> None:
    script, stats = Script(never_completes=True), MigrationStats(status="none")
    async with pair(script, tmp_path) as (src, dst):
        with pytest.raises(MigrationFailed) as err:
            await driver.migrate(src, dst, "unix:/nowhere", policy(1000), stats, timeout=0.5)
    assert stats.status == "timeout"
    assert err.value.message.startswith("migration did not finish within 0s: last status "
                                        "active; ")
    assert err.value.message.endswith("MiB remain; convergence was still held back")


async def test_a_destination_that_disagrees_fails_the_migration(tmp_path: Path) -> None:
    script, stats = Script(dst_final="failed"), MigrationStats(status="none")
    async with pair(script, tmp_path) as (src, dst):
        with pytest.raises(MigrationFailed,
                           match=r"^source completed but destination says failed$"):
            await driver.migrate(src, dst, "unix:/nowhere", policy(2), stats, timeout=10)
    assert stats.status == "completed"


async def test_a_guest_failure_ends_the_migration_at_once(tmp_path: Path) -> None:
    from qmpctl.core.errors import GuestError

    script, stats = Script(never_completes=True), MigrationStats(status="none")
    failed = {"now": False}

    async def on_pass(n: int) -> None:
        failed["now"] = n >= 2

    watch = driver.Watch(on_pass=on_pass,
                         guest_failed=lambda: "wave error" if failed["now"] else None)
    async with pair(script, tmp_path) as (src, dst):
        with pytest.raises(GuestError, match=r"^wave error$"):
            await driver.migrate(src, dst, "unix:/nowhere", policy(1000), stats, timeout=10,
                                 watch=watch)
    assert [s.pass_no for s in stats.samples] == [1, 2]  # ended on the pass that saw it
