"""A migration stream that sends nothing is ended after a bound derived from
the run's limits, not at --timeout; what that leaves the source in is said."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from qmpctl.core.errors import GuestError, MigrationFailed
from qmpctl.faults.spec import parse_fault
from qmpctl.migration.driver import StuckAfter, Watch, _Driver, stuck_after
from qmpctl.migration.models import MigrationStats
from qmpctl.migration.policy import Action, MigrationState
from qmpctl.migration.settings import MigrationSettings
from qmpctl.scenario.runner import stuck_bound

MiB = 1 << 20


def test_the_bound_is_twice_the_socket_buffers_drain_time_with_a_floor() -> None:
    assert stuck_after(4 * MiB, 4 * MiB).seconds == 10.0  # drains in 1 s: the floor
    slow_link = stuck_after(1e6 / 8, 4 * MiB)  # a 1 Mbit/s link
    assert slow_link.seconds == pytest.approx(2 * 4 * MiB / 125000)
    assert "4.0 MiB socket buffer" in slow_link.why
    assert stuck_after(None, 4 * MiB).seconds == 10.0


def test_the_runs_lowest_limit_sets_the_bound() -> None:
    settings = MigrationSettings(parameters={"max-bandwidth": 4 * MiB})
    run = SimpleNamespace(faults=[parse_fault("rate=1@pass:2")])
    assert stuck_bound(run, settings, 4 * MiB).seconds == pytest.approx(  # type: ignore[arg-type]
        2 * 4 * MiB / 125000)
    run = SimpleNamespace(faults=[])
    assert stuck_bound(run, settings, 4 * MiB).seconds == 10.0  # type: ignore[arg-type]


class Holding:
    def settings(self) -> MigrationSettings:
        return MigrationSettings()

    def decide(self, state: MigrationState) -> list[Action]:
        return []


class StuckSource:
    """A source whose stream stops moving once `migrate` is issued (a cut link)."""

    def __init__(self, status: str, moving_for: int = 0) -> None:
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.migration, self.vm, self.moving_for = status, "running", moving_for
        self.transferred, self.sent = 1000, list[str]()
        self.qmp = SimpleNamespace(remove_listener=lambda _listener: None)

    def listener(self, *_names: str) -> asyncio.Queue[dict[str, Any]]:
        return self.events

    async def execute(self, command: str, arguments: dict[str, Any] | None = None,
                      timeout: float = 30.0) -> dict[str, Any]:
        self.sent.append(command)
        match command:
            case "migrate":
                self.events.put_nowait({"event": "MIGRATION",
                                        "data": {"status": self.migration}})
            case "migrate_cancel":
                self.migration = "cancelled"
            case "migrate-pause":
                self.migration = "postcopy-paused"
            case "query-migrate":
                if self.moving_for > 0:
                    self.moving_for, self.transferred = self.moving_for - 1, self.transferred + 1
                    if not self.moving_for:
                        self.migration = "completed"
                        self.events.put_nowait({"event": "MIGRATION",
                                                "data": {"status": "completed"}})
                return {"status": self.migration, "ram": {"transferred": self.transferred}}
            case "query-status":
                return {"status": self.vm}
        return {}

    async def status(self) -> str:
        return self.vm


async def drive(src: StuckSource, seconds: float) -> MigrationStats:
    stats = MigrationStats(status="setup")
    driver = _Driver(src, Holding(), stats, Watch(),  # type: ignore[arg-type]
                     stuck=StuckAfter(seconds, "a test's bound"))
    async with asyncio.timeout(10):
        await driver.run("unix:/nowhere")
    return stats


async def test_a_stuck_precopy_stream_is_cancelled_and_the_source_runs_on() -> None:
    src = StuckSource("active")
    with pytest.raises(MigrationFailed, match=r"^no byte sent for 1 s: the migration stream "
                       r"is stuck \(the bound: a test's bound\); qmpctl cancelled the "
                       r"migration and the source is running"):
        await drive(src, 0.8)
    assert "migrate_cancel" in src.sent and "migrate-pause" not in src.sent


async def test_a_stuck_postcopy_stream_is_broken_and_the_source_state_said() -> None:
    src = StuckSource("postcopy-active")
    src.vm = "postmigrate"
    with pytest.raises(MigrationFailed) as info:
        await drive(src, 0.8)
    msg = info.value.message
    assert msg.startswith("no byte sent for 1 s: the migration stream is stuck"), msg
    assert "after the switchover to postcopy" in msg and "postcopy-paused" in msg, msg
    assert "is not resumed" in msg and "converge" not in msg, msg
    assert "migrate-pause" in src.sent and "migrate_cancel" not in src.sent


async def test_a_stream_that_moves_is_never_stuck() -> None:
    src = StuckSource("active", moving_for=6)  # a byte per query, 3 s in all
    stats = await drive(src, 0.8)
    assert stats.status == "completed" and "migrate_cancel" not in src.sent


async def test_a_guest_that_reports_a_failure_ends_the_migration_at_once() -> None:
    src = StuckSource("active", moving_for=100)  # would move (and complete) for 50 s
    said = iter([None, None])
    watch = Watch(guest_failed=lambda: next(said, "the source guest reported an error"))
    driver = _Driver(src, Holding(), MigrationStats(status="setup"), watch)  # type: ignore[arg-type]
    with pytest.raises(GuestError, match=r"^the source guest reported an error$"):
        async with asyncio.timeout(10):
            await driver.run("unix:/nowhere")
    # Three looks, each after at most 0.5 s of quiet; the cancel is the caller's.
    assert src.moving_for >= 97 and src.migration == "active"
