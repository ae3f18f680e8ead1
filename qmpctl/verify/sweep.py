"""The ITS save and the final dirty-bitmap sweep, as the source QEMU's own
trace shows them (pure).

On an arm64 KVM host QEMU's VM-stop handlers ask KVM to write the ITS tables
and the LPI pending tables into guest RAM (KVM_DEV_ARM_ITS_SAVE_TABLES,
KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES: KVM_SET_DEVICE_ATTR ioctls, traced as
`kvm_device_ioctl type 0x4018aee1`). No vCPU runs then, so with the dirty
ring those writes are logged in the ring's backup bitmap only, which QEMU
reads with KVM_GET_DIRTY_LOG (`kvm_vm_ioctl type 0x4010ae42`) in the
migration's last stage alone (`kvm_log_sync_global(last_stage=true)`).
Seeing both after the VM stop, before completion, is the evidence that the
save happened and that the sweep that carries it ran.
"""

from __future__ import annotations

import re

from pydantic import Field

from ..core.model import Model
from .timeline import trace_lines

SWEEP_TRACE_EVENTS: tuple[str, ...] = ("kvm_vm_ioctl", "kvm_device_ioctl")
KVM_SET_DEVICE_ATTR = 0x4018AEE1  # _IOW(KVMIO, 0xe1, struct kvm_device_attr)
KVM_GET_DIRTY_LOG = 0x4010AE42  # _IOW(KVMIO, 0x42, struct kvm_dirty_log)

_TYPE = re.compile(r"type 0x([0-9a-fA-F]+)")


class SweepEvidence(Model):
    """KVM ioctls around the source's VM stop, from its trace."""

    vm_stop_s: float | None = Field(description="VM stop, seconds after the migration started")
    device_attr_sets_after_stop: int = Field(
        description="KVM_SET_DEVICE_ATTR after the stop: the ITS and pending-table saves")
    dirty_log_reads: int = Field(description="KVM_GET_DIRTY_LOG in the whole trace")
    dirty_log_reads_after_stop: int = Field(
        description="KVM_GET_DIRTY_LOG after the stop: the final sweep of the backup bitmap")
    first_read_after_stop_s: float | None = None
    traced: bool = Field(description="the source traced kvm_vm_ioctl at all")

    def describe(self) -> str:
        if not self.traced:
            return "not traced (no kvm_vm_ioctl event in the source's log)"
        if self.vm_stop_s is None:
            return "no VM stop traced"
        at = ("" if self.first_read_after_stop_s is None
              else f", the first at +{self.first_read_after_stop_s:.3f} s")
        return (f"VM stopped at +{self.vm_stop_s:.3f} s; after it "
                f"{self.device_attr_sets_after_stop} KVM_SET_DEVICE_ATTR (the ITS and "
                f"pending-table saves) and "
                f"{self.dirty_log_reads_after_stop} KVM_GET_DIRTY_LOG (the backup bitmap's "
                f"final sweep){at}; {self.dirty_log_reads} KVM_GET_DIRTY_LOG in the whole run")


def sweep_evidence(log: str, start_wall: float, vm_stop_s: float | None,
                   end_wall: float | None = None) -> SweepEvidence:
    """What the source's trace shows of the save and the sweep (pure)."""
    calls = [(wall - start_wall, event, int(m[1], 16))
             for wall, event, args in trace_lines(log, SWEEP_TRACE_EVENTS)
             if (m := _TYPE.search(args)) is not None]
    end_s = None if end_wall is None else end_wall - start_wall
    after = [(t, ev, typ) for t, ev, typ in calls
             if vm_stop_s is not None and t >= vm_stop_s and (end_s is None or t <= end_s)]
    reads_after = [t for t, ev, typ in after if ev == "kvm_vm_ioctl" and typ == KVM_GET_DIRTY_LOG]
    return SweepEvidence(
        vm_stop_s=vm_stop_s,
        device_attr_sets_after_stop=sum(1 for _, ev, typ in after
                                        if ev == "kvm_device_ioctl"
                                        and typ == KVM_SET_DEVICE_ATTR),
        dirty_log_reads=sum(1 for _, ev, typ in calls
                            if ev == "kvm_vm_ioctl" and typ == KVM_GET_DIRTY_LOG),
        dirty_log_reads_after_stop=len(reads_after),
        first_read_after_stop_s=reads_after[0] if reads_after else None,
        traced=any(ev == "kvm_vm_ioctl" for _, ev, _ in calls))
