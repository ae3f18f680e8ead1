import pytest

from qmpctl.core.errors import UsageError
from qmpctl.host.kvm import KvmInfo
from qmpctl.scenario.options import choose_accel


def kvm(accessible: bool, flavour: str, api_version: int | None = None,
        caps: dict[str, int] | None = None, error: str | None = None) -> KvmInfo:
    return KvmInfo(device="/dev/kvm", accessible=accessible, flavour=flavour,  # type: ignore[arg-type]
                   api_version=api_version, caps=caps or {}, error=error)

PVM = kvm(True, "pvm", api_version=12,
          caps={"dirty-log-ring": 1 << 20, "dirty-log-ring-acq-rel": 1 << 20,
                "dirty-log-ring-with-bitmap": 0, "manual-dirty-log-protect2": 3})
NOKVM = kvm(False, "none", error="/dev/kvm: No such file or directory")


def test_ring_max_entries_from_bytes() -> None:
    assert PVM.dirty_ring_max_entries == 65536
    assert not PVM.has_ring_with_bitmap
    arm = kvm(True, "arm64", api_version=12, caps={"dirty-log-ring-acq-rel": 1 << 16})
    assert arm.dirty_ring_max_entries == 4096


def test_pvm_cannot_run_64bit_guests() -> None:
    assert PVM.runs_64bit_guests is False
    assert kvm(True, "vmx").runs_64bit_guests is True
    assert kvm(True, "unknown").runs_64bit_guests is None


def test_auto_accel_prefers_kvm_for_32bit_guest() -> None:
    assert choose_accel("auto", "x86_64", PVM, needs_64bit=False) == (
        "kvm", "auto: KVM can run this guest")


def test_auto_accel_falls_back_to_tcg_and_says_why() -> None:
    accel, why = choose_accel("auto", "x86_64", PVM, needs_64bit=True)
    assert accel == "tcg"
    assert why == "auto: this host's KVM (pvm) cannot run 64-bit guests"
    accel, why = choose_accel("auto", "x86_64", NOKVM, needs_64bit=False)
    assert (accel, why) == ("tcg", "auto: KVM unavailable (/dev/kvm: No such file or directory)")


def test_kvm_requested_where_there_is_none() -> None:
    with pytest.raises(UsageError, match=r"^--accel kvm: KVM unavailable \(/dev/kvm: No such"):
        choose_accel("kvm", "x86_64", NOKVM, needs_64bit=False)


def test_arm64_kvm_ring_without_bitmap_is_refused_unless_forced() -> None:
    from qmpctl.scenario.options import ITS_RING_NEEDS_BITMAP, ring_safety

    arm_no_bitmap = kvm(True, "arm64", api_version=12, caps={"dirty-log-ring-acq-rel": 1 << 20})
    with pytest.raises(UsageError, match=r"^--dirty-ring 4096: arm64 with the in-kernel ITS"):
        ring_safety("aarch64", "kvm", 4096, arm_no_bitmap, force=False)
    assert ring_safety("aarch64", "kvm", 4096, arm_no_bitmap, force=True) == (
        ITS_RING_NEEDS_BITMAP,)
    arm_bitmap = kvm(True, "arm64", api_version=12, caps={"dirty-log-ring-acq-rel": 1 << 20,
                                                         "dirty-log-ring-with-bitmap": 1})
    assert ring_safety("aarch64", "kvm", 4096, arm_bitmap, force=False) == ()
    assert ring_safety("aarch64", "kvm", 0, arm_no_bitmap, force=False) == ()
    assert ring_safety("x86_64", "kvm", 4096, PVM, force=False) == ()


def test_pae_guest_needs_a_kvm_that_pages_32bit_guests() -> None:
    assert PVM.runs_pae_guests is False and kvm(True, "vmx").runs_pae_guests is True
    accel, why = choose_accel("auto", "x86_64", PVM, needs_64bit=False, needs_pae=True)
    assert accel == "tcg" and why.startswith("auto: this host's KVM (pvm) resets a 32-bit "
                                             "guest that turns on PAE paging")
    with pytest.raises(UsageError, match=r"^--accel kvm: this host's KVM \(pvm\) resets"):
        choose_accel("kvm", "x86_64", PVM, needs_64bit=False, needs_pae=True)
    assert choose_accel("kvm", "x86_64", kvm(True, "svm"), needs_64bit=False,
                        needs_pae=True) == ("kvm", "requested")
