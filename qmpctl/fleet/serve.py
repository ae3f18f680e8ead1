"""`qmpctl worker` and `qmpctl scheduler`: Dask's own server classes, in
this process, restricted by `guard`, bound to the address the user gave.

A worker's resources are its host's facts (`resources.host_resources`), its
threads its slots. Asked to stop (SIGTERM, SIGINT, or cut off from the
scheduler for its death timeout), it cancels the migrations it runs, so
their runners clean up, before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import signal
from collections.abc import Callable, Iterable
from typing import Any

from ..core.errors import HostError
from ..host.kvm import ARCHES, host_arch, probe_kvm
from ..lab.suite import lab_available
from ..matrix.plan import describe_host
from ..matrix.results import FleetHost
from .guard import guard_scheduler
from .resources import host_resources
from .security import Tls
from .task import RUNNING

log = logging.getLogger(__name__)
STOP_GRACE_S = 60.0  # a cancelled run's cleanup: QEMU quit, then signals, then files


def this_fleet_host(name: str | None, slots: int, withheld: Iterable[str]) -> FleetHost:
    """This host as a worker: `qmpctl doctor`'s facts and the resources they give."""
    machine = describe_host(probe_kvm())
    labs = [arch for arch in ARCHES if lab_available(arch) is None]
    return FleetHost(name=name or platform.node(), machine=machine, labs=labs, slots=slots,
                     resources=host_resources(machine, host_arch(), labs, slots, withheld))


def _on_stop(stop: asyncio.Event) -> Callable[[], None]:
    def handler() -> None:
        stop.set()
    return handler


async def _until_stopped(server: Any, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_stop(stop))
    finished = asyncio.ensure_future(server.finished())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({finished, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()


async def _drain(grace: float) -> None:
    """Cancel this process's running migrations and wait for their cleanup."""
    if RUNNING.cancel_all():
        log.warning("stopping: cancelling %d running migration(s)", len(RUNNING))
    deadline = asyncio.get_running_loop().time() + grace
    while len(RUNNING) and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)


async def serve_worker(scheduler: str, listen: str, host: FleetHost, tls: Tls | None,
                       death_timeout: float, ready: Callable[[str], None]) -> None:
    import dask

    from .daskworker import QmpctlWorker

    scheme, _, rest = listen.partition("://")
    ip, _, port = rest.rpartition(":")
    with dask.config.set(HTTP_ROUTES):
        worker = QmpctlWorker(scheduler, fleet_host=host, host=ip.strip("[]"), port=int(port),
                              protocol=scheme,
                              security=None if tls is None else tls.security(),
                              death_timeout=death_timeout, dashboard=False)
    stop = asyncio.Event()
    try:
        try:
            await worker
        except (OSError, TimeoutError) as exc:
            raise HostError(f"qmpctl worker: cannot join the scheduler {scheduler} or listen "
                            f"at {listen} ({exc})") from exc
        ready(worker.address)
        await _until_stopped(worker, stop)
    finally:
        await _drain(STOP_GRACE_S)
        await worker.close(reason="qmpctl worker stopping")


# Dask's servers also serve HTTP on their own address (the scheduler on port
# 8787, a worker on any free port): only its health check, no dashboard, no
# cluster state (docs/fleet.md).
HTTP_ROUTES = {"distributed.scheduler.http.routes": ["distributed.http.health"],
               "distributed.worker.http.routes": ["distributed.http.health"]}


async def serve_scheduler(listen: str, tls: Tls | None, ready: Callable[[str], None]) -> None:
    import dask
    from distributed import Scheduler

    scheme, _, rest = listen.partition("://")
    host, _, port = rest.rpartition(":")
    try:
        with dask.config.set(HTTP_ROUTES):
            scheduler = Scheduler(host=host.strip("[]"), port=int(port), protocol=scheme,
                                  dashboard=False, dashboard_address=None,
                                  security=None if tls is None else tls.security())
    except OSError as exc:  # its HTTP server binds in the constructor
        raise HostError(f"qmpctl scheduler: cannot listen at {host} ({exc})") from exc
    guard_scheduler(scheduler)
    stop = asyncio.Event()
    try:
        try:
            await scheduler
        except (OSError, TimeoutError) as exc:
            raise HostError(f"qmpctl scheduler: cannot listen at {listen} ({exc})") from exc
        ready(scheduler.address)
        await _until_stopped(scheduler, stop)
    finally:
        await scheduler.close()
