"""`qmpctl agent`: verification where the destination's RAM lives.

A destination on another host cannot be compared byte by byte from here; the
agent runs beside it, hashes its RAM file page by page (`page_digests`, the
`--verify hash` mode) and sends back only the digests, 8 bytes a page. It
also returns strided samples (one byte per stride: what the wave invariant
reads), so guest checks run without moving RAM either.

Protocol: one JSON object per line from the client; each answer is a JSON
line, followed for `digests` and `samples` by exactly `bytes` raw bytes.

    {"op": "hello", "token": T}                      -> {"ok": true, "version": V}
    {"op": "digests", "path": P}                     -> {"ok": true, "bytes": N, "seconds": S}
    {"op": "samples", "path": P, "lo": A, "hi": B, "step": C} -> {"ok": true, "bytes": N}
    anything wrong                                   -> {"ok": false, "error": "..."}

The agent only reads regular files under its roots (`--root`, repeatable;
default /dev/shm, where qmpctl keeps RAM files), never writes, and serves one
request at a time per connection. It listens on TCP (`HOST:PORT`) or on a unix socket
(`unix:PATH`, made 0600: through ssh, qmpctl reaches it with `qmpctl relay`).
Every connection must first say `hello` with the agent's token, a random
secret it makes at start and prints once on its stdout, in its first line
(`{"listening": ..., "token": ...}`), which only whoever started it reads
(qmpctl, through `ip netns exec` or ssh); anything else before that is
refused and the connection closed. The client side (`AgentClient`) is blocking on purpose: guest
checks call it from a worker thread.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..core.errors import HostError
from .digest import page_digests
from .ramimage import RamImage

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:
    from ..core.lazy import numpy as np

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/dev/shm")
AGENT_PORT = 4442  # in the destination's (new) network namespace, nothing else listens


def _allowed(roots: tuple[Path, ...], path: str) -> Path:
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(r.resolve()) for r in roots) or not resolved.is_file():
        raise ValueError(f"{path}: not a file under {' or '.join(map(str, roots))}")
    return resolved


def answer(request: dict[str, Any], roots: tuple[Path, ...]) -> tuple[dict[str, Any], bytes]:
    """One request's header and payload (blocking: reads and hashes RAM)."""
    op = request.get("op")
    if op == "hello":
        return {"ok": True, "version": __version__}, b""
    path = _allowed(roots, str(request.get("path", "")))
    with RamImage(path) as image:
        if op == "digests":
            t0 = time.perf_counter()
            payload = page_digests(image).tobytes()
            return {"ok": True, "bytes": len(payload),
                    "seconds": round(time.perf_counter() - t0, 6)}, payload
        if op == "samples":
            lo, hi, step = int(request["lo"]), int(request["hi"]), int(request["step"])
            if not (0 <= lo <= hi <= image.size and step > 0):
                raise ValueError(f"samples {lo}:{hi}:{step} outside 0..{image.size}")
            payload = image.samples(lo, hi, step).tobytes()
            return {"ok": True, "bytes": len(payload)}, payload
    raise ValueError(f"unknown op {op!r}")


def _greeted(line: bytes, token: str) -> bool:
    try:
        request = json.loads(line)
    except ValueError:
        return False
    return (isinstance(request, dict) and request.get("op") == "hello"
            and hmac.compare_digest(str(request.get("token", "")), token))


async def _serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        roots: tuple[Path, ...], token: str) -> None:
    peer = writer.get_extra_info("peername") or "a unix-socket client"
    try:
        if not _greeted(await reader.readline(), token):
            log.warning("agent: %s did not give the token; refused", peer)
            writer.write(json.dumps({"ok": False, "error": "say hello with the agent's token "
                                     "first"}).encode() + b"\n")
            await writer.drain()
            return
        writer.write(json.dumps({"ok": True, "version": __version__}).encode() + b"\n")
        await writer.drain()
        while line := await reader.readline():
            try:
                header, payload = await asyncio.to_thread(answer, json.loads(line), roots)
            except (ValueError, KeyError, OSError) as exc:
                header, payload = {"ok": False, "error": str(exc)}, b""
            writer.write(json.dumps(header).encode() + b"\n" + payload)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        log.info("agent: %s disconnected", peer)
        writer.close()


def new_token() -> str:
    return secrets.token_hex(16)


async def serve(listen: str, roots: tuple[Path, ...] = (DEFAULT_ROOT,), token: str | None = None,
                ready: asyncio.Event | None = None) -> None:
    """Serve on `listen` (HOST:PORT or unix:PATH) until cancelled; announce
    where and the token on stdout's first line."""
    token = token or new_token()

    def client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> Any:
        return _serve_client(r, w, roots, token)

    if listen.startswith("unix:"):
        path = listen.removeprefix("unix:")
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(client, path)
        finally:
            os.umask(old)
    else:
        host, _, port = listen.rpartition(":")
        server = await asyncio.start_server(client, host, int(port))
    log.info("agent: listening on %s, reading files under %s", listen,
             " and ".join(map(str, roots)))
    sys.stdout.write(json.dumps({"listening": listen, "token": token}) + "\n")
    sys.stdout.flush()
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


class AgentClient:
    """Blocking client on a connected socket (made in whatever namespace)."""

    def __init__(self, sock: socket.socket, where: str, token: str) -> None:
        sock.setblocking(True)
        self.where, self.token = where, token
        self._file = sock.makefile("rwb")
        self._sock = sock

    def _call(self, **request: Any) -> tuple[dict[str, Any], bytes]:
        try:
            self._file.write(json.dumps(request).encode() + b"\n")
            self._file.flush()
            header = json.loads(self._file.readline() or b"null")
            if not isinstance(header, dict):
                raise HostError(f"qmpctl agent at {self.where} closed the connection")
            if not header.get("ok"):
                raise HostError(f"qmpctl agent at {self.where}: {header.get('error')}")
            payload = self._file.read(int(header.get("bytes", 0)))
        except OSError as exc:
            raise HostError(f"qmpctl agent at {self.where}: {exc}") from exc
        return header, payload

    def hello(self) -> str:
        return str(self._call(op="hello", token=self.token)[0]["version"])

    def digests(self, path: Path) -> tuple[npt.NDArray[np.uint64], float]:
        header, payload = self._call(op="digests", path=str(path))
        return np.frombuffer(payload, dtype=np.uint64), float(header["seconds"])

    def samples(self, path: Path, lo: int, hi: int, step: int) -> npt.NDArray[np.uint8]:
        return np.frombuffer(self._call(op="samples", path=str(path), lo=lo, hi=hi,
                                        step=step)[1], dtype=np.uint8)

    def close(self) -> None:
        self._file.close()
        self._sock.close()


class RemoteImage:
    """A RAM file the agent reads: what guest checks need of an image."""

    def __init__(self, client: AgentClient, path: Path) -> None:
        self.client, self.path = client, path

    def samples(self, lo: int, hi: int, step: int) -> npt.NDArray[np.uint8]:
        return self.client.samples(self.path, lo, hi, step)
