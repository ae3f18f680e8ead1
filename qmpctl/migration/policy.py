"""Migration policies: pure objects that look at the migration after each
pass or status event and return the actions to take.

The driver executes the actions and records them; a policy never talks to
QEMU. `HoldBack` is QEMU migration-test's recipe: keep convergence impossible
(bandwidth throttled, 1 ms downtime) until enough dirty syncs have happened
and the guest has rewritten memory already sent, then release into a
`Converge` or `Postcopy` ending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .models import PassSample
from .settings import MigrationSettings


@dataclass(frozen=True)
class SetParameters:
    parameters: dict[str, int]
    why: str


@dataclass(frozen=True)
class StartPostcopy:
    why: str


@dataclass(frozen=True)
class PausePostcopy:
    """Break the channel after the switchover (migrate-pause) to exercise recovery."""

    why: str


@dataclass(frozen=True)
class Cancel:
    why: str


@dataclass(frozen=True)
class ContinueSwitchover:
    """Let a migration paused at `pre-switchover` go on (migrate-continue)."""

    why: str


@dataclass(frozen=True)
class EndHoldBack:
    """Convergence is allowed from here; `stalled` when the guest never re-dirtied."""

    stalled: bool
    why: str


Action = (SetParameters | StartPostcopy | PausePostcopy | Cancel | ContinueSwitchover
          | EndHoldBack)


@dataclass(frozen=True)
class MigrationState:
    """What a policy sees: the source's passes so far and its status."""

    status: str
    samples: tuple[PassSample, ...]
    elapsed_s: float
    redirtied: bool  # the guest rewrote memory since the migration started

    @property
    def pass_no(self) -> int:
        return self.samples[-1].pass_no if self.samples else 0


class Policy(Protocol):
    def settings(self) -> MigrationSettings:
        """Capabilities and parameters this policy needs on both sides."""

    def decide(self, state: MigrationState) -> list[Action]:
        """Actions to take now (called after every pass and status event)."""


class Ending(Protocol):
    """How a held-back migration ends once released."""

    def settings(self) -> MigrationSettings: ...
    def release(self) -> list[Action]: ...


@dataclass(frozen=True)
class Converge:
    """Precopy to completion: lift the bandwidth cap, allow `downtime_ms`."""

    bandwidth: int = 8 << 30
    downtime_ms: int = 1000

    def settings(self) -> MigrationSettings:
        return MigrationSettings()

    def release(self) -> list[Action]:
        return [SetParameters({"max-bandwidth": self.bandwidth,
                               "downtime-limit": self.downtime_ms},
                              "let precopy converge")]


@dataclass(frozen=True)
class Postcopy:
    """Switch to postcopy; the paused destination (-S) receives the rest by push.

    The hold-back keeps its 1 ms downtime limit: with 0, QEMU skips the exact
    dirty sync whenever its estimate says nothing is pending (the estimate of
    a ring run between syncs), and completes precopy at once (5 of 5 arm64 KVM
    runs did, in a lab)."""

    def settings(self) -> MigrationSettings:
        return MigrationSettings(capabilities={"postcopy-ram": True})

    def release(self) -> list[Action]:
        return [StartPostcopy("switch to postcopy")]


@dataclass
class HoldBack:
    """Hold convergence back until `min_passes` syncs and re-dirtied memory
    (or `hold_timeout_s`, then the run is marked stalled), then `ending`."""

    ending: Ending
    min_passes: int = 3
    throttle_bandwidth: int = 64 << 20
    hold_timeout_s: float = 30.0
    released: bool = field(default=False, init=False)

    def settings(self) -> MigrationSettings:
        held = MigrationSettings(parameters={"max-bandwidth": self.throttle_bandwidth,
                                             "downtime-limit": 1})
        return held.merged(self.ending.settings())

    def decide(self, state: MigrationState) -> list[Action]:
        if self.released or state.pass_no <= self.min_passes:
            return []
        if not state.redirtied and state.elapsed_s <= self.hold_timeout_s:
            return []
        self.released = True
        why = (f"{state.pass_no - 1} dirty syncs done and the guest rewrote sent memory"
               if state.redirtied else
               f"the guest rewrote no memory within {self.hold_timeout_s:g}s")
        return [EndHoldBack(stalled=not state.redirtied, why=why), *self.ending.release()]


@dataclass
class BreakPostcopy:
    """`inner`, plus one `migrate-pause` once postcopy is active, so the run
    must recover (the driver's `Recovery`) before it can complete.

    Postcopy has its own bandwidth (`max-postcopy-bandwidth`, unlimited by
    default): a small guest's postcopy phase then lasts milliseconds and the
    pause would land after completion. It is capped until the recovery
    (which lifts it), so the break falls inside postcopy."""

    inner: Policy
    postcopy_bandwidth: int = 8 << 20
    broken: bool = field(default=False, init=False)

    def settings(self) -> MigrationSettings:
        capped = MigrationSettings(parameters={"max-postcopy-bandwidth":
                                               self.postcopy_bandwidth})
        return self.inner.settings().merged(capped)

    def decide(self, state: MigrationState) -> list[Action]:
        actions = self.inner.decide(state)
        if state.status == "postcopy-active" and not self.broken:
            self.broken = True
            actions.append(PausePostcopy("break the channel during postcopy (migrate-pause)"))
        return actions


@dataclass
class CancelAt:
    """`inner` until the source reports `status`, then `migrate_cancel` (once).
    `pre-switchover` needs `pause-before-switchover`, which this adds."""

    inner: Policy
    status: str
    cancelled: bool = field(default=False, init=False)

    def settings(self) -> MigrationSettings:
        extra = (MigrationSettings(capabilities={"pause-before-switchover": True})
                 if self.status == "pre-switchover" else MigrationSettings())
        return self.inner.settings().merged(extra)

    def decide(self, state: MigrationState) -> list[Action]:
        if self.cancelled:
            return []
        if state.status == self.status:
            self.cancelled = True
            return [Cancel(f"cancel in {self.status}, as asked (--cancel-at)")]
        return self.inner.decide(state)
