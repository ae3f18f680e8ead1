"""QMP failures split by cause. A fake QMP server is fine here: these are
protocol edge cases (an error reply, no reply, a vanished monitor), not proof
that a migration works."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qmpctl.core.errors import MonitorLost, QmpReplyError, QmpTimeout
from qmpctl.qemu.cmdline import MachineSpec
from qmpctl.qemu.machine import QemuMachine

GREETING = {"QMP": {"version": {"qemu": {"major": 10, "minor": 0, "micro": 2},
                                "package": ""}, "capabilities": []}}


async def fake_qmp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greets, negotiates, then: `bad` -> error reply, `hang` -> silence, `bye` -> close."""
    writer.write(json.dumps(GREETING).encode() + b"\n")
    decoder, buf = json.JSONDecoder(), ""
    while chunk := await reader.read(4096):
        buf += chunk.decode()
        try:  # QMP is a JSON stream: messages need not end with a newline
            msg, end = decoder.raw_decode(buf.lstrip())
        except json.JSONDecodeError:
            continue
        buf = buf.lstrip()[end:]
        cmd, msg_id = msg["execute"], msg.get("id")
        if cmd == "hang":
            continue
        if cmd == "bye":
            writer.close()
            return
        reply = ({"error": {"class": "GenericError", "desc": "no can do"}, "id": msg_id}
                 if cmd == "bad" else {"return": {}, "id": msg_id})
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()


@pytest.fixture
async def machine(tmp_path: Path) -> AsyncIterator[QemuMachine]:
    sock = tmp_path / "qmp.sock"
    server = await asyncio.start_unix_server(fake_qmp, path=str(sock))
    spec = MachineSpec(arch="x86_64", binary=Path("/bin/false"), accel="tcg", ram_mib=32,
                       ram_path=tmp_path / "ram", qmp_socket=sock,
                       serial_socket=tmp_path / "s.sock", serial_log=tmp_path / "serial",
                       name="fake")
    m = QemuMachine(spec, tmp_path / "log")
    await m.qmp.connect(str(sock))
    yield m
    with contextlib.suppress(EOFError, ConnectionError):  # re-raises the monitor's end
        await m.qmp.disconnect()
    server.close()


async def test_error_reply_keeps_class_and_desc(machine: QemuMachine) -> None:
    assert await machine.execute("good") == {}
    with pytest.raises(QmpReplyError) as info:
        await machine.execute("bad", {"x": 1})
    err = info.value
    assert (err.error_class, err.desc, err.command, err.arguments) == (
        "GenericError", "no can do", "bad", {"x": 1})
    assert str(err) == "fake: bad: no can do"


async def test_no_reply_is_a_timeout(machine: QemuMachine) -> None:
    with pytest.raises(QmpTimeout, match=r"fake: hang: no reply within 0.2s"):
        await machine.execute("hang", timeout=0.2)


async def test_closed_monitor_is_lost(machine: QemuMachine) -> None:
    with pytest.raises((MonitorLost, QmpTimeout)):
        await machine.execute("bye", timeout=2)
    with pytest.raises(MonitorLost, match="monitor unavailable"):
        await machine.execute("good", timeout=2)


async def test_an_unresponsive_qemu_is_not_asked(machine: QemuMachine) -> None:
    """A QEMU the supervisor saw stopped (SIGSTOP) or hung gets no command: it
    could only time out, and cleanup (cancel, query-status) would wait on it."""
    machine.unresponsive = True
    async with asyncio.timeout(1):  # the command's own bound is 5 s
        with pytest.raises(QmpTimeout, match="not sent: QEMU stopped answering"):
            await machine.execute("hang", timeout=5)
