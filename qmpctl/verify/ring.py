"""Evidence that the KVM dirty ring really carried the dirty pages, from
QEMU's trace events on the source (`-trace kvm_dirty_ring_*`)."""

from __future__ import annotations

import re

from pydantic import BaseModel

RING_TRACE_EVENTS = ("kvm_dirty_ring_reap", "kvm_dirty_ring_full")
_REAP_RE = re.compile(r"kvm_dirty_ring_reap reaped (\d+) pages")


class DirtyRingEvidence(BaseModel):
    """From QEMU's trace events on the source: the ring really carried the pages."""

    reaps: int
    pages_reaped: int
    full_exits: int


def ring_evidence(qemu_log: str) -> DirtyRingEvidence:
    """Sum QEMU's ring trace lines (pure)."""
    reaped = [int(n) for n in _REAP_RE.findall(qemu_log)]
    return DirtyRingEvidence(reaps=len(reaped), pages_reaped=sum(reaped),
                             full_exits=qemu_log.count("kvm_dirty_ring_full"))


def ring_problems(ring: DirtyRingEvidence) -> list[str]:
    """Why the ring evidence does not prove the ring carried the dirty pages
    (an environment problem, not a lost page)."""
    if ring.reaps == 0 and ring.full_exits == 0:
        return ["the source QEMU logged no kvm_dirty_ring_* trace event: its trace "
                "backend is not 'log', or the events were renamed; the dirty ring's use "
                "cannot be shown"]
    if ring.pages_reaped == 0:
        return [f"the dirty rings were full {ring.full_exits} times but no reap collected "
                "a page: the ring did not carry the dirty pages"]
    return []
