"""`--postcopy-recover`: a postcopy migration whose channel broke, recovered.

Its options are the scenario's (the runner pauses and resumes the
migration: `migration.recovery`), so they are `MigrateOptions` fields of
their own; this module holds their rules and what they must prove."""

from __future__ import annotations

from dataclasses import dataclass

from ..models import FeatureEvidence
from ..settings import MigrationSettings
from . import DocRow, Feature, FeatureOptions, Observed, RunFacts, outcome, trace_args


@dataclass(frozen=True)
class PostcopyRecover:
    """Recovery of a postcopy migration whose channel broke (see `recovery`)."""

    fail_first: bool = False
    name: str = "postcopy-recover"

    def settings(self) -> MigrationSettings:
        return MigrationSettings()

    def trace_events(self) -> tuple[str, ...]:
        return ("postcopy_pause_incoming", "postcopy_pause_incoming_continued")

    def evidence(self, seen: Observed) -> FeatureEvidence:
        s = seen.stats
        pauses = s.statuses.count("postcopy-paused")
        failed = sum(a.meant_to_fail for a in s.recoveries)
        good = len(s.recoveries) - failed
        dst_pauses = len(trace_args(seen.dst_log, "postcopy_pause_incoming"))
        figures = {"source_pauses": pauses, "destination_pauses": dst_pauses,
                   "attempts": len(s.recoveries), "failed_attempts": failed}
        detail = (f"source paused {pauses} time(s), destination {dst_pauses}; "
                  f"{len(s.recoveries)} resume attempt(s), {failed} aimed to fail")
        problems = []
        if not pauses or not dst_pauses:
            problems.append("the channel never broke on both sides")
        if not good or s.status != "completed":
            problems.append("no recovery completed the migration")
        if self.fail_first and (not failed or pauses < 2):
            problems.append("the failed first recovery did not pause the source again")
        return outcome(self.name, problems, detail, figures)


class PostcopyRecoverOptions(FeatureOptions):
    """Postcopy broken once after the switchover, then recovered."""

    order = 30
    matrix = {"postcopy-recover": {"postcopy": True, "postcopy_recover": True},
              "postcopy-double-failure": {"postcopy": True, "postcopy_recover": True,
                                          "postcopy_recover_fail": True}}
    doc = DocRow("`--postcopy-recover` (`--postcopy-recover-fail`)",
                 "after the switchover, once the destination took the guest over, "
                 "`migrate-pause`; then `migrate-recover URI` on the destination and "
                 "`migrate URI resume=true`; with `-fail` the first `resume` goes to a "
                 "listener that hangs up at once (QEMU's double failure)",
                 "both sides paused (`postcopy-paused`, `postcopy_pause_incoming`), a resume "
                 "completed the migration; with `-fail` the source paused a second time "
                 "and the second resume completed it")

    def problems(self, run: RunFacts) -> list[str]:
        problems = []
        if run.given("postcopy_recover") and not run.postcopy:
            problems.append("--postcopy-recover needs --postcopy")
        if run.given("postcopy_recover_fail") and not run.given("postcopy_recover"):
            problems.append("--postcopy-recover-fail needs --postcopy-recover")
        return problems

    def build(self, run: RunFacts) -> Feature | None:
        if not run.given("postcopy_recover"):
            return None
        return PostcopyRecover(run.given("postcopy_recover_fail"))
