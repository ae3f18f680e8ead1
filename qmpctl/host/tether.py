"""What qmpctl runs on the destination host itself: `qmpctl tether` and
`qmpctl relay` (standard library only, so they start fast over ssh).

`tether -- ARGV` runs ARGV (QEMU, or `qmpctl agent`) for as long as the
controller holds it: its stdin is the controller's end of the ssh session,
on which the controller writes a heartbeat line every few seconds. When
stdin ends (qmpctl exited or was killed, ssh was killed) or no heartbeat
came for `--heartbeat` seconds (the network between the hosts went away and
sshd has not noticed), the child gets SIGTERM, then SIGKILL, and whatever
the tether was asked to own (`--run-dir`) is removed. The tether claims that
directory (host.owner) and first sweeps its siblings whose tether died, so
the directory of a tether SIGKILLed before its cleanup goes at the next run.
The child's pid is written to `--pidfile` while it runs, so the controller
can signal it (`kill-dst`, `stop-dst`) and its cleanup can kill it by pid.
The tether exits as its child did: the same code, or 128+N for signal N (as
a shell does, since ssh carries only a code), and says which on stderr.

`relay PATH` joins its stdin/stdout to the unix socket PATH (QEMU's QMP or
serial socket, the agent's socket in the run directory): a management
connection that exists only inside the ssh session, so nothing listens on
the destination host's network but the migration itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .owner import claim, sweep_dead
from .proc import die_with_parent

TERM_GRACE_S = 3.0
HEARTBEAT_S = 15.0


def _say(text: str) -> None:
    sys.stderr.write(f"qmpctl tether: {text}\n")
    sys.stderr.flush()


def exit_status(returncode: int) -> int:
    """A child's Popen returncode as a process exit code (128+N for signal N)."""
    return 128 - returncode if returncode < 0 else returncode


class _Leash:
    """stdin: ended, or silent for longer than `heartbeat` seconds."""

    def __init__(self, heartbeat: float) -> None:
        self.heartbeat = heartbeat
        self.last = time.monotonic()
        self.ended = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        fd = sys.stdin.fileno()
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                self.ended = True
                return
            self.last = time.monotonic()

    def why_cut(self) -> str | None:
        if self.ended:
            return "the controller's ssh session ended"
        if self.heartbeat > 0 and time.monotonic() - self.last > self.heartbeat:
            return f"no heartbeat from the controller for {self.heartbeat:g}s"
        return None


def _end(child: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGCONT, signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(sig)
        if sig == signal.SIGCONT:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(TERM_GRACE_S)
            return


def tether(argv: list[str], pidfile: Path | None, run_dir: Path | None,
           heartbeat: float) -> int:
    if run_dir is not None:
        for stale in sweep_dead(run_dir.parent):
            _say(f"removed {stale}, left by a tether that died")
        try:
            run_dir.mkdir(mode=0o700)
            claim(run_dir)
        except OSError as exc:
            _say(f"cannot make the run directory {run_dir}: {exc}")
            return 125
    signalled: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        signalled.append(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        try:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=die_with_parent)
        except OSError as exc:
            _say(f"cannot run {argv[0]}: {exc}")
            return 127
        if pidfile is not None:
            tmp = pidfile.with_name(pidfile.name + ".tmp")
            tmp.write_text(f"{child.pid}\n")
            tmp.rename(pidfile)
        leash = _Leash(heartbeat)
        while child.poll() is None:
            why = leash.why_cut() or (
                f"got {signal.Signals(signalled[0]).name}" if signalled else None)
            if why is not None:
                _say(f"{why}: ending {Path(argv[0]).name} (pid {child.pid})")
                _end(child)
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(0.1)
        rc = child.wait()
        if rc < 0:
            _say(f"{Path(argv[0]).name} (pid {child.pid}) was killed by "
                 f"{signal.Signals(-rc).name}")
        return exit_status(rc)
    finally:
        if pidfile is not None:
            pidfile.unlink(missing_ok=True)
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)


def relay(path: Path, wait: float) -> int:
    """Join stdin/stdout to the unix socket `path`, once it exists (within
    `wait` seconds); ends when either side does, the wait included."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    early = b""  # what the client sent before the socket was there
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            break
        except OSError as exc:
            sock.close()
            if time.monotonic() > deadline:
                sys.stderr.write(f"qmpctl relay: cannot connect to {path}: {exc}\n")
                return 1
            readable, _, _ = select.select([stdin], [], [], 0.05)
            if readable:
                data = os.read(stdin, 65536)
                if not data:
                    return 0  # the session ended before the socket was there
                early += data
    if early:
        sock.sendall(early)
    sel = selectors.DefaultSelector()
    sel.register(stdin, selectors.EVENT_READ)
    sel.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj == stdin:
                data = os.read(stdin, 65536)
                if not data:
                    return 0
                sock.sendall(data)
            else:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    return 0
                view = memoryview(data)
                while view:
                    view = view[os.write(stdout, view):]


def main(argv: list[str]) -> int:
    """`tether [--pidfile F] [--run-dir D] [--heartbeat S] -- ARGV...` or `relay PATH`."""
    parser = argparse.ArgumentParser(prog="qmpctl")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tether", help="run a command for as long as the controller holds it")
    t.add_argument("--pidfile", type=Path)
    t.add_argument("--run-dir", type=Path, help="make this directory, remove it at the end")
    t.add_argument("--heartbeat", type=float, default=HEARTBEAT_S,
                   help="seconds without a line on stdin before the command is ended (0: off)")
    t.add_argument("argv", nargs=argparse.REMAINDER)
    r = sub.add_parser("relay", help="join stdin/stdout to a unix socket")
    r.add_argument("path", type=Path)
    r.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the socket")
    args = parser.parse_args(argv)
    if args.command == "relay":
        return relay(args.path, args.wait)
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        parser.error("tether: no command given")
    return tether(command, args.pidfile, args.run_dir, args.heartbeat)


FAST_COMMANDS = ("tether", "relay")
