"""qmpctl agent: what it answers, and what it refuses to read."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import numpy as np
import pytest

from qmpctl.core.errors import HostError
from qmpctl.qemu.cmdline import MachineSpec, build_argv
from qmpctl.verify.agent import AgentClient, RemoteImage, answer, serve
from qmpctl.verify.digest import digest_pages


def ram_file(tmp_path: Path) -> Path:
    data = np.arange(4 * 4096, dtype=np.uint32).astype(np.uint8)
    path = tmp_path / "dst.ram"
    path.write_bytes(data.tobytes())
    return path


def test_digests_and_samples(tmp_path: Path) -> None:
    path = ram_file(tmp_path)
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    header, payload = answer({"op": "digests", "path": str(path)}, (tmp_path,))
    assert header["ok"] and header["bytes"] == 4 * 8
    assert (np.frombuffer(payload, dtype=np.uint64) == digest_pages(data)).all()
    _, samples = answer({"op": "samples", "path": str(path), "lo": 1, "hi": 9000,
                         "step": 4096}, (tmp_path,))
    assert list(samples) == list(data[1:9000:4096])


@pytest.mark.parametrize(("request_", "problem"), [
    ({"op": "digests", "path": "/etc/passwd"}, "not a file under"),
    ({"op": "digests", "path": "{root}/../x"}, "not a file under"),
    ({"op": "samples", "path": "{ram}", "lo": 0, "hi": 1 << 30, "step": 1}, "outside"),
    ({"op": "rm", "path": "{ram}"}, "unknown op 'rm'"),
])
def test_refusals(tmp_path: Path, request_: dict[str, object], problem: str) -> None:
    ram = ram_file(tmp_path)
    req = {k: str(v).format(root=tmp_path, ram=ram) if k == "path" else v
           for k, v in request_.items()}
    with pytest.raises(ValueError, match=problem):
        answer(req, (tmp_path,))


async def test_client_over_a_real_socket(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ram = ram_file(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ready = asyncio.Event()
    server = asyncio.create_task(serve(f"127.0.0.1:{port}", (tmp_path,), "s3cret", ready))
    await ready.wait()
    assert json.loads(capsys.readouterr().out.splitlines()[0]) == {
        "listening": f"127.0.0.1:{port}", "token": "s3cret"}
    client = AgentClient(await asyncio.to_thread(socket.create_connection,
                                                 ("127.0.0.1", port)), f"127.0.0.1:{port}",
                         "s3cret")
    try:
        assert await asyncio.to_thread(client.hello)
        digests, seconds = await asyncio.to_thread(client.digests, ram)
        assert len(digests) == 4 and seconds >= 0
        image = RemoteImage(client, ram)
        assert len(await asyncio.to_thread(image.samples, 0, 16384, 4096)) == 4
        with pytest.raises(HostError, match="not a file under"):
            await asyncio.to_thread(client.digests, Path("/etc/passwd"))
    finally:
        client.close()
        server.cancel()


async def test_no_token_no_service(tmp_path: Path) -> None:
    """A unix socket (0600) and a token: without the token, not one byte of RAM."""
    ram = ram_file(tmp_path)
    sock_path = tmp_path / "agent.sock"
    ready = asyncio.Event()
    server = asyncio.create_task(serve(f"unix:{sock_path}", (tmp_path,), None, ready))
    await ready.wait()
    assert sock_path.stat().st_mode & 0o777 == 0o600

    def connect(token: str) -> AgentClient:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(sock_path))
        return AgentClient(sock, str(sock_path), token)

    try:
        for wrong in ("", "guess"):
            client = connect(wrong)
            with pytest.raises(HostError, match="token"):
                await asyncio.to_thread(client.hello)
            client.close()
        client = connect("")  # straight to work, no hello: refused, connection closed
        with pytest.raises(HostError, match="token"):
            await asyncio.to_thread(client.digests, ram)
        client.close()
    finally:
        server.cancel()


def test_a_remote_qemu_listens_for_qmp_and_serial(tmp_path: Path) -> None:
    spec = MachineSpec(arch="x86_64", binary=Path("/q"), accel="tcg", ram_mib=64,
                       ram_path=tmp_path / "r", qmp_socket=tmp_path / "q.sock",
                       serial_socket=tmp_path / "s.sock", serial_log=tmp_path / "s.log",
                       netns="ns-dst", listen="192.0.2.2")
    argv = build_argv(spec)
    assert argv[:4] == ["ip", "netns", "exec", "ns-dst"]
    assert "id=qmp0,host=192.0.2.2,port=4440,server=on,wait=off" in " ".join(argv)
    assert f"id=serial0,host=192.0.2.2,port=4441,server=on,wait=off,logfile={tmp_path}" in \
        " ".join(argv)
    assert str(tmp_path / "q.sock") not in " ".join(argv)


def test_a_qemu_reached_through_ssh_listens_on_its_unix_sockets(tmp_path: Path) -> None:
    spec = MachineSpec(arch="x86_64", binary=Path("/q"), accel="tcg", ram_mib=64,
                       ram_path=tmp_path / "r", qmp_socket=tmp_path / "q.sock",
                       serial_socket=tmp_path / "s.sock", serial_log=tmp_path / "s.log",
                       listen_unix=True)
    line = " ".join(build_argv(spec))
    assert f"id=qmp0,path={tmp_path}/q.sock,server=on,wait=off" in line
    assert f"id=serial0,path={tmp_path}/s.sock,server=on,wait=off,logfile=" in line


def test_a_second_root_serves_its_files_and_no_others(tmp_path: Path) -> None:
    """--ram-dir with --topology netns: RAM lives beside the run directory."""
    run_dir, ram_dir, other = (tmp_path / n for n in ("run", "ram", "other"))
    for d in (run_dir, ram_dir, other):
        d.mkdir()
    header, _ = answer({"op": "digests", "path": str(ram_file(ram_dir))}, (run_dir, ram_dir))
    assert header["ok"]
    with pytest.raises(ValueError, match=f"not a file under {run_dir} or {ram_dir}"):
        answer({"op": "digests", "path": str(ram_file(other))}, (run_dir, ram_dir))
