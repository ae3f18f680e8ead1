"""Drive one precopy live migration between two launched machines over QMP.

The run is event driven (`MIGRATION` status and `MIGRATION_PASS` events on
the source); `query-migrate` is sampled once per pass for statistics. As in
QEMU's migration-test, convergence is first held back (tiny downtime limit,
throttled bandwidth) until `min_passes` dirty-bitmap syncs have happened, so
pages already sent are dirtied and sent again; then the limits are lifted and
the migration completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import MigrationFailed, QMPCommandError
from .machine import QemuMachine

Transport = Literal["unix", "tcp"]
MiB = 1 << 20


@dataclass(frozen=True)
class MigrationPlan:
    uri: str  # "unix:/path" or "tcp:127.0.0.1:port"
    min_passes: int = 3  # dirty syncs to see before convergence is allowed
    throttle_bandwidth: int = 64 * MiB  # bytes/s while convergence is held back
    converge_bandwidth: int = 8 << 30  # bytes/s once it may converge
    converge_downtime_ms: int = 1000
    timeout: float = 300.0
    hold_timeout: float = 30.0  # longest wait for the workload to re-dirty sent pages
    postcopy: bool = False  # switch to postcopy instead of letting precopy converge
    capabilities: tuple[tuple[str, bool], ...] = ()  # extra, e.g. ("dirty-limit", True)


@dataclass(frozen=True)
class PassSample:
    """`query-migrate` as seen when a MIGRATION_PASS event arrives."""

    pass_no: int
    elapsed_s: float
    status: str
    transferred: int
    remaining: int
    total: int
    dirty_pages_rate: int
    mbps: float
    dirty_sync_count: int
    pages_sent: int  # normal + zero pages sent so far


@dataclass
class MigrationOutcome:
    status: str
    passes: int = 0
    throttled_passes: int = 0
    pages_resent: int = 0
    transferred: int = 0
    total_time_ms: int | None = None
    downtime_ms: int | None = None
    setup_time_ms: int | None = None
    wall_s: float = 0.0
    samples: list[PassSample] = field(default_factory=list)
    error_desc: str | None = None
    workload_stalled: bool = False
    postcopy_at_pass: int | None = None
    postcopy_requests: int = 0


ProgressFn = Callable[[dict[str, Any], int], None]
PassHook = Callable[[int], Awaitable[None]]
DirtiedAgain = Callable[[], bool]


def sample_from(info: dict[str, Any], pass_no: int, elapsed: float) -> PassSample:
    ram = info.get("ram", {})
    return PassSample(
        pass_no=pass_no, elapsed_s=round(elapsed, 3), status=str(info.get("status", "?")),
        transferred=int(ram.get("transferred", 0)), remaining=int(ram.get("remaining", 0)),
        total=int(ram.get("total", 0)), dirty_pages_rate=int(ram.get("dirty-pages-rate", 0)),
        mbps=float(ram.get("mbps", 0.0)), dirty_sync_count=int(ram.get("dirty-sync-count", 0)),
        pages_sent=int(ram.get("normal", 0)) + int(ram.get("duplicate", 0)),
    )


def pages_resent(info: dict[str, Any]) -> int:
    """Pages sent beyond one copy of RAM: what the dirty tracking made us resend."""
    ram = info.get("ram", {})
    page_size = int(ram.get("page-size", 4096)) or 4096
    sent = int(ram.get("normal", 0)) + int(ram.get("duplicate", 0))
    return max(0, sent - int(ram.get("total", 0)) // page_size)


async def set_limits(src: QemuMachine, bandwidth: int, downtime_ms: int) -> None:
    await src.execute("migrate-set-parameters",
                      {"max-bandwidth": bandwidth, "downtime-limit": downtime_ms})


async def prepare(src: QemuMachine, dst: QemuMachine, plan: MigrationPlan) -> None:
    """Capabilities on both sides, destination listening, source throttled."""
    extra = [*plan.capabilities, *((("postcopy-ram", True),) if plan.postcopy else ())]
    caps = [{"capability": "events", "state": True}] + [
        {"capability": name, "state": state} for name, state in extra
    ]
    for machine in (dst, src):
        await machine.execute("migrate-set-capabilities", {"capabilities": caps})
    await dst.execute("migrate-incoming", {"uri": plan.uri})
    await set_limits(src, plan.throttle_bandwidth, 1)


async def _watch_destination(dst: QemuMachine) -> str:
    """Return the destination's final migration status (from its events)."""
    listener = dst.listener("MIGRATION")
    try:
        status = str((await dst.execute("query-migrate")).get("status", "none"))
        while status not in ("completed", "failed", "cancelled"):
            event: Any = await listener.get()
            status = str(event["data"]["status"])
        return status
    finally:
        dst.qmp.remove_listener(listener)


async def run(src: QemuMachine, dst: QemuMachine, plan: MigrationPlan,
              progress: ProgressFn | None = None, on_pass: PassHook | None = None,
              dirtied_again: DirtiedAgain | None = None) -> MigrationOutcome:
    """Migrate `src` into `dst`; raise MigrationFailed with QEMU's error-desc.

    Convergence stays held back until `min_passes` syncs have happened and
    `dirtied_again()` says the workload rewrote memory since the migration
    began (pages already sent are dirty again), or `hold_timeout` passes —
    then `outcome.workload_stalled` records that the tracking was not
    exercised. `prepare()` must have been called; on any exception the caller
    is responsible for `cancel()`.
    """
    outcome = MigrationOutcome(status="setup")
    listener = src.listener("MIGRATION", "MIGRATION_PASS")
    dst_task = asyncio.ensure_future(_watch_destination(dst))
    started = time.monotonic()
    throttled = True
    try:
        await src.execute("migrate", {"uri": plan.uri})
        async with asyncio.timeout(plan.timeout):
            while True:
                event: Any = None
                with contextlib.suppress(TimeoutError):
                    event = await asyncio.wait_for(listener.get(), 0.5)
                if event is not None and event["event"] == "MIGRATION":
                    outcome.status = str(event["data"]["status"])
                    if outcome.status in ("completed", "failed", "cancelled"):
                        break
                elif event is not None:
                    pass_no = int(event["data"]["pass"])
                    info = await src.execute("query-migrate")
                    outcome.samples.append(sample_from(info, pass_no, time.monotonic() - started))
                    if on_pass is not None:
                        await on_pass(pass_no)
                elif progress is not None:  # no event for 0.5 s: refresh the live view
                    progress(await src.execute("query-migrate"), len(outcome.samples))
                if throttled and outcome.samples and \
                        outcome.samples[-1].pass_no > plan.min_passes:
                    redirtied = dirtied_again is None or dirtied_again()
                    held = time.monotonic() - started
                    if redirtied or held > plan.hold_timeout:
                        # Enough syncs while sent pages were dirtied again:
                        # now let it converge.
                        throttled = False
                        outcome.workload_stalled = not redirtied
                        outcome.throttled_passes = outcome.samples[-1].pass_no - 1
                        if plan.postcopy:
                            # The source stops here; the destination pulls the
                            # rest (paused with -S, so pages arrive only by push).
                            outcome.postcopy_at_pass = outcome.samples[-1].pass_no
                            await src.execute("migrate-start-postcopy")
                        else:
                            await set_limits(src, plan.converge_bandwidth,
                                             plan.converge_downtime_ms)
    except TimeoutError:
        outcome.status = "timeout"
    finally:
        src.qmp.remove_listener(listener)
        outcome.wall_s = round(time.monotonic() - started, 3)

    info = await src.execute("query-migrate")
    outcome.error_desc = info.get("error-desc")
    if outcome.status == "timeout":
        dst_task.cancel()
        raise MigrationFailed(f"migration did not finish within {plan.timeout:.0f}s",
                              f"last status {info.get('status')}")
    if outcome.status != "completed":
        dst_task.cancel()
        raise MigrationFailed(f"migration {outcome.status}", outcome.error_desc)
    try:
        dst_status = await asyncio.wait_for(dst_task, 30)
    except TimeoutError:
        raise MigrationFailed("destination did not report completion within 30s") from None
    except QMPCommandError as exc:
        raise MigrationFailed("destination monitor failed after completion", exc.desc) from exc
    if dst_status != "completed":
        raise MigrationFailed(f"source completed but destination says {dst_status}")
    ram = info.get("ram", {})
    outcome.passes = int(ram.get("dirty-sync-count", 0))
    outcome.pages_resent = pages_resent(info)
    outcome.transferred = int(ram.get("transferred", 0))
    outcome.total_time_ms = info.get("total-time")
    outcome.downtime_ms = info.get("downtime")
    outcome.setup_time_ms = info.get("setup-time")
    outcome.postcopy_requests = int(ram.get("postcopy-requests", 0))
    if throttled:
        outcome.throttled_passes = outcome.passes
    return outcome


async def cancel(src: QemuMachine, timeout: float = 15.0) -> str:
    """Cancel an active migration and make sure the source runs again.

    Returns the source's run state afterwards. Never raises: it runs on the
    error path.
    """
    try:
        info = await src.execute("query-migrate", timeout=5)
        if info.get("status") == "completed":  # the destination failed after switchover
            return await ensure_running(src, after_completion=True)
        if info.get("status") not in (None, "none", "failed", "cancelled"):
            await src.execute("migrate_cancel", timeout=5)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                info = await src.execute("query-migrate", timeout=5)
                if info.get("status") in ("cancelled", "failed", "completed"):
                    break
                await asyncio.sleep(0.1)
        return await ensure_running(src)
    except QMPCommandError:
        return "unknown"


async def ensure_running(machine: QemuMachine, after_completion: bool = False) -> str:
    """Resume a source that a failed migration left paused.

    `after_completion`: the source finished but the destination failed, so the
    source (in `postmigrate`) is the only copy of the guest: resume it too.
    """
    resumable = ("paused", "finish-migrate") + (("postmigrate",) if after_completion else ())
    status = await machine.status()
    if status in resumable:
        with contextlib.suppress(QMPCommandError):
            await machine.execute("cont")
        status = await machine.status()
    return status
