"""What a qmpctl worker and scheduler refuse: anything but qmpctl's cells.

A plain Dask worker runs whatever function a client sends it. A qmpctl worker
replaces its `compute-task` handler with one that lets a task through only
if its function is `task.run_cell` or `task.run_migration` and its one
argument a string (which they validate as a cell or migration task); any
other task is swapped for one that fails, naming what was refused. The
worker's handlers for running code outside tasks (`run`, `run_coroutine`,
`upload_file`, `plugin-add`, actors) are removed, and `qmpctl scheduler`
removes its own `run_function` and plugin registration.

Limits (docs/fleet.md says them too): this is a guard, not a sandbox. Dask
sends tasks as pickles and a worker unpickles a task before it can look at
it, so a client that can reach the scheduler can still run code on the
workers with a crafted pickle. The boundary is who can connect: bind to an
address only your controllers reach, and use mutual TLS (`--tls-*`), so
that only holders of a certificate your CA signed connect at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .task import run_cell, run_migration

ALLOWED = (run_cell, run_migration)  # a matrix's cell; a test's migration (pytest plugin)

WORKER_HANDLERS_REMOVED = ("run", "run_coroutine", "upload_file", "plugin-add",
                           "plugin-remove", "actor_execute", "actor_attribute")
SCHEDULER_HANDLERS_REMOVED = ("run_function", "register_scheduler_plugin",
                              "register_worker_plugin", "register_nanny_plugin")


class Refused(RuntimeError):
    """A task or request a qmpctl worker or scheduler does not run."""


def refusal(spec: object) -> str | None:
    """Why a task's run spec is not one qmpctl runs, or None (pure)."""
    func = getattr(spec, "func", None)
    args = getattr(spec, "args", None)
    kwargs = getattr(spec, "kwargs", None)
    if not any(func is f for f in ALLOWED):
        name = getattr(func, "__qualname__", type(spec).__name__)
        module = getattr(func, "__module__", "?")
        return ("a qmpctl worker runs only qmpctl.fleet.task.run_cell and run_migration, "
                f"not {module}.{name}")
    if not (isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], str)) or kwargs:
        return (f"qmpctl.fleet.task.{getattr(func, '__name__', '?')} takes one JSON string, "
                "and nothing else")
    return None


def _refuse(why: str) -> None:
    raise Refused(why)


def guard_tasks(original: Callable[..., None]) -> Callable[..., None]:
    """A compute-task handler that runs only qmpctl's cells."""
    from dask._task_spec import Task

    def compute_task(**msg: Any) -> None:
        why = refusal(msg.get("run_spec"))
        if why is not None:
            msg["run_spec"] = Task(msg["key"], _refuse, why)
        original(**msg)
    return compute_task


def _removed(name: str, role: str) -> Callable[..., Any]:
    async def handler(*args: object, **kwargs: object) -> None:
        raise Refused(f"a qmpctl {role} does not serve {name!r}")
    return handler


def guard_worker(worker: Any) -> None:
    """Restrict a distributed.Worker to qmpctl's cells (before it starts)."""
    worker.stream_handlers["compute-task"] = guard_tasks(worker.stream_handlers["compute-task"])
    for name in WORKER_HANDLERS_REMOVED:
        worker.handlers[name] = _removed(name, "worker")


def guard_scheduler(scheduler: Any) -> None:
    """No running functions on the scheduler or pushing plugins through it."""
    for name in SCHEDULER_HANDLERS_REMOVED:
        scheduler.handlers[name] = _removed(name, "scheduler")
