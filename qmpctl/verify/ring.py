"""Evidence that the KVM dirty ring really carried the dirty pages, from the
source's dirty-tracking timeline (QEMU trace events; `verify.timeline`),
counted inside the migration window only."""

from __future__ import annotations

from pydantic import Field

from ..core.model import Model
from .timeline import DirtyTimeline, TimelineSummary


class DirtyRingEvidence(Model):
    """What the rings delivered while the migration ran, beside what it re-sent."""

    reaps: int = Field(description="non-empty ring reaps during the migration")
    pages_reaped: int = Field(description="pages those reaps collected")
    full_exits: int = Field(description="KVM_EXIT_DIRTY_RING_FULL exits during the migration")
    reaps_before_migration: int = Field(0, description="non-empty reaps before it (boot)")
    pages_resent: int = Field(0, description="pages the migration sent more than once")
    trace_events_seen: bool = Field(
        True, description="the source logged any dirty-ring trace event at all")


def ring_evidence(timeline: DirtyTimeline, pages_resent: int) -> DirtyRingEvidence:
    s = timeline.summary
    seen = bool(s.reaps or s.reaps_before or s.ring_full_exits
                or any(e.kind in ("reaper", "reaper_kick", "flush_begin", "flush_end")
                       for e in timeline.events))
    return DirtyRingEvidence(reaps=s.reaps, pages_reaped=s.pages_reaped,
                             full_exits=s.ring_full_exits, reaps_before_migration=s.reaps_before,
                             pages_resent=pages_resent, trace_events_seen=seen)


def ring_problems(ring: DirtyRingEvidence) -> list[str]:
    """Why the ring evidence does not prove the ring carried the dirty pages
    (an environment problem, not a lost page)."""
    if not ring.trace_events_seen:
        return ["the source QEMU logged no kvm_dirty_ring_* trace event: its trace "
                "backend is not 'log', or the events were renamed; the dirty ring's use "
                "cannot be shown"]
    if ring.pages_reaped == 0:
        return [f"no ring reap collected a page during the migration ({ring.full_exits} "
                f"ring-full exits, {ring.reaps_before_migration} non-empty reaps before it): "
                "the ring did not carry the dirty pages"]
    return []


def stall_detail(s: TimelineSummary) -> str | None:
    """How the ring held a guest that made no progress, from the timeline
    (pure): where it was last harvested and the ring-full exits after that.
    None when the timeline does not show a stalled ring."""
    if s.ring_full_exits == 0:
        return None
    if s.last_reap_s is None:
        return (f"no ring reap collected a page during the migration while its vCPUs took "
                f"{s.ring_full_exits} ring-full exits")
    if s.ring_full_after_last_reap == 0:
        return None
    return (f"the ring was last harvested at +{s.last_reap_s:.2f} s ({s.last_reap_pages} "
            f"pages), then its vCPUs took {s.ring_full_after_last_reap} ring-full exits up "
            "to the VM stop")
