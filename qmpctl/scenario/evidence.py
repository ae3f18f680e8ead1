"""Evidence checks that turn measurements into report checks."""

from __future__ import annotations

from ..guests.base import GuestCheck
from ..verify.ring import DirtyRingEvidence


def ring_check(ring: DirtyRingEvidence) -> GuestCheck:
    """The dirty ring must really have carried pages during the migration."""
    return GuestCheck(
        name="dirty-ring-harvested", stage="source, during migration",
        ok=ring.pages_reaped > 0,
        detail=f"{ring.pages_reaped} pages reaped from the rings in {ring.reaps} reaps, "
               f"{ring.full_exits} ring-full exits (QEMU trace kvm_dirty_ring_reap/full)")
