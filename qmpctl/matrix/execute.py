"""Running a planned matrix: cell after cell, each repeat a fresh run through
`scenario.runner.run`, so a matrix run is exactly the runs `qmpctl migrate`
would make (two QEMUs at a time: the machine is shared).

Ctrl-C cancels the run in progress (the runner cancels the migration and
cleans up, and reports it as interrupted) and stops the matrix; everything
that ran is kept. A cell the runner refuses before starting anything (verdict
usage-error, e.g. a QEMU pair whose destination cannot load the source's
state, or a capability an older QEMU lacks) on its first repeat is not run
here, with qmpctl's reason; it is not repeated.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..migration.driver import ProgressFn
from ..report.models import RunReport
from ..scenario import runner
from ..scenario.options import MigrateOptions
from .cells import Cell
from .knownloss import KnownLoss, covering
from .plan import MatrixHost
from .results import CellResult, MatrixReport, RunRecord, cell_result, exit_code, record

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

    def not_run(self, cell: Cell) -> str | None:
        return cell.not_run or self.refused.get(cell.id)

    def known_loss(self, cell: Cell) -> str | None:
        k = covering(self.known, cell.axes)
        return None if k is None else k.text

    def results(self) -> list[CellResult]:
        return [cell_result(c.id, dict(c.axes),
                            c.options.model_dump(mode="json", exclude_unset=True),
                            self.runs.get(c.id, []), self.repeat, self.not_run(c),
                            self.known_loss(c)) for c in self.cells]

    def report(self, command: list[str], source: str, host: MatrixHost,
               cell_filter: str | None = None) -> MatrixReport:
        cells = self.results()
        code, why = exit_code(cells, self.interrupted)
        return MatrixReport(command=command, source=source, started_at=self.started_at,
                            wall_s=round(time.monotonic() - self.t0, 1), host=host,
                            repeat=self.repeat, cell_filter=cell_filter,
                            known_loss=[k.text for k in self.known],
                            interrupted=self.interrupted, exit_code=code, exit_reason=why,
                            cells=cells)


def _progress(state: MatrixState, changed: Callable[[], None]) -> ProgressFn:
    def progress(info: dict[str, Any], passes: int) -> None:
        ram = info.get("ram", {})
        state.activity = (f"{info.get('status', '?')}, pass "
                          f"{ram.get('dirty-sync-count', passes)}")
        changed()
    return progress


async def run_matrix(state: MatrixState, run_fn: RunFn = real_run,
                     changed: Callable[[], None] = lambda: None) -> MatrixState:
    """Run every runnable cell `state.repeat` times; stop at an interrupt."""
    try:
        for cell in state.cells:
            if cell.not_run is not None:
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
    except asyncio.CancelledError:  # between two runs: the runner was not involved
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        state.interrupted = True
    finally:
        state.current = None
        changed()
    return state
