"""`qmpctl migrate --bisect N`: a run's verdicts as `git bisect run` reads
an exit code (pure).

    0    good: N runs, none lost a page (the summary bounds the loss rate)
    1    bad: a run lost pages (mismatch)
    125  skip: a run could not decide (inconclusive, a failed migration or
         guest, the host or this commit's QEMU unable to run it)
    128  abort the bisection: bad input, or qmpctl's own error; the same at
         every commit, so no commit may be blamed for it
    130  interrupted (git bisect run stops too: >= 128)
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.errors import Verdict
from .stats import wilson

GOOD, BAD, SKIP, ABORT, INTERRUPTED = 0, 1, 125, 128, 130
ABORTS: tuple[Verdict, ...] = ("usage-error", "error", "report-unwritten")


def bisect_outcome(verdicts: Sequence[Verdict], runs: int) -> tuple[int, str]:
    """The exit code and the one line that says what it means, from the
    verdicts of the runs made (they stop at the first that did not verify)."""
    if not verdicts:
        return ABORT, "bisect: abort: no run was made"
    last, k = verdicts[-1], len(verdicts)
    if last == "interrupted":
        return INTERRUPTED, f"bisect: interrupted at run {k} of {runs}"
    if last == "mismatch":
        return BAD, f"bisect: bad: run {k} of {runs} lost pages"
    if last in ABORTS:
        return ABORT, (f"bisect: abort: run {k} of {runs} ended {last}, which says nothing "
                       "about this commit")
    if last != "verified":
        return SKIP, f"bisect: skip: run {k} of {runs} could not decide ({last})"
    if k < runs:  # the caller stops only at a run that did not verify
        raise ValueError(f"{k} verified runs of {runs}: the bisection stopped early")
    high = wilson(0, runs)[1]
    return GOOD, (f"bisect: good: no loss in {runs} runs: loss rate below {high:.1%} "
                  "(95 % Wilson upper bound)")
