"""The connect gate holds a real connect() until it closes, then refuses it."""

import socket
import threading
from pathlib import Path

from qmpctl.host.gate import ConnectGate


def test_connect_waits_at_the_gate_until_it_closes(tmp_path: Path) -> None:
    outcome: list[BaseException | None] = []
    connecting = threading.Event()

    def connect(path: Path) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            connecting.set()
            try:
                sock.connect(str(path))  # blocking, as QEMU's worker thread connects
                outcome.append(None)
            except OSError as exc:
                outcome.append(exc)

    with ConnectGate(tmp_path / "gate.sock") as gate:
        assert gate.uri == f"unix:{tmp_path / 'gate.sock'}"
        waiter = threading.Thread(target=connect, args=(gate.path,))
        waiter.start()
        # On a loaded machine the thread may start late: closing the gate
        # before it connects would test nothing (and unlink the path first).
        assert connecting.wait(10)
        waiter.join(0.3)
        assert waiter.is_alive() and not outcome, "connect() did not wait at the gate"
        gate.close()
        waiter.join(5)
    # The woken connect() looks the path up again: refused by the closed
    # listener, or not found if the unlink came first. Either way it fails.
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionRefusedError | FileNotFoundError)
    assert not (tmp_path / "gate.sock").exists()
