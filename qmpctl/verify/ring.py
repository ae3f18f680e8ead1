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
