"""The Dask worker class qmpctl runs (`qmpctl worker`, `--cluster local`):
guarded from its construction (`guard`), announcing its host's facts to the
controllers on the scheduler's event log once it has joined. Importing this
module imports distributed."""

from __future__ import annotations

from typing import Any

from distributed import Worker

from ..matrix.results import FleetHost
from .guard import guard_worker
from .task import FACTS_TOPIC


class QmpctlWorker(Worker):  # type: ignore[misc]
    """A distributed.Worker that runs only qmpctl's cells and says what its host is."""

    def __init__(self, *args: Any, fleet_host: FleetHost, **kwargs: Any) -> None:
        kwargs |= {"name": fleet_host.name, "nthreads": fleet_host.slots,
                   "resources": fleet_host.resources}
        super().__init__(*args, **kwargs)
        self.fleet_host = fleet_host
        guard_worker(self)

    async def start_unsafe(self) -> QmpctlWorker:
        await super().start_unsafe()
        facts = self.fleet_host.model_copy(update={"address": self.address})
        self.log_event(FACTS_TOPIC, {"facts": facts.model_dump_json()})
        return self
