"""A Unix socket whose connect() blocks until it is opened.

QEMU enters the `setup` migration status in `migrate` itself, before its
channel connects, and leaves it a few milliseconds later: too brief for a
`migrate_cancel` sent on the `setup` event to land there every time. Aimed at
this gate, QEMU's connect (a blocking connect() in a worker thread) waits in
the listener's full backlog, so the migration stays in `setup` until the gate
closes and the connect is refused.
"""

from __future__ import annotations

import socket
from pathlib import Path
from types import TracebackType


class ConnectGate:
    """A listener that never accepts, with its backlog of one already taken
    by its own connection: the next connect() blocks (Linux AF_UNIX)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sockets: list[socket.socket] = []

    @property
    def uri(self) -> str:
        return f"unix:{self.path}"

    def __enter__(self) -> ConnectGate:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sockets.append(listener)
        try:
            listener.bind(str(self.path))
            listener.listen(0)  # AF_UNIX queues backlog + 1 = 1 connection
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sockets.append(filler)
            filler.connect(str(self.path))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Refuse whoever waits; idempotent."""
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        self.path.unlink(missing_ok=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
