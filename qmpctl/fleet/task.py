"""The one function a qmpctl worker runs: one repeat of one cell.

The task's only argument is a JSON string (`CellTask`): the cell's id, the
repeat, and its `qmpctl migrate` keywords, validated here into
`MigrateOptions` exactly as the CLI would (a bad option is the run's
usage-error, not code). It runs the ordinary runner on a fresh event loop in
the worker's thread and returns a JSON string (`TaskOutcome`): the run's
record and which host ran it. Nothing but strings crosses the wire as data.

A running migration is registered (`RUNNING`) so a worker that is told to
stop cancels it and the runner cleans up (QEMU, sockets, RAM files) before
the process exits; a worker that is SIGKILLed cannot, and its QEMUs die with
it (PR_SET_PDEATHSIG on the thread that started them).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import platform
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from ..core.errors import UsageError
from ..core.model import Model
from ..host.kvm import probe_kvm
from ..matrix.plan import MatrixHost, describe_host
from ..matrix.results import RunRecord, record
from ..report.models import RunReport
from ..scenario import runner
from ..scenario.options import MigrateOptions, option_problems

EVENT_TOPIC = "qmpctl-task"  # a worker logs each start here; the controller follows it
FACTS_TOPIC = "qmpctl-worker"  # each worker's FleetHost, as JSON, when it joins


class CellTask(Model):
    """One repeat of one cell, as the controller sends it."""

    cell: str
    repeat: int = Field(ge=1)
    options: dict[str, Any] = Field(description="the cell's MigrateOptions keywords")


class TaskOutcome(Model):
    """One repeat's record, and where it ran."""

    cell: str
    repeat: int
    worker: str
    machine: MatrixHost
    record: RunRecord
    wall_s: float


@functools.cache
def this_host() -> MatrixHost:
    return describe_host(probe_kvm())


class Running:
    """The migrations running in this process, to cancel them at shutdown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Task[RunReport]]] = {}

    def add(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[RunReport]) -> int:
        with self._lock:
            self._tasks[id(task)] = (loop, task)
        return id(task)

    def remove(self, key: int) -> None:
        with self._lock:
            self._tasks.pop(key, None)

    def cancel_all(self) -> int:
        with self._lock:
            tasks = list(self._tasks.values())
        for loop, task in tasks:
            loop.call_soon_threadsafe(task.cancel)
        return len(tasks)

    def __len__(self) -> int:
        with self._lock:
            return len(self._tasks)


RUNNING = Running()


def options_of(task: CellTask) -> MigrateOptions:
    """The task's options, validated as `qmpctl migrate` validates them."""
    opts = MigrateOptions.from_kwargs(**task.options)
    if problems := option_problems(opts):
        raise UsageError("; ".join(problems))
    return opts


async def _run(options: MigrateOptions) -> RunReport:
    task = asyncio.ensure_future(runner.run(options))
    key = RUNNING.add(asyncio.get_running_loop(), task)
    try:
        return await task
    finally:
        RUNNING.remove(key)


class MigrationTask(Model):
    """One `qmpctl_migrate` call of a test (the pytest plugin's
    `--qmpctl-scheduler`): its options, and whether its artifacts come back."""

    test: str = Field(description="the test's node id, for the worker's log")
    options: dict[str, Any]
    artifacts: bool = False


class MigrationOutcome(Model):
    """The run's whole report, where it ran, and its artifacts (a .tar.gz)."""

    worker: str
    machine: MatrixHost
    report: RunReport
    artifacts_tgz: str | None = Field(None, description="base64 of a .tar.gz of the run's "
                                                        "artifacts directory")


def _tgz(folder: Path) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    return base64.b64encode(buf.getvalue()).decode()


def unpack(tgz: str, dest: Path) -> None:
    """A MigrationOutcome's artifacts into `dest` (only plain files and folders)."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(tgz)), mode="r:gz") as tar:
        members = [m for m in tar.getmembers() if (m.isfile() or m.isdir())
                   and (root / m.name).resolve().is_relative_to(root)]
        tar.extractall(dest, members=members)  # (3.11.2 has no extraction filter)


def run_migration(payload: str) -> str:
    """Run one test's migration; the other function a qmpctl worker runs."""
    try:
        task = MigrationTask.model_validate_json(payload)
    except ValidationError as exc:
        raise UsageError(f"not a qmpctl migration task: {exc.errors()[0]['msg']}") from exc
    name = _started_test(task.test)
    with tempfile.TemporaryDirectory(prefix="qmpctl-fleet-artifacts-") as tmp:
        options = dict(task.options)
        if task.artifacts:
            options["artifacts"] = str(Path(tmp) / "run")
        try:
            report = asyncio.run(_run(MigrateOptions.from_kwargs(**options)))
        except UsageError as exc:
            report = runner.new_report(exc)
        folder = Path(tmp) / "run"
        tgz = _tgz(folder) if task.artifacts and folder.is_dir() else None
    return MigrationOutcome(worker=name, machine=this_host(), report=report,
                            artifacts_tgz=tgz).model_dump_json()


def _started_test(test: str) -> str:
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):
        return platform.node()
    worker.log_event(EVENT_TOPIC, {"action": "start-test", "name": str(worker.name),
                                   "test": test})
    return str(worker.name)


def _started(task: CellTask) -> str:
    """This worker's name, having told the controller (the scheduler's event
    log) that this attempt started here: a second start of the same repeat
    means the first attempt's worker died or was cut off."""
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):  # called outside a worker (tests, a benchmark)
        return platform.node()
    worker.log_event(EVENT_TOPIC, {"action": "start", "name": str(worker.name),
                                   "cell": task.cell, "repeat": task.repeat})
    return str(worker.name)


def run_cell(payload: str) -> str:
    """Run one repeat of one cell; the only function a qmpctl worker runs."""
    t0 = time.monotonic()
    try:
        task = CellTask.model_validate_json(payload)
    except ValidationError as exc:
        raise UsageError(f"not a qmpctl cell task: {exc.errors()[0]['msg']}") from exc
    name = _started(task)
    try:
        report = asyncio.run(_run(options_of(task)))
    except UsageError as exc:
        report = runner.new_report(exc)
    return TaskOutcome(cell=task.cell, repeat=task.repeat, worker=name, machine=this_host(),
                       record=record(report, task.repeat).model_copy(update={"worker": name}),
                       wall_s=round(time.monotonic() - t0, 3)).model_dump_json()

