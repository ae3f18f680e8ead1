"""The verdict of a run, from its evidence (pure).

Order matters: an error already decided (usage, environment, migration,
guest, interrupt, internal) stands; then any difference is a mismatch; then
missing evidence is an environment error; only then can a run be verified,
and only if it proved dirty tracking was exercised; else it is inconclusive.
"""

from __future__ import annotations

from ..core.errors import ExitCode, GuestError, verdict_for
from ..guests.base import GuestCheck
from ..migration.models import MigrationStats
from ..verify.ring import stall_detail
from ..verify.timeline import DirtyTimeline
from .models import RunReport

MIN_SYNCS = 2  # one bulk pass plus at least one pass that sends dirty pages again


def inconclusive_reasons(m: MigrationStats, timeline: DirtyTimeline | None = None) -> list[str]:
    """Why a completed migration proved nothing about dirty tracking; a guest
    that made no progress because its dirty ring stalled is named so."""
    out = []
    if m.workload_stalled:
        out.append("the workload rewrote no memory while convergence was held back")
    if m.workload_progress_during == 0:
        why = f"the workload made no progress ({m.workload_progress_unit}) during the migration"
        if timeline is not None and (stall := stall_detail(timeline.summary)) is not None:
            why += (f": {stall}: a stalled dirty ring kept the guest from running (on "
                    "kvm_pvm, the ring overflow in docs/findings.md)")
        out.append(why)
    if m.pages_resent == 0:
        out.append("no page was sent twice: no dirty page was ever re-sent")
    if m.passes < MIN_SYNCS:
        out.append(f"only {m.passes} dirty sync(s); at least {MIN_SYNCS} are needed")
    out += [f"{f.feature} was asked for but did not engage: {f.detail}"
            for f in m.features if not f.engaged]
    return out


def all_inconclusive_reasons(report: RunReport) -> list[str]:
    """Every migration's reasons; named by number when there were several."""
    migrations = [(h.migration, h.dirty_timeline) for h in report.hops]
    migrations.append((report.migration, report.dirty_timeline))
    numbered = len(migrations) > 1
    reasons = [f"migration {n}: {why}" if numbered else why
               for n, (m, timeline) in enumerate(migrations, 1) if m is not None
               for why in inconclusive_reasons(m, timeline)]
    if report.skipped_migration is not None:
        result = report.guest_result
        reasons.append(f"{report.skipped_migration}: nothing was migrated; the guest's own "
                       f"result: {result.status if result else 'none'}")
    saves = [(f"migration {h.number}: " if numbered else "", h.its_save) for h in report.hops]
    saves.append((f"migration {len(migrations)}: " if numbered else "", report.its_save))
    reasons += [f"{where}ITS save: {save.describe()}" for where, save in saves
                if save is not None and not save.proven]  # arm64 KVM, tables known
    if (source := report.its_tables_source or "").startswith("not located"):
        # Under KVM the GIC's registers are in the kernel: the ITS save is unproven.
        reasons.append(f"the ITS tables were {source}; their pages were compared only as "
                       "RAM, with no verdict per table")
    return reasons


def guest_failure(report: RunReport) -> str | None:
    """A foreign guest that failed its own tests, or promised a result and gave none."""
    result = report.guest_result
    if result is None or result.status not in ("FAIL", "NO-RESULT"):
        return None
    failures = f": {'; '.join(result.failures[:3])}" if result.failures else ""
    return f"the guest reported {result.status} ({result.detail}){failures}"


def conclude(report: RunReport) -> None:
    """Set `verdict`, `exit_code` and `inconclusive` from what the run found.

    A foreign guest's own FAIL makes the run guest-failed even when memory
    verified; lost pages (mismatch) still come first, as they explain it."""
    if report.exit_code == ExitCode.VERIFIED:
        if report.found_difference:
            report.exit_code = ExitCode.MISMATCH
        elif report.evidence_missing:
            report.exit_code = ExitCode.ENVIRONMENT
            report.error = "; ".join(report.evidence_missing)
        elif (failure := guest_failure(report)) is not None:
            report.exit_code, report.error = ExitCode.GUEST_FAILED, failure
        else:
            report.inconclusive = all_inconclusive_reasons(report)
            if report.inconclusive:
                report.exit_code = ExitCode.INCONCLUSIVE
    report.verdict = verdict_for(report.exit_code)


def before_migration_failure(checks: list[GuestCheck]) -> GuestError | None:
    """A guest that fails its checks before migrating (LPIs not flowing, NIC
    silent) is a guest failure: the evidence the run needs is missing, and
    nothing can have been lost yet, so it must never read as a mismatch."""
    failed = [c for c in checks if not c.ok]
    if not failed:
        return None
    return GuestError("the guest failed its checks before migration: " + "; ".join(
        f"{c.name}: {c.detail}" for c in failed))
