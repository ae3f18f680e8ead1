"""The guest's first UART: a unix-socket server QEMU connects to, a parser for
the guests' serial protocol, and waits on what the guest says.

Protocol (shared by every guest in guestload/): a record is the rest of a line
after `QMPCTL `, a kind followed by key=value fields; a `B` outside records is
one completed pass of the bare-metal wave workload (QEMU migration-test's
convention).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..core.errors import GuestError

T = TypeVar("T")
MARK = "QMPCTL "


@dataclass(frozen=True)
class Record:
    kind: str
    fields: dict[str, str]
    raw: str
    at: float = 0.0  # host monotonic time the line arrived (0 when parsed from a log)

    def int(self, key: str) -> int:
        """A numeric field (hex with 0x, or decimal)."""
        try:
            return int(self.fields[key], 0)
        except (KeyError, ValueError) as exc:
            raise GuestError(f"guest record {self.raw!r}: bad or missing field {key!r}") from exc


def parse_record(text: str, at: float = 0.0) -> Record:
    kind, *tokens = text.split() or [""]
    fields = dict(tok.partition("=")[::2] for tok in tokens)
    return Record(kind, fields, text.strip(), at)


@dataclass
class ConsoleView:
    """What the guest has said so far."""

    records: list[Record] = field(default_factory=list)
    passes: int = 0
    # Every complete line but bare pass markers, as printed (a foreign
    # guest's own output, e.g. kvm-unit-tests' "PASS: ..." lines).
    lines: list[str] = field(default_factory=list)

    def find(self, kind: str, **match: str) -> list[Record]:
        return [
            r for r in self.records
            if r.kind == kind and all(r.fields.get(k) == v for k, v in match.items())
        ]

    def last(self, kind: str) -> Record | None:
        found = self.find(kind)
        return found[-1] if found else None


def pass_marks(text: str) -> int:
    """`B` markers in text outside records; other text (firmware noise) counts 0."""
    text = text.rstrip("\r")
    return len(text) if text and text.count("B") == len(text) else 0


def scan_line(line: str, view: ConsoleView, at: float = 0.0) -> None:
    """Add one complete line to `view`."""
    head, mark, rest = line.rstrip("\r").partition(MARK)
    view.passes += pass_marks(head)
    if mark:
        view.records.append(parse_record(rest, at))
    if mark or (head and not pass_marks(head)):
        view.lines.append(line.rstrip("\r"))


def parse_console(data: bytes) -> ConsoleView:
    """Parse a whole console transcript (pure; used on logs and in tests)."""
    view = ConsoleView()
    *lines, tail = data.decode("utf-8", "replace").split("\n")
    for line in lines:
        scan_line(line, view)
    view.passes += pass_marks(tail.partition(MARK)[0])
    return view


class SerialConsole:
    """Accepts QEMU's serial chardev connection and keeps an incremental view.

    QEMU is the client so that nothing the guest prints before we look is
    lost, and so that a stale socket file can never be connected to.
    """

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.transcript = bytearray()
        self._done = ConsoleView()  # complete lines only
        self._partial = ""
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self._attached: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._on_connect, path=str(self.path))

    async def attach(self, sock: socket.socket) -> None:
        """Read a QEMU that listens itself (a remote one) over `sock`, connected."""
        reader, writer = await asyncio.open_connection(sock=sock)
        self._attached = asyncio.create_task(self._on_connect(reader, writer))

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:  # only the one QEMU we launched
            writer.close()
            return
        self._writer = writer
        self._connected.set()
        self._reader_task = asyncio.current_task()
        try:
            while chunk := await reader.read(65536):
                await self._feed(chunk)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            async with self._changed:
                self._closed = True
                self._changed.notify_all()

    async def _feed(self, chunk: bytes) -> None:
        self.transcript += chunk
        *lines, self._partial = (self._partial + chunk.decode("utf-8", "replace")).split("\n")
        now = time.monotonic()
        for line in lines:
            scan_line(line, self._done, now)
        async with self._changed:
            self._changed.notify_all()

    def view(self) -> ConsoleView:
        """Complete lines plus the `B` markers of the line being written."""
        return ConsoleView(
            list(self._done.records),
            self._done.passes + pass_marks(self._partial.partition(MARK)[0]),
            list(self._done.lines),
        )

    async def wait_for(self, probe: Callable[[ConsoleView], T | None], timeout: float,
                       what: str) -> T:
        """Wait until `probe(view)` returns something, or fail naming `what`.

        A guest `error` record fails the wait at once: it will not recover.
        """
        async def _wait() -> T:
            async with self._changed:
                while True:
                    view = self.view()
                    if (err := view.last("error")) is not None:
                        raise GuestError(f"{self.name} guest reported: {err.raw}")
                    if (result := probe(view)) is not None:
                        return result
                    if self._closed:
                        raise GuestError(f"{self.name}: console closed while waiting for {what}")
                    await self._changed.wait()

        try:
            async with asyncio.timeout(timeout):
                return await _wait()
        except TimeoutError:
            raise GuestError(
                f"{self.name}: timed out after {timeout:.0f}s waiting for {what}; "
                f"last output: {self.tail()!r}"
            ) from None

    async def wait_passes(self, count: int, timeout: float) -> int:
        """Wait until `count` more wave passes than now have been reported."""
        target = self.view().passes + count
        return await self.wait_for(
            lambda v: v.passes if v.passes >= target else None, timeout,
            f"{count} workload passes",
        )

    async def send(self, data: bytes) -> None:
        if self._writer is None:
            raise GuestError(f"{self.name}: console not connected")
        self._writer.write(data)
        await self._writer.drain()

    def tail(self, nbytes: int = 200) -> str:
        return bytes(self.transcript[-nbytes:]).decode("utf-8", "replace")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._attached is not None:
            self._attached.cancel()
            with contextlib.suppress(BaseException):
                await self._attached
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
