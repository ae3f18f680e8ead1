"""Where a fleet matrix's tasks go: a Dask scheduler someone started
(`RemoteCluster`, `--scheduler`), or a throwaway one of this host
(`ThrowawayCluster`, `--cluster local`); each gives a connected client."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.errors import HostError
from ..matrix.results import FleetHost
from .security import Tls


def quiet_dask() -> None:
    """Dask logs every connection at INFO; the controller's output is the
    matrix's (its infrastructure events say what happened to the fleet)."""
    import distributed  # noqa: F401  (it configures its loggers on import)
    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.WARNING)


class Cluster(Protocol):
    """Where the tasks go: a client connected to some Dask scheduler."""

    @property
    def name(self) -> str: ...

    def client(self) -> contextlib.AbstractAsyncContextManager[Any]: ...


@dataclass
class RemoteCluster:
    """A scheduler someone started (`qmpctl scheduler`, `dask scheduler`)."""

    address: str
    tls: Tls | None = None
    connect_timeout: float = 30.0

    @property
    def name(self) -> str:
        return self.address

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        from distributed import Client
        quiet_dask()
        try:
            client = await Client(self.address, asynchronous=True,
                                  timeout=self.connect_timeout,
                                  security=None if self.tls is None else self.tls.security())
        except (OSError, TimeoutError) as exc:
            raise HostError(f"--scheduler {self.address}: cannot connect ({exc})") from exc
        try:
            yield client
        finally:
            await client.close()


@dataclass
class ThrowawayCluster:
    """`--cluster local`: a scheduler on 127.0.0.1 and one qmpctl worker of
    this host, in this process, for as long as the matrix runs."""

    host: FleetHost
    label: str = "local cluster"

    @property
    def name(self) -> str:
        return self.label

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        from distributed import Client, Scheduler, SpecCluster

        from .daskworker import QmpctlWorker
        quiet_dask()
        spec = {"scheduler": {"cls": Scheduler, "options": {
                    "host": "127.0.0.1", "port": 0, "dashboard": False,
                    "dashboard_address": None}},
                "workers": {self.host.name: {"cls": QmpctlWorker, "options": {
                    "fleet_host": self.host, "host": "127.0.0.1", "dashboard": False}}}}
        async with SpecCluster(**spec, asynchronous=True) as cluster, \
                Client(cluster, asynchronous=True) as client:
            yield client
