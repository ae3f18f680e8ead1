"""Drive one live migration between two launched machines over QMP.

The run is event driven (`MIGRATION` status and `MIGRATION_PASS` events on
the source); `query-migrate` is sampled once per pass for statistics, and at
least every half second so a dead source monitor is noticed at once. Each
sample keeps QEMU's own time of the sync (the event's timestamp) beside the
time qmpctl got to it, which on a loaded host is hundreds of ms later. At each
event the policy decides; the driver executes and records its actions. The
destination's own status is watched concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..core.aio import task_group
from ..core.errors import GuestError, MigrationFailed, QmpError
from ..core.units import MiB
from ..qemu.machine import QemuMachine
from ..qemu.supervisor import ANSWER_WITHIN_S
from .models import Decision, MigrationStats, absorb_final, absorb_samples, sample_from
from .policy import (
    Action,
    Cancel,
    ContinueSwitchover,
    EndHoldBack,
    MigrationState,
    PausePostcopy,
    Policy,
    SetParameters,
    StartPostcopy,
)
from .recovery import Recovery
from .settings import MigrationSettings

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any], int], None]
PassHook = Callable[[int], Awaitable[None]]
StatusHook = Callable[[str], Awaitable[None]]
FINAL = ("completed", "failed", "cancelled")
# The channel broke after the switchover to postcopy: both sides wait for a
# recovery (migrate-recover + migrate resume=true); neither can just go on.
POSTCOPY_PAUSED = ("postcopy-paused", "postcopy-recover-setup", "postcopy-recover")
# The statuses in which the stream carries pages (and so must move).
STREAMING = ("active", "device", "postcopy-active")
# Always on: the driver runs from MIGRATION / MIGRATION_PASS events.
BASE_SETTINGS = MigrationSettings(capabilities={"events": True})


@dataclass(frozen=True)
class Watch:
    """Callbacks into the run: the live view, test hooks, the guest's progress."""

    progress: ProgressFn | None = None
    on_pass: PassHook | None = None
    on_status: StatusHook | None = None
    redirtied: Callable[[], bool] = lambda: True
    # The guest's own report that it failed while migrating, or None: such a
    # guest will not recover, so the migration ends at once, naming it.
    guest_failed: Callable[[], str | None] = lambda: None


@dataclass(frozen=True)
class Started:
    """When the caller counts the migration from: `time.monotonic()` and
    `time.time()` (QEMU stamps its events with the host's real time), read
    together. Given to `migrate`, the driver's times (passes, decisions,
    recovery attempts) share the run's origin, which its fault times count
    from too: an attempt set off by a fault is never stamped before it."""

    monotonic: float
    wall: float

    @classmethod
    def now(cls) -> Started:
        return cls(time.monotonic(), time.time())


@dataclass(frozen=True)
class StuckAfter:
    """How long the stream may send nothing before it counts as stuck, and why."""

    seconds: float
    why: str


def stuck_after(bandwidth: float | None, buffered: int,
                floor: float = ANSWER_WITHIN_S) -> StuckAfter:
    """The bound for a stream that sends nothing (pure). A healthy one counts
    bytes every rate-limit period (100 ms); a sender blocked on a full socket
    buffer goes on once the link drained it, which at `bandwidth` (the
    lowest limit on the way: throttle, postcopy cap, link rate; None for
    none) takes `buffered / bandwidth` at most. Twice that, never less than a
    QEMU may be busy and still alive (the supervisor's heartbeat bound)."""
    if not bandwidth:
        return StuckAfter(floor, f"no bandwidth limit; the floor, {floor:g} s")
    drain = buffered / bandwidth
    return StuckAfter(max(floor, 2 * drain),
                      f"twice the {drain:.1f} s the {buffered / MiB:.1f} MiB socket buffer "
                      f"takes at {bandwidth / MiB:.2f} MiB/s, at least {floor:g} s")


async def prepare(src: QemuMachine, dst: QemuMachine, uri: str,
                  settings: MigrationSettings, listen: bool = True) -> None:
    """Settings on both sides, then the destination listens on `uri` (not
    for a migration to a file, which the destination reads afterwards)."""
    await settings.apply(dst, src)
    if listen:
        await dst.execute("migrate-incoming", {"uri": uri})


async def _destination_status(dst: QemuMachine) -> str:
    """The destination's final migration status, from its events.

    A lost destination monitor is a status too, not an error: the source's
    own failure (with QEMU's error-desc) is what the run reports first.
    """
    listener = dst.listener("MIGRATION")
    try:
        status = str((await dst.execute("query-migrate")).get("status", "none"))
        while status not in FINAL:
            event: Any = await listener.get()
            status = str(event["data"]["status"])
        return status
    except QmpError as exc:
        return f"unknown ({exc.desc})"
    finally:
        dst.qmp.remove_listener(listener)


class _Driver:
    def __init__(self, src: QemuMachine, policy: Policy, stats: MigrationStats,
                 watch: Watch, recovery: Recovery | None = None,
                 stuck: StuckAfter | None = None, started: Started | None = None) -> None:
        self.src, self.policy, self.stats, self.watch = src, policy, stats, watch
        self.recovery, self.stuck = recovery, stuck
        started = started or Started.now()
        self.started, self.started_wall = started.monotonic, started.wall
        self._moved_at = time.monotonic()
        self._moved: tuple[str, int] | None = None  # (status, bytes) when last seen to move

    def _sent(self, info: dict[str, Any]) -> None:
        """Note whether the stream moved since the last query-migrate."""
        now = (str(info.get("status")), int(info.get("ram", {}).get("transferred", 0)))
        if now != self._moved:
            self._moved, self._moved_at = now, time.monotonic()

    async def _unstick(self) -> None:
        """A stream that sent nothing for `stuck.seconds` will not recover by
        itself (a link that stays down): end it now, not at --timeout, and say
        where that leaves the source."""
        s, stuck = self.stats, self.stuck
        quiet = time.monotonic() - self._moved_at
        if stuck is None or s.status not in STREAMING or quiet < stuck.seconds:
            return
        what = (f"no byte sent for {quiet:.0f} s: the migration stream is stuck "
                f"(the bound: {stuck.why})")
        if s.status != "postcopy-active":
            await self.execute(Cancel(what))
            raise MigrationFailed(f"{what}; qmpctl cancelled the migration and the source "
                                  f"is {await cancel(self.src)}: precopy leaves it the "
                                  "guest's only live copy")
        # After the switchover a cancel cannot give the source its guest back:
        # break the channel instead, which a recovery (if asked for) repairs.
        await self.execute(PausePostcopy(what))
        if self.recovery is not None:
            return
        status = s.status
        for _ in range(50):
            status = str((await self.src.execute("query-migrate", timeout=5)).get("status"))
            if status in POSTCOPY_PAUSED or status in FINAL:
                break
            await asyncio.sleep(0.1)
        raise MigrationFailed(
            f"{what} after the switchover to postcopy; qmpctl broke the channel "
            f"(migrate-pause): the source is {await self.src.status()} in migration status "
            f"{status}, and is not resumed: the destination's guest ran since the "
            "switchover, so its newest memory is split between the sides (only a postcopy "
            "recovery, --postcopy-recover, could finish the migration)")

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def stamped(self, event: Any) -> float | None:
        """When QEMU emitted `event`, in seconds since the migration started
        (None for an event without QMP's timestamp)."""
        stamp = event.get("timestamp")
        if not isinstance(stamp, dict) or "seconds" not in stamp:
            return None
        return int(stamp["seconds"]) + int(stamp.get("microseconds", 0)) / 1e6 - self.started_wall

    async def execute(self, action: Action) -> None:
        s = self.stats
        pass_no = s.samples[-1].pass_no if s.samples else 0
        s.decisions.append(Decision(pass_no=pass_no, elapsed_s=self.elapsed(),
                                    action=type(action).__name__, why=action.why))
        log.info("pass %d: %s (%s)", pass_no, type(action).__name__, action.why)
        match action:
            case SetParameters(parameters=params):
                await self.src.execute("migrate-set-parameters", dict(params))
            case StartPostcopy():
                s.postcopy_at_pass = pass_no  # `mode` only once QEMU says postcopy-active
                await self.src.execute("migrate-start-postcopy")
            case PausePostcopy():
                if self.recovery is not None:
                    await self.recovery.before_pause()
                await self.src.execute("migrate-pause")
            case Cancel():
                await self.src.execute("migrate_cancel")
            case ContinueSwitchover():
                await self.src.execute("migrate-continue", {"state": "pre-switchover"})
            case EndHoldBack(stalled=stalled):
                s.throttled_passes, s.workload_stalled = max(0, pass_no - 1), stalled

    async def run(self, uri: str) -> None:
        """Until the source reaches a final status."""
        src, s = self.src, self.stats
        listener = src.listener("MIGRATION", "MIGRATION_PASS")
        try:
            await src.execute("migrate", {"uri": uri})
            while s.status not in FINAL:
                event: Any = None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        event = await listener.get()
                if event is None:  # quiet for 0.5 s: is the source still there?
                    info = await src.execute("query-migrate", timeout=10)
                    self._sent(info)
                    if self.watch.progress is not None:
                        self.watch.progress(info, len(s.samples))
                elif event["event"] == "MIGRATION":
                    self._moved_at = time.monotonic()  # a new status is a new start
                    s.status = str(event["data"]["status"])
                    s.statuses.append(s.status)
                    log.info("migration %s at +%.2f s", s.status, self.elapsed())
                    if s.status == "postcopy-active":
                        s.mode = "postcopy"
                    if self.watch.on_status is not None:
                        await self.watch.on_status(s.status)
                    if self.recovery is not None and s.status in POSTCOPY_PAUSED:
                        if s.status == "postcopy-paused":
                            await self.recovery.recover(self.src, self.elapsed())
                            s.recoveries = list(self.recovery.attempts)
                    elif s.status in POSTCOPY_PAUSED:
                        raise MigrationFailed(
                            f"postcopy {s.status} at +{self.elapsed():.2f} s: the migration "
                            "channel broke after the switchover; the guest's newest pages are "
                            "split between the sides, so the source cannot simply resume")
                else:
                    pass_no = int(event["data"]["pass"])
                    info = await src.execute("query-migrate")
                    self._sent(info)
                    s.samples.append(sample_from(info, pass_no, self.elapsed(),
                                                 self.stamped(event)))
                    if self.watch.on_pass is not None:
                        await self.watch.on_pass(pass_no)
                if (failure := self.watch.guest_failed()) is not None:
                    raise GuestError(failure)
                if s.status in FINAL:
                    break
                await self._unstick()
                state = MigrationState(status=s.status, samples=tuple(s.samples),
                                       elapsed_s=self.elapsed(),
                                       redirtied=self.watch.redirtied())
                for action in self.policy.decide(state):
                    await self.execute(action)
        finally:
            src.qmp.remove_listener(listener)


async def migrate(src: QemuMachine, dst: QemuMachine, uri: str, policy: Policy,
                  stats: MigrationStats, timeout: float, watch: Watch | None = None,
                  recovery: Recovery | None = None, restore_uri: str | None = None,
                  stuck: StuckAfter | None = None, started: Started | None = None) -> None:
    """Migrate `src` into `dst`, filling `stats` as it goes (so a failed run
    keeps what it measured); raise MigrationFailed with QEMU's error-desc.

    `restore_uri`: the source migrated to a file; once it completed, the
    destination loads that file (`migrate-incoming`). `stuck`: a stream that
    sends nothing that long is ended (cancelled; broken after a postcopy
    switchover) instead of waiting for `timeout`. `started`: the origin of
    the times it records (default: now).

    `prepare()` must have been called; on any exception the caller is
    responsible for `cancel()`.
    """
    driver = _Driver(src, policy, stats, watch or Watch(), recovery, stuck, started)
    info: dict[str, Any] = {}
    try:
        async with task_group() as group:
            dst_status = group.create_task(_destination_status(dst))
            try:
                async with asyncio.timeout(timeout):
                    await driver.run(uri)
            except TimeoutError:
                stats.status = "timeout"
            finally:
                stats.wall_s = driver.elapsed()
                with contextlib.suppress(QmpError):
                    info = await src.execute("query-migrate", timeout=5)
                    absorb_final(stats, info)
                    stats.error_desc = info.get("error-desc")
                absorb_samples(stats)
            if stats.status == "timeout":
                raise MigrationFailed(f"migration did not finish within {timeout:.0f}s",
                                      f"last status {info.get('status')}; "
                                      + convergence_detail(stats, info))
            if stats.status != "completed":
                raise MigrationFailed(f"migration {stats.status}", stats.error_desc)
            if restore_uri is not None:
                t0 = time.monotonic()
                await dst.execute("migrate-incoming", {"uri": restore_uri})
            try:
                async with asyncio.timeout(30 if restore_uri is None else timeout):
                    final = await dst_status
            except TimeoutError:
                raise MigrationFailed("destination did not report completion within 30s"
                                      ) from None
            if final != "completed":
                raise MigrationFailed(f"source completed but destination says {final}")
            if restore_uri is not None:
                stats.restore_s = round(time.monotonic() - t0, 3)
    finally:
        if recovery is not None:
            await recovery.close()
        if not any(d.action == "EndHoldBack" for d in stats.decisions):
            stats.throttled_passes = stats.passes  # never released


def convergence_detail(stats: MigrationStats, info: dict[str, Any]) -> str:
    """Why a migration has not converged, in measured rates (pure)."""
    ram = info.get("ram", {})
    page = int(ram.get("page-size", 4096)) or 4096
    dirty_mib_s = int(ram.get("dirty-pages-rate", 0)) * page / (1 << 20)
    sent_mib_s = float(ram.get("mbps", 0.0)) / 8 * 1e6 / (1 << 20)
    remaining = int(ram.get("remaining", 0)) / (1 << 20)
    passes = int(ram.get("dirty-sync-count", stats.passes))
    why = (f"{passes} dirty syncs; the guest dirties {dirty_mib_s:.1f} MiB/s, the migration "
           f"sends {sent_mib_s:.1f} MiB/s, {remaining:.1f} MiB remain")
    if not any(d.action == "EndHoldBack" for d in stats.decisions):
        why += "; convergence was still held back"
    elif sent_mib_s and dirty_mib_s >= sent_mib_s:
        why += ": the guest dirties memory as fast as it is sent, so precopy cannot converge " \
               "(try --postcopy or --auto-converge)"
    if (expected := info.get("expected-downtime")) is not None:
        why += f"; expected downtime {expected} ms"
    return why


class CancelStep(enum.Enum):
    """What cancelling does, given the source's migration status (`cancel_step`)."""

    KEEP_PAUSED = "postcopy paused: only a recovery can continue it; not resumed"
    BEHIND = "completed and the destination's guest ran: the source is behind it"
    RESUME_COMPLETED = "completed, but the destination failed: resume the only copy"
    CANCEL = "migrating: cancel, wait for it to end, then resume"
    RESUME = "no migration running: resume if paused"


def cancel_step(status: str | None, resume_completed: bool) -> CancelStep:
    """The decision `cancel` acts on (pure; the table is unit-tested)."""
    if status in POSTCOPY_PAUSED:
        return CancelStep.KEEP_PAUSED
    if status == "completed":
        return CancelStep.RESUME_COMPLETED if resume_completed else CancelStep.BEHIND
    if status in (None, "none", "failed", "cancelled"):
        return CancelStep.RESUME
    return CancelStep.CANCEL


async def cancel(src: QemuMachine, timeout: float = 15.0, resume_completed: bool = True) -> str:
    """Cancel an active migration and make sure the source runs again.

    `resume_completed`: a migration that completed anyway is resumed on the
    source too, unless the destination's guest already ran (then the source's
    memory is behind it). Returns the source's run state afterwards. Never
    raises: it runs on the error path.
    """
    try:
        info = await src.execute("query-migrate", timeout=5)
        status = info.get("status")
        step = cancel_step(None if status is None else str(status), resume_completed)
        if step is CancelStep.KEEP_PAUSED:
            state = await src.status()
            return (f"{state} (migration {status}: after the postcopy switchover "
                    "the source is not resumed; only a postcopy recovery can continue it)")
        if step is CancelStep.BEHIND:
            return (f"{await src.status()} (migration completed and the destination's "
                    "guest ran: the source is behind it and is not resumed)")
        if step is CancelStep.RESUME_COMPLETED:
            return await ensure_running(src, after_completion=True)
        if step is CancelStep.CANCEL:
            await src.execute("migrate_cancel", timeout=5)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                info = await src.execute("query-migrate", timeout=5)
                if info.get("status") in ("cancelled", "failed", "completed"):
                    break
                await asyncio.sleep(0.1)
        return await ensure_running(src)
    except QmpError:
        return "unknown"


async def ensure_running(machine: QemuMachine, after_completion: bool = False) -> str:
    """Resume a source that a failed migration left paused.

    `after_completion`: the source finished but the destination failed, so the
    source (in `postmigrate`) is the only copy of the guest: resume it too.
    """
    resumable = ("paused", "finish-migrate") + (("postmigrate",) if after_completion else ())
    status = await machine.status()
    if status in resumable:
        with contextlib.suppress(QmpError):
            await machine.execute("cont")
        status = await machine.status()
    return status
