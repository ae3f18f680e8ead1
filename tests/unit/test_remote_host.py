"""The destination host's helpers and the ssh command lines, without ssh:
`qmpctl tether` and `qmpctl relay` run here as real processes."""

from __future__ import annotations

import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qmpctl.core.errors import UsageError
from qmpctl.host.owner import OWNER, owner_alive
from qmpctl.host.remote import SshHost, ssh_exit_problem
from qmpctl.scenario.options import MigrateOptions, check_topology, remote_problems

QMPCTL = [sys.executable, "-m", "qmpctl"]


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


def tether(tmp_path: Path, *argv: str, heartbeat: float = 0) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*QMPCTL, "tether", f"--pidfile={tmp_path / 'run' / 'child.pid'}",
         f"--run-dir={tmp_path / 'run'}", f"--heartbeat={heartbeat:g}", "--", *argv],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE)


def test_tether_ends_its_child_and_run_dir_when_the_session_ends(tmp_path: Path) -> None:
    proc = tether(tmp_path, "sleep", "600")
    pidfile = tmp_path / "run" / "child.pid"
    wait_for(pidfile.exists)
    child = int(pidfile.read_text())
    assert Path(f"/proc/{child}").exists() and (tmp_path / "run").stat().st_mode & 0o777 == 0o700
    assert proc.stdin is not None
    proc.stdin.close()  # what ssh does when qmpctl or the connection goes away
    assert proc.wait(10) is not None and proc.stderr is not None
    err = proc.stderr.read()
    assert proc.returncode == 128 + signal.SIGTERM
    assert b"the controller's ssh session ended" in err
    assert not Path(f"/proc/{child}").exists() and not (tmp_path / "run").exists()


def test_tether_without_heartbeats_ends_its_child(tmp_path: Path) -> None:
    proc = tether(tmp_path, "sleep", "600", heartbeat=0.5)
    assert proc.wait(10) is not None and proc.stderr is not None  # stdin open, silent
    err = proc.stderr.read()
    assert b"no heartbeat from the controller for 0.5s" in err
    assert proc.returncode == 128 + signal.SIGTERM and not (tmp_path / "run").exists()


def test_a_killed_tethers_run_dir_is_swept_by_the_next_tether(tmp_path: Path) -> None:
    """SIGKILL leaves the tether no cleanup: its directory names it as owner,
    so the next tether under the same root removes it (and says so)."""
    def held(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*QMPCTL, "tether", f"--run-dir={tmp_path / name}", "--heartbeat=0", "--",
             "sleep", "600"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    first = held("qmpctl-a-dst")
    wait_for((tmp_path / "qmpctl-a-dst" / OWNER).exists)
    first.kill()
    first.wait(10)
    assert (tmp_path / "qmpctl-a-dst").is_dir()  # nothing could remove it
    assert owner_alive(tmp_path / "qmpctl-a-dst") is False
    second = held("qmpctl-b-dst")
    wait_for((tmp_path / "qmpctl-b-dst" / OWNER).exists)
    assert not (tmp_path / "qmpctl-a-dst").exists()
    assert owner_alive(tmp_path / "qmpctl-b-dst") is True
    assert second.stdin is not None and second.stderr is not None
    second.stdin.close()
    second.wait(10)
    assert b"left by a tether that died" in second.stderr.read()
    assert not (tmp_path / "qmpctl-b-dst").exists()


def ended(proc: subprocess.Popen[bytes]) -> bytes:
    """Its stderr once it exited by itself: the session (stdin) stays open
    until then, or the tether would end the child for the session's end."""
    proc.wait(timeout=10)
    _, err = proc.communicate(timeout=10)
    return err


def test_tether_exits_as_its_child(tmp_path: Path) -> None:
    proc = tether(tmp_path, "sh", "-c", "exit 3")
    ended(proc)
    assert proc.returncode == 3
    proc = tether(tmp_path, "sh", "-c", "kill -KILL $$")
    err = ended(proc)
    assert proc.returncode == 128 + 9 and b"was killed by SIGKILL" in err
    proc = tether(tmp_path, "/nonexistent/qemu")
    err = ended(proc)
    assert proc.returncode == 127 and b"cannot run /nonexistent/qemu" in err


def test_relay_joins_stdio_to_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    relay = subprocess.Popen([*QMPCTL, "relay", "--wait=10", str(path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    time.sleep(0.3)  # the socket appears later, as QEMU's does
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"greeting\n")
            assert relay.stdout is not None and relay.stdin is not None
            assert relay.stdout.readline() == b"greeting\n"
            relay.stdin.write(b"command\n")
            relay.stdin.flush()
            assert conn.recv(100) == b"command\n"
    assert relay.wait(10) == 0  # the socket's end ends it


def test_relay_waiting_for_a_socket_ends_with_the_session(tmp_path: Path) -> None:
    relay = subprocess.Popen([*QMPCTL, "relay", "--wait=60", str(tmp_path / "never.sock")],
                             stdin=subprocess.PIPE)
    assert relay.stdin is not None
    time.sleep(0.3)
    relay.stdin.close()
    assert relay.wait(5) == 0


def test_ssh_command_lines_quote_for_the_remote_shell() -> None:
    host = SshHost("me@box", Path("/dev/shm/qmpctl-x-dst"), options=("-o", "Port=2222"),
                   qmpctl=("python3", "-m", "qmpctl"))
    argv = host.command(host.tethered(["/usr/bin/qemu", "-name", "a b;rm -rf /"],
                                      pidfile=Path("/dev/shm/qmpctl-x-dst/dst.pid")),
                        env=(("QEMU_MODULE_DIR", "/opt/q"),))
    assert argv[:3] == ["ssh", "-o", "BatchMode=yes"]
    assert argv[-3:-1] == ["me@box", "--"] and "Port=2222" in argv
    assert shlex.split(argv[-1]) == [
        "env", "QEMU_MODULE_DIR=/opt/q", "python3", "-m", "qmpctl", "tether",
        "--heartbeat=15", "--pidfile=/dev/shm/qmpctl-x-dst/dst.pid", "--", "/usr/bin/qemu",
        "-name", "a b;rm -rf /"]
    assert host.exit_code(137) == -9 and host.exit_code(1) == 1 and host.exit_code(255) == 255
    assert "rm -rf /dev/shm/qmpctl-x-dst;" in host.cleanup_command()


def test_ssh_failures_in_words() -> None:
    assert ssh_exit_problem(1, "", "h") is None  # the remote command's own failure
    assert "key authentication failed" in str(ssh_exit_problem(
        255, "root@h: Permission denied (publickey).", "root@h"))
    assert "cannot be reached" in str(ssh_exit_problem(
        255, "ssh: connect to host h port 22: Connection refused", "h"))
    assert "host key is not known" in str(ssh_exit_problem(
        255, "Host key verification failed.", "h"))


@pytest.mark.parametrize(("kwargs", "problem"), [
    (dict(dst_addr="10.0.0.2"), "--dst-addr: only with --dst-host"),
    (dict(dst_qmpctl="qmpctl"), "--dst-qmpctl: only with --dst-host or --dst-via ssh"),
    (dict(dst_via="ssh"), "--dst-via ssh: only with --topology netns"),
    (dict(dst_host="h", topology="netns"), "--dst-host with --topology netns"),
    (dict(dst_host="h", transport="unix"), "--transport unix: --dst-host migrates over TCP"),
    (dict(dst_host="h", verify="bytes"), "--verify bytes: the destination's RAM is on another"),
    (dict(dst_host="-oProxyCommand=x"), "expected [USER@]HOST"),
    (dict(dst_host="h", ssh_option=("-i",)), "expected NAME=VALUE"),
    (dict(dst_host="h", dst_root="shm"), "must be an absolute path"),
])
def test_remote_option_problems(kwargs: dict[str, object], problem: str) -> None:
    opts = MigrateOptions.from_kwargs(**kwargs)
    assert any(problem in p for p in remote_problems(opts)), remote_problems(opts)
    with pytest.raises(UsageError):
        check_topology(opts)


def test_a_good_dst_host_passes() -> None:
    opts = MigrateOptions.from_kwargs(dst_host="root@box", dst_addr="10.1.1.2",
                                      ssh_option=("IdentityFile=/k",), transport="tcp")
    assert remote_problems(opts) == []
