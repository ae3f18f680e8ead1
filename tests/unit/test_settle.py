"""The source-settling decisions, as tables: what cleanup does to the source
(scenario.runner.settle_plan) and what cancelling does for each migration
status (migration.driver.cancel_step). Never resuming a source whose guest
already ran elsewhere is the rule that keeps a guest from running twice."""

from __future__ import annotations

import pytest

from qmpctl.migration.driver import CancelStep, cancel_step
from qmpctl.scenario.runner import Settle, settle_plan

# running, unresponsive, started, completed, took_over, state_known -> plan
SETTLE = [
    (False, False, True, False, False, False, Settle.NOTHING),
    (True, True, True, False, False, False, Settle.NOT_ASKED),
    (True, False, True, False, False, False, Settle.CANCEL_AND_RESUME),
    (True, False, True, False, True, False, Settle.CANCEL_KEEP_BEHIND),
    (True, False, True, True, False, False, Settle.RESUME_AFTER_COMPLETION),
    (True, False, True, True, True, False, Settle.RECORD_STATE),
    (True, False, True, True, True, True, Settle.NOTHING),
    (True, False, False, False, False, False, Settle.RECORD_STATE),
    (True, False, False, False, False, True, Settle.NOTHING),
]


@pytest.mark.parametrize(("running", "unresponsive", "started", "completed", "took_over",
                          "state_known", "plan"), SETTLE)
def test_settle_plan(running: bool, unresponsive: bool, started: bool, completed: bool,
                     took_over: bool, state_known: bool, plan: Settle) -> None:
    assert settle_plan(running=running, unresponsive=unresponsive, started=started,
                       completed=completed, took_over=took_over,
                       state_known=state_known) is plan


def test_every_plan_is_reachable() -> None:
    assert {row[-1] for row in SETTLE} == set(Settle)


@pytest.mark.parametrize(("status", "resume_completed", "step"), [
    ("postcopy-paused", True, CancelStep.KEEP_PAUSED),
    ("postcopy-recover", False, CancelStep.KEEP_PAUSED),
    ("completed", True, CancelStep.RESUME_COMPLETED),
    ("completed", False, CancelStep.BEHIND),
    (None, True, CancelStep.RESUME),
    ("none", True, CancelStep.RESUME),
    ("failed", False, CancelStep.RESUME),
    ("cancelled", True, CancelStep.RESUME),
    ("active", True, CancelStep.CANCEL),
    ("device", False, CancelStep.CANCEL),
    ("pre-switchover", True, CancelStep.CANCEL),
])
def test_cancel_step(status: str | None, resume_completed: bool, step: CancelStep) -> None:
    assert cancel_step(status, resume_completed) is step
