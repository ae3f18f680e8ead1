"""The ITS save and the final bitmap sweep read from a source's trace."""

from __future__ import annotations

from datetime import datetime

from qmpctl.verify.sweep import sweep_evidence

LOG = """\
2026-12-02T12:00:00.100000Z kvm_vm_ioctl type 0x4020ae46, arg 0x1
2026-12-02T12:00:01.000000Z runstate_set current_run_state 9 (running) new_state 7 (finish-migrate)
2026-12-02T12:00:01.001000Z kvm_device_ioctl dev fd 14, type 0x4018aee1, arg 0xffff
2026-12-02T12:00:01.002000Z kvm_device_ioctl dev fd 13, type 0x4018aee1, arg 0xffff
2026-12-02T12:00:01.003000Z kvm_vm_ioctl type 0x4010ae42, arg 0xffff
2026-12-02T12:00:01.004000Z kvm_vm_ioctl type 0x4010ae42, arg 0xffff
"""
START = datetime.fromisoformat("2026-12-02T12:00:00+00:00").timestamp()


def test_saves_and_bitmap_reads_after_the_stop_are_counted() -> None:
    start = START
    ev = sweep_evidence(LOG, start, vm_stop_s=1.0)
    assert ev.traced and ev.device_attr_sets_after_stop == 2
    assert ev.dirty_log_reads == ev.dirty_log_reads_after_stop == 2
    assert ev.first_read_after_stop_s is not None and abs(ev.first_read_after_stop_s - 1.003) < 1e-6
    assert "2 KVM_GET_DIRTY_LOG (the backup bitmap's final sweep)" in ev.describe()


def test_no_read_after_the_stop_is_shown_as_such() -> None:
    start = START
    ev = sweep_evidence(LOG, start, vm_stop_s=5.0)
    assert ev.dirty_log_reads == 2 and ev.dirty_log_reads_after_stop == 0
    assert sweep_evidence("", start, 1.0).describe().startswith("not traced")
