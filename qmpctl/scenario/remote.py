"""The destination as a remote host: `qmpctl agent` beside it.

With --topology netns the destination's namespace stands for another
machine and `ip netns exec` for ssh; everything qmpctl asks of that side
goes over the network from the source's namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

from ..core.errors import HostError
from ..host.netns import NetnsPair, connect_in
from ..verify.agent import AGENT_PORT, AgentClient


async def start_agent(stack: contextlib.AsyncExitStack, pair: NetnsPair,
                      root: Path) -> AgentClient:
    """`qmpctl agent` on the destination host (its namespace: `ip netns exec`
    stands for ssh), serving RAM files under the run directory only; the
    client connects from the source host, as across a network."""
    argv = ["ip", "netns", "exec", pair.dst_ns, sys.executable, "-m", "qmpctl", "agent",
            "--listen", f"{pair.mgmt_dst_addr}:{AGENT_PORT}", "--root", str(root)]
    log_file = stack.enter_context((root / "agent.log").open("wb"))
    proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL,
                                                stdout=log_file, stderr=log_file)

    async def stop() -> None:
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    stack.push_async_callback(stop)
    deadline = time.monotonic() + 15
    while True:
        try:
            sock = await asyncio.to_thread(connect_in, pair.src_ns, pair.mgmt_dst_addr,
                                           AGENT_PORT)
            break
        except OSError as exc:
            if proc.returncode is not None or time.monotonic() > deadline:
                raise HostError(f"qmpctl agent did not start in {pair.dst_ns}: {exc}; "
                                f"its output: {(root / 'agent.log').read_text()[-500:]}"
                                ) from exc
            await asyncio.sleep(0.1)
    client = AgentClient(sock, f"{pair.mgmt_dst_addr}:{AGENT_PORT}")
    stack.callback(client.close)
    await asyncio.to_thread(client.hello)
    return client
