"""asyncio helpers shared by the layers that run things concurrently."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from .errors import QmpctlError


@contextlib.asynccontextmanager
async def task_group() -> AsyncIterator[asyncio.TaskGroup]:
    """An `asyncio.TaskGroup` whose failure surfaces as the failing exception.

    TaskGroup wraps failures in an ExceptionGroup; our callers map exceptions
    to verdicts, so the first qmpctl error (or else the first error) is
    re-raised as itself, with the group as its cause.
    """
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as group_error:
        leaves = _leaves(group_error)
        first = next((e for e in leaves if isinstance(e, QmpctlError)), leaves[0])
        raise first from group_error


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


async def terminate(proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """SIGTERM a child, SIGKILL it if it is still there after `grace`, reap
    it; a child already gone is fine."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await proc.wait()
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
