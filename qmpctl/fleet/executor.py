"""The fleet as the matrix's executor: each cell x repeat one Dask task on a
worker that has what the cell needs, the results streamed into the same
`MatrixState` a local run fills (so the live table, JSON, JUnit, Markdown
and plot are the same), each run saying which worker ran it.

Infrastructure is kept apart from migrations: a worker that dies or is cut
off mid-run makes the scheduler re-run the task elsewhere (Dask's
allowed-failures); the result is counted once, and the lost attempt is an
`InfraEvent` (seen as a second start of the same task, and as the worker
leaving). A task whose every attempt died (Dask's KilledWorker), or whose
cell no connected worker can run any more for `workers_timeout` seconds, is
given up: the cell's status says so and the exit code is 3. A cell no worker
can run when the matrix starts is not run, at once, naming what it needs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import HostError
from ..matrix.cells import Cell
from ..matrix.execute import MatrixState
from ..matrix.results import FleetHost, FleetRun, InfraEvent, RunRecord
from .clusters import Cluster
from .journal import Journal, JournalEntry
from .resources import cell_needs, unschedulable
from .task import EVENT_TOPIC, FACTS_TOPIC, RUNNING, CellTask, TaskOutcome, run_cell

POLL_S = 1.0  # how often the controller looks at the workers connected


async def _nothing() -> AsyncIterator[Any]:
    """No task to wait for (--resume of a finished matrix): as_completed([])
    would look for a default client."""
    return
    yield


@dataclass
class _Task:
    cell: Cell
    repeat: int
    needs: dict[str, float]
    stuck_since: float | None = None  # when no connected worker could run it any more


@dataclass
class FleetExecutor:
    """Runs a planned matrix on a Dask cluster (see the module docstring)."""

    cluster: Cluster
    min_workers: int = 1
    workers_timeout: float = 60.0
    journal: Journal | None = None
    events: list[InfraEvent] = field(default_factory=list)
    workers: dict[str, FleetHost] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)  # task keys we cancelled ourselves

    def _event(self, state: MatrixState, console: Callable[[str, str], None],
               kind: Any, detail: str, **where: Any) -> None:
        ev = InfraEvent(at_s=round(time.monotonic() - state.t0, 1), kind=kind, detail=detail,
                        **where)
        self.events.append(ev)
        self._publish(state)
        console("fleet", f"{kind}: {detail}")

    def _publish(self, state: MatrixState) -> None:
        state.fleet = FleetRun(scheduler=self.cluster.name,
                               workers=list(self.workers.values()), events=list(self.events))

    def _facts(self, msg: Mapping[str, Any]) -> None:
        host = FleetHost.model_validate_json(msg["facts"])
        self.workers[host.name] = host

    async def run(self, state: MatrixState, changed: Callable[[], None],
                  console: Callable[[str, str], None]) -> MatrixState:
        try:
            async with self.cluster.client() as client:
                await self._run(client, state, changed, console)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            state.interrupted = True
        finally:
            state.current = None
            self._publish(state)
            if self.journal is not None:
                self.journal.close()
            changed()
        return state

    def _resume(self, state: MatrixState) -> set[tuple[str, int]]:
        """Tasks the journal says finished: back into the state, not to run."""
        done: set[tuple[str, int]] = set()
        for entry in self.journal.entries if self.journal is not None else ():
            if entry.refused is not None:
                state.refused[entry.refused[0]] = entry.refused[1]
            elif (o := entry.outcome) is not None:
                self._record(state, o)
                done.add((o.cell, o.repeat))
        return done

    def _record(self, state: MatrixState, outcome: TaskOutcome) -> None:
        cell = next(c for c in state.cells if c.id == outcome.cell)
        rec = outcome.record
        if rec.verdict == "mismatch":
            rec = rec.model_copy(update={"known_loss": state.known_loss(cell)})
        runs = state.runs.setdefault(cell.id, [])
        runs.append(rec)
        runs.sort(key=lambda r: r.repeat)
        if outcome.worker not in self.workers:
            self.workers[outcome.worker] = FleetHost(name=outcome.worker,
                                                     machine=outcome.machine, slots=1,
                                                     resources={})

    async def _connected(self, client: Any) -> dict[str, tuple[str, dict[str, float]]]:
        """Address -> (name, resources) of every worker connected now."""
        info = await client.scheduler.identity(n_workers=-1)
        return {addr: (str(w["name"]), dict(w.get("resources") or {}))
                for addr, w in info["workers"].items()}

    async def _run(self, client: Any, state: MatrixState, changed: Callable[[], None],
                   console: Callable[[str, str], None]) -> None:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        for _, msg in await client.get_events(FACTS_TOPIC):
            self._facts(msg)
        client.subscribe_topic(FACTS_TOPIC, lambda event: self._facts(event[1]))
        done = self._resume(state)
        state.activity = "waiting for workers"
        changed()
        try:
            await client.wait_for_workers(self.min_workers, timeout=self.workers_timeout)
        except TimeoutError as exc:
            raise HostError(f"{self.cluster.name}: fewer than {self.min_workers} worker(s) "
                            f"joined in {self.workers_timeout:.0f} s") from exc
        connected = await self._connected(client)
        by_name = {name: res for name, res in connected.values()}
        for addr, (name, _) in connected.items():
            self._event(state, console, "worker-joined", f"{name} at {addr}", worker=name)

        tasks: dict[str, _Task] = {}
        token = uuid.uuid4().hex[:8]
        futures = []
        for cell in state.cells:
            if state.not_run(cell) is not None:
                continue
            needs = cell_needs(cell)
            if (why := unschedulable(needs, by_name)) is not None:
                state.refused[cell.id] = why
                self._event(state, console, "unschedulable", why, cell=cell.id)
                continue
            for repeat in range(1, state.repeat + 1):
                if (cell.id, repeat) in done:
                    continue
                payload = CellTask(cell=cell.id, repeat=repeat,
                                   options=dict(cell.kwargs)).model_dump_json()
                key = f"qmpctl-{token}-{cell.id}#{repeat}"
                tasks[key] = _Task(cell, repeat, needs)
                futures.append(client.submit(run_cell, payload, key=key, resources=needs,
                                             pure=False, retries=0))
        attempts: dict[tuple[str, int], str] = {}  # the worker of each task's latest start

        def started(event: tuple[float, Mapping[str, Any]]) -> None:
            msg = event[1]
            where = (str(msg["cell"]), int(msg["repeat"]))
            worker = str(msg["name"])  # (Dask sets msg["worker"] to its address)
            if (before := attempts.get(where)) is not None:
                self._event(state, console, "attempt-lost",
                            f"{where[0]} #{where[1]}: its attempt on {before} was lost with "
                            f"that worker; re-run on {worker}, counted once",
                            worker=before, cell=where[0], repeat=where[1])
            attempts[where] = worker
            state.running[f"{where[0]} #{where[1]}"] = worker
            state.current, state.current_repeat = where
            state.activity = f"on {worker} ({len(state.running)} running)"
            changed()

        client.subscribe_topic(EVENT_TOPIC, started)
        watch = asyncio.ensure_future(self._watch(client, state, tasks, futures, connected,
                                                  console, changed))
        try:
            async for fut in as_completed(futures) if futures else _nothing():
                t = tasks[fut.key]
                state.running.pop(f"{t.cell.id} #{t.repeat}", None)
                if fut.cancelled():
                    self._lost(state, console, t, fut)
                    continue
                try:
                    outcome = TaskOutcome.model_validate_json(await fut)
                except KilledWorker as exc:
                    self._give_up(state, console, t, f"#{t.repeat}: every attempt died with "
                                                        f"its worker (Dask's allowed-failures): "
                                                        f"{exc}")
                    continue
                except asyncio.CancelledError:
                    if fut.cancelled():
                        self._lost(state, console, t, fut)
                        continue
                    raise
                except Exception as exc:  # the task raised on its worker: qmpctl's own error
                    outcome = TaskOutcome(
                        cell=t.cell.id, repeat=t.repeat, worker=attempts.get(
                            (t.cell.id, t.repeat), "?"),
                        machine=next(iter(self.workers.values())).machine,
                        record=RunRecord(repeat=t.repeat, verdict="error", exit_code=7,
                                         error=f"the task failed on its worker: {exc!r}"),
                        wall_s=0.0)
                if stale := self._outcome(state, tasks, futures, outcome):
                    self.cancelled.update(f.key for f in stale)
                    await client.cancel(stale)
                changed()
        except asyncio.CancelledError:
            await client.cancel(futures)
            RUNNING.cancel_all()  # --cluster local: the runs are in this process
            raise
        finally:
            watch.cancel()
            client.unsubscribe_topic(EVENT_TOPIC)
        self._unaccounted(state, console)

    def _give_up(self, state: MatrixState, console: Callable[[str, str], None], t: _Task,
                 why: str) -> None:
        state.gave_up[t.cell.id] = "; ".join(p for p in (state.gave_up.get(t.cell.id), why)
                                             if p)
        self._event(state, console, "gave-up", why, cell=t.cell.id, repeat=t.repeat)

    def _lost(self, state: MatrixState, console: Callable[[str, str], None], t: _Task,
              fut: Any) -> None:
        """A future that ended cancelled: by us (refused, given up), or by the
        cluster (its scheduler went away): never a silent missing run."""
        if fut.key in self.cancelled or t.cell.id in state.refused:
            return
        self._give_up(state, console, t, f"#{t.repeat}: the cluster cancelled its task "
                                          "(the scheduler or its connection was lost)")

    def _unaccounted(self, state: MatrixState, console: Callable[[str, str], None]) -> None:
        """Whatever repeat has neither a run nor a reason is given up, saying so."""
        for cell in state.cells:
            if state.not_run(cell) is not None or cell.id in state.gave_up:
                continue
            have = {r.repeat for r in state.runs.get(cell.id, [])}
            if missing := [r for r in range(1, state.repeat + 1) if r not in have]:
                self._give_up(state, console, _Task(cell, missing[0], {}),
                              f"#{', #'.join(map(str, missing))}: no result came back")

    def _outcome(self, state: MatrixState, tasks: Mapping[str, _Task], futures: list[Any],
                 outcome: TaskOutcome) -> list[Any]:
        """Record one finished task; the futures it makes moot (a refused cell's)."""
        rec = outcome.record
        if rec.verdict == "usage-error" and not state.runs.get(outcome.cell):
            why = f"qmpctl refused it on worker {outcome.worker}: {rec.error}"
            state.refused[outcome.cell] = why
            if self.journal is not None:
                self.journal.add(JournalEntry(refused=(outcome.cell, why)))
            return [f for f in futures if tasks[f.key].cell.id == outcome.cell
                    and not f.done()]
        if outcome.cell in state.refused:
            return []
        self._record(state, outcome)
        if self.journal is not None:
            self.journal.add(JournalEntry(outcome=outcome))
        state.activity = rec.verdict
        return []

    async def _watch(self, client: Any, state: MatrixState, tasks: Mapping[str, _Task],
                     futures: list[Any], known: dict[str, tuple[str, dict[str, float]]],
                     console: Callable[[str, str], None], changed: Callable[[], None]) -> None:
        """Workers joining and leaving; tasks no connected worker can run any more."""
        while True:
            await asyncio.sleep(POLL_S)
            try:
                now = await self._connected(client)
            except OSError:
                continue
            for addr in known.keys() - now.keys():
                name = known[addr][0]
                running = [k for k, w in state.running.items() if w == name]
                self._event(state, console, "worker-left",
                            f"{name} at {addr} left the cluster" + (
                                f" while running {', '.join(running)}: Dask re-runs "
                                "them elsewhere" if running else ""), worker=name)
                for k in running:
                    state.running.pop(k, None)
            for addr in now.keys() - known.keys():
                self._event(state, console, "worker-joined", f"{now[addr][0]} at {addr}",
                            worker=now[addr][0])
            known.clear()
            known.update(now)
            have = {name: res for name, res in now.values()}
            stuck = []
            for fut in futures:
                if fut.done():
                    continue
                t = tasks[fut.key]
                why = unschedulable(t.needs, have)
                if why is None:
                    t.stuck_since = None
                    continue
                t.stuck_since = t.stuck_since or time.monotonic()
                if time.monotonic() - t.stuck_since >= self.workers_timeout:
                    stuck.append(fut)
                    self._give_up(state, console, t, f"#{t.repeat}: no connected worker "
                                                        f"could run it for "
                                                        f"{self.workers_timeout:.0f} s ({why})")
            if stuck:
                self.cancelled.update(f.key for f in stuck)
                await client.cancel(stuck)
                changed()



def refuse_labs(cell: Cell) -> str:
    """A lab host's cell under a fleet: its lab boots on the controller's host
    in a local matrix, not on a worker (docs/fleet.md)."""
    return (f"host {cell.host}: a lab host's cells run in a local `qmpctl matrix` (which "
            "boots the lab), not on a fleet")
