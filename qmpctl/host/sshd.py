"""An sshd of the run's own in the destination's network namespace
(`--topology netns --dst-via ssh`), so the whole ssh path (key
authentication, `qmpctl tether`, `qmpctl relay`, files fetched back) runs
on one machine: the namespace is the other host, 192.0.2.6 its address.

Everything it needs is made into a directory of the run's (0700): a host
key, a client key, an authorized_keys with that key alone, a known_hosts
naming the host key, and a config that allows nothing but key
authentication as root on the management address. It runs in the
foreground (`sshd -D`) as our child, killed with us, and is ended when the
run ends. The system's own sshd, if any, is neither used nor touched.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.aio import terminate
from ..core.errors import HostError
from .netns import connect_in
from .proc import die_with_parent

SSHD = Path("/usr/sbin/sshd")
SSH_PORT = 22
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it


def sshd_problem() -> str | None:
    """Why no sshd can be started here, or None."""
    for tool, package in ((str(SSHD), "openssh-server"), ("ssh", "openssh-client"),
                          ("ssh-keygen", "openssh-client")):
        if shutil.which(tool) is None:
            return f"{tool} not found; install {package}"
    return None


def sshd_config(workdir: Path, address: str, port: int = SSH_PORT) -> str:
    """The config of the run's sshd (pure)."""
    return "\n".join([
        f"ListenAddress {address}:{port}",
        f"HostKey {workdir / 'host_key'}",
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",  # the keys live in a 0700 directory of the run's, not ~/.ssh
        "PidFile none",
        "AllowTcpForwarding no",
        "X11Forwarding no",
        "PermitTTY no",
        "ClientAliveInterval 2",
        "ClientAliveCountMax 5",
        "LogLevel INFO",
        "",
    ])


def _keygen(path: Path) -> None:
    done = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "qmpctl",
                           "-f", str(path)], capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, timeout=30)
    if done.returncode != 0:
        raise HostError(f"ssh-keygen failed: {done.stderr.strip()}")


@dataclass
class NamespaceSshd:
    """sshd in `namespace` on `address`, reached from `reach_from`."""

    namespace: str
    reach_from: str
    address: str
    workdir: Path
    proc: asyncio.subprocess.Process | None = None

    @property
    def target(self) -> str:
        return f"root@{self.address}"

    def ssh_options(self) -> tuple[str, ...]:
        """What ssh needs to log in there with the run's key, and only that (pure)."""
        return ("-F", "/dev/null", "-i", str(self.workdir / "client_key"),
                "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.workdir / 'known_hosts'}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR")

    def _prepare(self) -> Path:
        """Keys, authorized_keys, known_hosts, config (blocking)."""
        self.workdir.mkdir(mode=0o700)
        _keygen(self.workdir / "host_key")
        _keygen(self.workdir / "client_key")
        (self.workdir / "authorized_keys").write_text(
            (self.workdir / "client_key.pub").read_text())
        (self.workdir / "known_hosts").write_text(
            f"{self.address} {(self.workdir / 'host_key.pub').read_text()}")
        config = self.workdir / "sshd_config"
        config.write_text(sshd_config(self.workdir, self.address))
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        return config

    async def start(self, timeout: float = 15.0) -> None:
        if (problem := sshd_problem()) is not None:
            raise HostError(f"--dst-via ssh: {problem}")
        config = await asyncio.to_thread(self._prepare)
        log_file = (self.workdir / "sshd.log").open("wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", self.namespace, str(SSHD), "-D", "-e", "-f", str(config),
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                start_new_session=True, preexec_fn=die_with_parent)
        finally:
            log_file.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = await asyncio.to_thread(connect_in, self.reach_from, self.address,
                                               SSH_PORT, 1.0)
                sock.close()
                return
            except OSError as exc:
                if self.proc.returncode is not None or time.monotonic() > deadline:
                    text = (self.workdir / "sshd.log").read_text(errors="replace")[-500:]
                    await self.stop()
                    raise HostError(f"sshd did not start in {self.namespace}: {exc}; its "
                                    f"output: {text}") from exc
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.proc is not None:
            await terminate(self.proc)
