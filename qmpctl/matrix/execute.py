"""Running a planned matrix: cell after cell, each repeat a fresh run through
`scenario.runner.run`, so a matrix run is exactly the runs `qmpctl migrate`
would make (two QEMUs at a time: the machine is shared).

Ctrl-C cancels the run in progress (the runner cancels the migration and
cleans up, and reports it as interrupted) and stops the matrix; everything
that ran is kept. A cell the runner refuses before starting anything (verdict
usage-error, e.g. a QEMU pair whose destination cannot load the source's
state, or a capability an older QEMU lacks) on its first repeat is not run
here, with qmpctl's reason; it is not repeated.

Cells on a lab host run after this host's, each lab booted once for all of
its cells (`labs`); its console's progress lines show in the live table as
they come, and its results replace them when they come back. Ctrl-C during a
lab ends the lab (its QEMU is killed): its cells have no runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from ..core.errors import VERDICTS, Verdict
from ..migration.driver import ProgressFn
from ..report.models import RunReport
from ..scenario import runner
from ..scenario.options import MigrateOptions
from .cells import Cell
from .knownloss import KnownLoss, covering
from .labs import LabFn, merge_lab, progress
from .plan import MatrixHost
from .results import (
    CellResult,
    FleetRun,
    LabRun,
    MatrixReport,
    RunRecord,
    cell_result,
    exit_code,
    host_results,
    record,
    worker_results,
)
from .spec import LOCAL

RunFn = Callable[[MigrateOptions, ProgressFn | None], Awaitable[RunReport]]


async def real_run(options: MigrateOptions, progress: ProgressFn | None) -> RunReport:
    return await runner.run(options, progress=progress)


@dataclass
class MatrixState:
    """Where the matrix is: what the live table shows and the results are made of."""

    cells: list[Cell]
    repeat: int
    known: tuple[KnownLoss, ...] = ()
    runs: dict[str, list[RunRecord]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # not run, found by the runner
    current: str | None = None
    current_repeat: int = 0
    activity: str = ""  # the run in progress: migration status and pass
    interrupted: bool = False
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(
        timespec="seconds"))
    t0: float = field(default_factory=time.monotonic)  # wall_s counts from here
    here: str = LOCAL  # the host value whose cells run here (inside a lab: that lab's)
    labs: dict[str, LabRun] = field(default_factory=dict)  # each lab host's boot
    # verdicts a lab's console announced, shown until its results come back
    lab_seen: dict[str, list[Verdict]] = field(default_factory=dict)
    # a fleet: repeats left without a run by the infrastructure, by cell; the cluster
    gave_up: dict[str, str] = field(default_factory=dict)
    fleet: FleetRun | None = None
    running: dict[str, str] = field(default_factory=dict)  # a fleet: cell #repeat -> worker

    def not_run(self, cell: Cell) -> str | None:
        return cell.not_run or self.refused.get(cell.id)

    def known_loss(self, cell: Cell) -> str | None:
        k = covering(self.known, cell.axes)
        return None if k is None else k.text

    def _runs(self, cell: Cell) -> list[RunRecord]:
        if cell.id in self.runs or cell.id not in self.lab_seen:
            return self.runs.get(cell.id, [])
        return [RunRecord(repeat=i, verdict=v, exit_code=int(VERDICTS[v]))
                for i, v in enumerate(self.lab_seen[cell.id], 1)]

    def results(self) -> list[CellResult]:
        return [cell_result(c.id, dict(c.axes),
                            c.options.model_dump(mode="json", exclude_unset=True),
                            self._runs(c), self.repeat, self.not_run(c),
                            self.known_loss(c), self.gave_up.get(c.id)) for c in self.cells]

    def report(self, command: list[str], source: str, host: MatrixHost,
               cell_filter: str | None = None) -> MatrixReport:
        cells = self.results()
        code, why = exit_code(cells, self.interrupted,
                              [h for h, lab in self.labs.items() if lab.error],
                              [f"{cell}: {why}" for cell, why in self.gave_up.items()])
        fleet = None if self.fleet is None else self.fleet.model_copy(
            update={"hosts": worker_results(cells)})
        return MatrixReport(command=command, source=source, started_at=self.started_at,
                            wall_s=round(time.monotonic() - self.t0, 1), host=host,
                            repeat=self.repeat, cell_filter=cell_filter,
                            known_loss=[k.text for k in self.known],
                            interrupted=self.interrupted, exit_code=code, exit_reason=why,
                            cells=cells, hosts=host_results(cells, self.labs), fleet=fleet)


def _progress(state: MatrixState, changed: Callable[[], None]) -> ProgressFn:
    def progress(info: dict[str, Any], passes: int) -> None:
        ram = info.get("ram", {})
        state.activity = (f"{info.get('status', '?')}, pass "
                          f"{ram.get('dirty-sync-count', passes)}")
        changed()
    return progress


def _next(cells: list[Cell], cell_id: str, repeat: int, of: int) -> tuple[str | None, int]:
    """The run a lab starts after `cell_id #repeat` (pure)."""
    if repeat < of:
        return cell_id, repeat + 1
    ids = [c.id for c in cells]
    i = ids.index(cell_id) + 1
    return (ids[i], 1) if i < len(ids) else (None, 0)


async def _run_lab(state: MatrixState, host: str, lab_fn: LabFn, changed: Callable[[], None],
                   console: Callable[[str, str], None]) -> None:
    """Every runnable cell of `host` in one boot of its lab, merged when it is back."""
    cells = [c for c in state.cells if c.host == host and c.not_run is None]
    ids = {c.id for c in cells}
    state.current, state.current_repeat = cells[0].id, 1
    state.activity = f"booting the {host} lab"
    changed()

    def write(text: str) -> None:
        for line in text.splitlines():
            console(host, line)
            if (seen := progress(line, ids)) is None:
                continue
            cell_id, repeat, verdict = seen
            if verdict in VERDICTS:
                state.lab_seen.setdefault(cell_id, []).append(cast(Verdict, verdict))
            state.current, state.current_repeat = _next(cells, cell_id, repeat, state.repeat)
            state.activity = f"in the {host} lab"
            changed()
        if state.activity.startswith("booting"):
            state.activity = f"in the {host} lab"
            changed()

    try:
        batch = await lab_fn(host, cells, state.repeat, write)
    finally:
        for cell in cells:
            state.lab_seen.pop(cell.id, None)
    state.labs[host] = batch.lab
    if batch.report is not None:
        runs, refused = merge_lab(cells, batch.report, state.known_loss)
        state.runs.update(runs)
        state.refused.update(refused)
    changed()


async def run_matrix(state: MatrixState, run_fn: RunFn = real_run,
                     changed: Callable[[], None] = lambda: None, lab_fn: LabFn | None = None,
                     console: Callable[[str, str], None] = lambda host, line: None,
                     ) -> MatrixState:
    """Run every runnable cell `state.repeat` times, this host's first, then
    each lab host's in one boot of its lab (`lab_fn`; `console` gets its
    console lines); stop at an interrupt."""
    labs = list(dict.fromkeys(c.host for c in state.cells
                              if c.not_run is None and c.host != state.here))
    if labs and lab_fn is None:
        raise ValueError(f"cells on {', '.join(labs)} need a lab_fn to run them")
    try:
        for cell in state.cells:
            if cell.not_run is not None or cell.host != state.here:
                continue
            records = state.runs.setdefault(cell.id, [])
            for i in range(1, state.repeat + 1):
                state.current, state.current_repeat, state.activity = cell.id, i, "starting"
                changed()
                report = await run_fn(cell.options, _progress(state, changed))
                if report.verdict == "usage-error" and not records:
                    state.refused[cell.id] = f"qmpctl refused it: {report.error}"
                    break
                known = state.known_loss(cell)
                records.append(record(report, i, known))
                state.activity = report.verdict
                changed()
                if report.verdict == "interrupted":
                    state.interrupted = True
                    return state
        for host in labs:
            assert lab_fn is not None
            await _run_lab(state, host, lab_fn, changed, console)
    except asyncio.CancelledError:  # between two runs: the runner was not involved
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        state.interrupted = True
    finally:
        state.current = None
        changed()
    return state


class Executor(Protocol):
    """How a planned matrix's runs are made: here one after another
    (`LocalExecutor`), or spread over a Dask cluster (`qmpctl.fleet`)."""

    async def run(self, state: MatrixState, changed: Callable[[], None],
                  console: Callable[[str, str], None]) -> MatrixState: ...


@dataclass
class LocalExecutor:
    """This host's cells one at a time, then each lab's in one boot (`run_matrix`)."""

    lab_fn: LabFn | None = None
    run_fn: RunFn = real_run

    async def run(self, state: MatrixState, changed: Callable[[], None],
                  console: Callable[[str, str], None]) -> MatrixState:
        return await run_matrix(state, self.run_fn, changed, self.lab_fn, console)
