"""Migration policies: pure objects that look at the migration after each
pass or status event and return the actions to take.

The driver executes the actions and records them; a policy never talks to
QEMU. `HoldBack` is QEMU migration-test's recipe: keep convergence impossible
(bandwidth throttled, 1 ms downtime) until enough dirty syncs have happened
and the guest has rewritten memory already sent, then release into a
`Converge` or `Postcopy` ending; a postcopy hold-back is also paced, so no
held-back pass is short enough for a starved guest to let precopy complete
(`Postcopy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..core.units import MiB
from .models import PassSample
from .settings import MigrationSettings

# A paced hold-back never throttles below this: a pass measured at a few ms (a
# nearly idle guest) must not slow the migration to a crawl, and QEMU takes a
# max-bandwidth under 10 B/s (0 bytes per 100 ms window) for no limit at all.
MIN_PACED_BANDWIDTH = 1 * MiB


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

    @property
    def min_pass_s(self) -> float:
        """A held-back pass must last at least this long (0: no pacing)."""

    def settings(self) -> MigrationSettings: ...
    def release(self) -> list[Action]: ...


@dataclass(frozen=True)
class Converge:
    """Precopy to completion: lift the bandwidth cap, allow `downtime_ms`."""

    bandwidth: int = 8 << 30
    downtime_ms: int = 1000
    min_pass_s: float = 0.0  # precopy completing early is what this ending wants anyway

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
    runs did, in a lab).

    Nor does that limit hold a guest that makes no progress. QEMU (up to 10.0;
    10.1 reordered it) decides in `migration_iteration_run` whether to complete
    *before* it looks at `migrate-start-postcopy`: whenever a pass has drained
    and the exact sync finds less than the limit's worth pending, precopy
    completes. A vCPU starved for a whole pass dirties nothing, so the sync
    finds 0, whether or not postcopy was asked for; and the request only
    takes effect at the migration thread's next iteration (its next 100 ms
    rate-limit window) while the pass in flight still has pages to send. On a
    loaded host qmpctl starves with the guest: in 4 of 4 TCG runs that ended
    in precopy under load, the guest dirtied 0 pages during a 170-205 ms pass
    (a 16 MiB wave at 64 MiB/s) and qmpctl got to that pass's MIGRATION_PASS
    175-250 ms late, after QEMU had completed (3 times in the pass that began
    with the release's sync, once in the last held-back pass).
    Issuing the request earlier only moves the race: QEMU switches at its next
    iteration, mid-pass, so that is one held-back pass fewer, not a switch at
    the next sync. Lifting the throttle plays no part: it holds until the
    switch, after which postcopy has its own max-postcopy-bandwidth.

    So the hold-back is paced (`HoldBack`): once a held-back pass took less
    than `min_pass_s`, max-bandwidth is lowered so that the next ones (and the
    pass the release lands in) last about that long: only a stall of about
    that long can still end the migration in precopy."""

    min_pass_s: float = 1.0

    def settings(self) -> MigrationSettings:
        return MigrationSettings(capabilities={"postcopy-ram": True})

    def release(self) -> list[Action]:
        return [StartPostcopy("switch to postcopy")]


@dataclass
class HoldBack:
    """Hold convergence back until `min_passes` syncs and re-dirtied memory
    (or `hold_timeout_s`, then the run is marked stalled), then `ending`.

    Paced when the ending asks for it (`Ending.min_pass_s`): the first
    held-back pass found shorter than that (QEMU's own sync times, the
    MIGRATION_PASS timestamps, so qmpctl's lag does not count) ran at the full
    throttle, so `throttle * duration / min_pass_s` makes the following ones
    last about `min_pass_s`; once, never above the throttle nor below
    `MIN_PACED_BANDWIDTH`."""

    ending: Ending
    min_passes: int = 3
    throttle_bandwidth: int = 64 << 20
    hold_timeout_s: float = 30.0
    released: bool = field(default=False, init=False)
    paced: bool = field(default=False, init=False)

    def settings(self) -> MigrationSettings:
        held = MigrationSettings(parameters={"max-bandwidth": self.throttle_bandwidth,
                                             "downtime-limit": 1})
        return held.merged(self.ending.settings())

    def decide(self, state: MigrationState) -> list[Action]:
        if self.released:
            return []
        if state.pass_no > self.min_passes and (state.redirtied
                                                or state.elapsed_s > self.hold_timeout_s):
            self.released = True
            why = (f"{state.pass_no - 1} dirty syncs done and the guest rewrote sent memory"
                   if state.redirtied else
                   f"the guest rewrote no memory within {self.hold_timeout_s:g}s")
            return [EndHoldBack(stalled=not state.redirtied, why=why), *self.ending.release()]
        return self._pace(state)

    def _pace(self, state: MigrationState) -> list[Action]:
        want = self.ending.min_pass_s
        if self.paced or want <= 0 or len(state.samples) < 2:
            return []
        before, last = state.samples[-2], state.samples[-1]
        if before.synced_s is None or last.synced_s is None or last.pass_no != before.pass_no + 1:
            return []
        took = last.synced_s - before.synced_s
        if took >= want:
            return []  # unpaced passes run at the full throttle: the next may still be short
        self.paced = True
        bandwidth = min(self.throttle_bandwidth,
                        max(MIN_PACED_BANDWIDTH, int(self.throttle_bandwidth * took / want)))
        if bandwidth >= self.throttle_bandwidth:
            return []
        return [SetParameters({"max-bandwidth": bandwidth}, (
            f"pace the hold-back: pass {before.pass_no} took {took:.2f} s at "
            f"{self.throttle_bandwidth / MiB:g} MiB/s; at {bandwidth / MiB:.1f} MiB/s a pass "
            f"lasts ~{want:g} s, so a guest starved for a pass cannot end it in precopy "
            "before the switch"))]


# Postcopy has its own bandwidth (`max-postcopy-bandwidth`, unlimited by
# default): a small guest's postcopy phase then lasts milliseconds, and what
# must happen during it (a break, a fault) would land after completion.
POSTCOPY_CAP = 8 << 20


@dataclass
class CapPostcopy:
    """`inner`, with postcopy's bandwidth capped so that something meant to
    happen during postcopy (a `--fault ...@postcopy`) falls inside it."""

    inner: Policy
    postcopy_bandwidth: int = POSTCOPY_CAP

    def settings(self) -> MigrationSettings:
        capped = MigrationSettings(parameters={"max-postcopy-bandwidth":
                                               self.postcopy_bandwidth})
        return self.inner.settings().merged(capped)

    def decide(self, state: MigrationState) -> list[Action]:
        return self.inner.decide(state)


@dataclass
class BreakPostcopy:
    """`inner`, plus one `migrate-pause` once postcopy is active, so the run
    must recover (the driver's `Recovery`) before it can complete. Postcopy's
    bandwidth is capped (`CapPostcopy`) until the recovery lifts it, so the
    break falls inside postcopy."""

    inner: Policy
    postcopy_bandwidth: int = POSTCOPY_CAP
    broken: bool = field(default=False, init=False)

    def settings(self) -> MigrationSettings:
        return CapPostcopy(self.inner, self.postcopy_bandwidth).settings()

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
