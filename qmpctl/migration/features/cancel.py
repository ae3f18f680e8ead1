"""`--cancel-at`: a first migration cancelled in a given status.

The scenario drives the cancel itself (the runner's `_cancelled_attempt`),
so the option is a `MigrateOptions` field of its own; this module holds the
evidence it must show and its matrix values."""

from __future__ import annotations

from ..models import FeatureEvidence
from . import DocRow, FeatureOptions, outcome


def cancel_evidence(requested: str, statuses: list[str], source_after: str,
                    checks_ok: bool, check_detail: str) -> FeatureEvidence:
    """--cancel-at: was the migration cancelled in the status asked for, and
    did the source run on, sound, afterwards (pure)."""
    reached = statuses[statuses.index("cancelling") - 1] if "cancelling" in statuses[1:] \
        else None
    figures = {"cancelled": int(statuses[-1:] == ["cancelled"])}
    problems = []
    if statuses[-1:] != ["cancelled"]:
        problems.append(f"the migration ended {statuses[-1] if statuses else 'nowhere'}, "
                        "not cancelled")
    elif reached != requested:
        problems.append(f"cancelled in {reached}, not in {requested}")
    if source_after != "running":
        problems.append(f"the source is {source_after} after the cancel, not running")
    if not checks_ok:
        problems.append(f"the source's workload check failed after the cancel: {check_detail}")
    detail = (f"statuses {' -> '.join(statuses)}; source {source_after} afterwards; "
              f"{check_detail}")
    return outcome(f"cancel-at-{requested}", problems, detail, figures)


class CancelOptions(FeatureOptions):
    """A cancelled first migration, then a fresh one."""

    order = 100
    matrix = {f"cancel-{status}": {"cancel_at": status}
              for status in ("setup", "active", "pre-switchover")}
    doc = DocRow("`--cancel-at setup|active|pre-switchover`",
                 "`migrate_cancel` on that status event (`pause-before-switchover` for the "
                 "last)",
                 "the statuses end `STATUS, cancelling, cancelled`; the source runs again, "
                 "makes 2 wave passes and its image passes the wave invariant; then a fresh "
                 "destination is migrated and verified as usual")
