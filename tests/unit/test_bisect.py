"""--bisect: verdicts to the exit code `git bisect run` reads (pure)."""

from __future__ import annotations

import pytest

from qmpctl.core.errors import Verdict
from qmpctl.matrix.bisect import bisect_outcome


@pytest.mark.parametrize(("verdicts", "code", "line"), [
    (["verified"] * 3, 0, "bisect: good: no loss in 3 runs: loss rate below 56.1% "
                          "(95 % Wilson upper bound)"),
    (["verified", "mismatch"], 1, "bisect: bad: run 2 of 3 lost pages"),
    (["inconclusive"], 125, "bisect: skip: run 1 of 3 could not decide (inconclusive)"),
    (["verified", "migration-failed"], 125,
     "bisect: skip: run 2 of 3 could not decide (migration-failed)"),
    (["environment-error"], 125, "bisect: skip: run 1 of 3 could not decide "
                                 "(environment-error)"),
    (["guest-failed"], 125, "bisect: skip: run 1 of 3 could not decide (guest-failed)"),
    (["usage-error"], 128, "bisect: abort: run 1 of 3 ended usage-error, which says nothing "
                           "about this commit"),
    (["error"], 128, "bisect: abort: run 1 of 3 ended error, which says nothing about this "
                     "commit"),
    (["verified", "interrupted"], 130, "bisect: interrupted at run 2 of 3"),
    ([], 128, "bisect: abort: no run was made"),
])
def test_verdicts_become_git_bisect_exit_codes(verdicts: list[Verdict], code: int,
                                               line: str) -> None:
    assert bisect_outcome(verdicts, 3) == (code, line)


def test_good_needs_every_run() -> None:
    with pytest.raises(ValueError, match="2 verified runs of 3"):
        bisect_outcome(["verified", "verified"], 3)
