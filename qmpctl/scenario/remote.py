"""The destination as a remote host: reaching it, `qmpctl agent` beside it.

With --topology netns the destination's namespace stands for another
machine, driven with `ip netns exec` or (--dst-via ssh) through an sshd the
run starts there; with --dst-host it is another machine, through ssh. Either
way everything qmpctl asks of that side goes over the management network
(qmpctl.host.remote), and its RAM is read only by the agent there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

from ..core.aio import terminate
from ..core.errors import HostError
from ..host.netns import NetnsPair
from ..host.proc import die_with_parent
from ..host.qemu import QemuBinary
from ..host.remote import Endpoint, NetnsHost, RemoteHost, SshHost
from ..host.sshd import NamespaceSshd
from ..report.models import DestinationHostConfig
from ..verify.agent import AGENT_PORT, AgentClient
from .options import DEFAULT_DST_QMPCTL, DEFAULT_DST_ROOT, MigrateOptions

MIGRATION_PORT = 4444  # on the destination host (a new namespace: nothing else listens)
AGENT_START_S = 30.0


def this_qmpctl() -> tuple[str, ...]:
    """This very qmpctl, runnable from any directory on this machine."""
    package_root = str(Path(__file__).resolve().parents[2])
    return ("env", f"PYTHONPATH={package_root}", sys.executable, "-m", "qmpctl")


def ssh_target_host(target: str) -> str:
    """HOST of [USER@]HOST (pure)."""
    return target.rpartition("@")[2]


async def open_destination_host(stack: contextlib.AsyncExitStack, o: MigrateOptions,
                                pair: NetnsPair | None, local_dir: Path
                                ) -> tuple[RemoteHost, str, DestinationHostConfig] | None:
    """The destination host of this run, ready to use, and the address the
    migration goes to; None: the destination runs here. Its cleanup (kill
    what is left, remove its run directory) is on `stack`."""
    if pair is not None and o.dst_via == "exec":
        host: RemoteHost = NetnsHost(pair.dst_ns, pair.src_ns, pair.mgmt_dst_addr, local_dir)
        return host, pair.dst_addr, DestinationHostConfig(
            reached_by="ip netns exec", host=pair.dst_ns, run_dir=str(local_dir),
            migration_address=pair.dst_addr)
    if pair is not None:  # --dst-via ssh: this machine's sshd, in the namespace
        sshd = NamespaceSshd(pair.dst_ns, pair.src_ns, pair.mgmt_dst_addr, local_dir / "ssh")
        stack.push_async_callback(sshd.stop)
        await sshd.start()
        ssh = SshHost(sshd.target, local_dir.parent / f"{local_dir.name}-dst",
                      options=sshd.ssh_options(),
                      qmpctl=(tuple(shlex.split(o.dst_qmpctl))
                              if o.dst_qmpctl is not None else this_qmpctl()),
                      via=("ip", "netns", "exec", pair.src_ns))
        address = pair.dst_addr
    elif o.dst_host is not None:
        ssh = SshHost(o.dst_host, Path(o.dst_root or DEFAULT_DST_ROOT) / f"{local_dir.name}-dst",
                      options=tuple(a for opt in o.ssh_option for a in ("-o", opt)),
                      qmpctl=tuple(shlex.split(o.dst_qmpctl or DEFAULT_DST_QMPCTL)))
        address = o.dst_addr or ssh_target_host(o.dst_host)
    else:
        return None
    stack.push_async_callback(ssh.cleanup)
    return ssh, address, DestinationHostConfig(
        reached_by="ssh", host=ssh.target, run_dir=str(ssh.run_dir),
        migration_address=address)


async def check_destination_host(host: RemoteHost, binary: QemuBinary,
                                 files: list[Path]) -> str | None:
    """Before anything starts: the destination can run there (qmpctl's version there)."""
    paths = [binary.path, *files]
    if binary.data_dir is not None:
        paths.append(binary.data_dir)
    return await host.check(paths, binary.path, binary.version_str)


async def _first_line(proc: asyncio.subprocess.Process, timeout: float) -> bytes:
    assert proc.stdout is not None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            return await proc.stdout.readline()
    return b""


async def start_agent(stack: contextlib.AsyncExitStack, host: RemoteHost,
                      root: Path, log_dir: Path, ram_root: Path | None = None) -> AgentClient:
    """`qmpctl agent` on the destination host, serving RAM files under the
    run directory there only (and `ram_root`, the RAM files' own directory,
    when there is one); it makes its token, and says it on its stdout
    (our pipe) only. Through ssh its tether makes that run directory and
    removes it when it ends."""
    if host.tcp_listen is not None:
        listen, where = f"{host.tcp_listen}:{AGENT_PORT}", f"{host.tcp_listen}:{AGENT_PORT}"
    else:
        listen, where = f"unix:{root / 'agent.sock'}", f"{host.name}:{root / 'agent.sock'}"
    argv = host.command(host.tethered(
        [*host.qmpctl, "agent", "--listen", listen, "--root", str(root),
         *(("--root", str(ram_root)) if ram_root is not None else ())],
        pidfile=root / "agent.pid", run_dir=None if host.same_files else root))
    log_path = log_dir / "agent.log"
    log_file = stack.enter_context(log_path.open("wb"))
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE if host.tethers else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=log_file, start_new_session=True,
        preexec_fn=die_with_parent)
    if host.tethers:
        host.hold(proc)

    stack.push_async_callback(terminate, proc)
    line = await _first_line(proc, AGENT_START_S)
    try:
        token = str(json.loads(line)["token"])
    except (ValueError, KeyError, TypeError) as exc:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await proc.wait()
        raise HostError(f"qmpctl agent did not start on {host.name} (exit "
                        f"{proc.returncode}): {log_path.read_text(errors='replace')[-800:]}"
                        ) from exc
    try:
        async with asyncio.timeout(AGENT_START_S):
            while True:
                try:
                    sock = await host.connect(Endpoint(root / "agent.sock", AGENT_PORT), 10)
                    break
                except OSError:
                    await asyncio.sleep(0.1)
    except TimeoutError as exc:
        raise HostError(f"cannot reach qmpctl agent at {where}") from exc
    client = AgentClient(sock, where, token)
    stack.callback(client.close)
    await asyncio.to_thread(client.hello)
    return client
