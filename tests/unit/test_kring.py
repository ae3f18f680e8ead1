"""The kernel-side ring analysis, on synthetic trace lines."""

from __future__ import annotations

import os
from pathlib import Path

from qmpctl.verify.kring import analyse, explain, parse_kernel, parse_qemu, summary

SIZE = 4


def push(ring: int, dirty: int, reset: int, offset: int, tgid: int = 100,
         slot: int = 1) -> str:
    return (f" qemu-system-x86-{tgid + 1} ({tgid:7d}) [001] ..... 12.5: kvm_dirty_ring_push: "
            f"ring {ring}: dirty 0x{dirty:x} reset 0x{reset:x} slot {slot} offset "
            f"0x{offset:x} (used {(dirty - reset) % 2**32})")


def reset(ring: int, dirty: int, reset_at: int, tgid: int = 100) -> str:
    return (f" qemu-system-x86-{tgid + 2} ({tgid:7d}) [000] ..... 12.6: kvm_dirty_ring_reset: "
            f"ring {ring}: dirty 0x{dirty:x} reset 0x{reset_at:x} (used {dirty - reset_at})")


def page(vcpu: int, fetch: int, offset: int) -> str:
    return f"7@1795460964.1:kvm_dirty_ring_page vcpu {vcpu} fetch {fetch} offset 0x{offset:x}"


SLOTS = ("7@1.0:kvm_set_user_memory AddrSpace#0 Slot#1 flags=0x1 gpa=0x100000 size=0x3f00000 "
         "ua=0x7f0000000000 guest_memfd=-1 guest_memfd_offset=0x0 ret=0")


def test_full_ring_push_overwrites_an_unharvested_entry() -> None:
    # Ring of 4: indices 0..3 pushed, a fifth push (used 5) lands on index 0's
    # position before QEMU harvested it: QEMU reads offset 0x50, not 0x10.
    kernel = [push(0, i + 1, 0, 0x10 * (i + 1)) for i in range(4)] + [push(0, 5, 0, 0x50)]
    qemu = "\n".join([SLOTS, page(0, 0, 0x50)] + [page(0, i, 0x10 * (i + 1)) for i in (1, 2, 3)])
    fetched, slots = parse_qemu(qemu)
    kr = analyse(parse_kernel(kernel, SIZE), fetched, slots, SIZE, "on")
    (v,) = kr.vcpus
    assert (v.pushed, v.harvested, v.over_full_pushes, v.most_in_use, v.overwritten) == (
        5, 4, 1, 5, 1)
    assert v.soft_limit_pushes == 5  # a ring of 4 is past size - 64 from its first entry
    assert kr.overwritten_gpas == [0x100000 + 0x10 * 4096]
    text = explain(kr, [0x100000 + 0x10 * 4096, 0x200000])
    assert text is not None
    assert text.startswith("1 dirty page was pushed onto a full ring and overwritten")
    assert "1 of the 2 differing pages are among them (0x110000)" in text
    # Position 4 (the fifth push) was never harvested: it is named too.
    assert (v.unharvested, kr.unharvested_gpas) == (1, [0x100000 + 0x50 * 4096])
    assert text.endswith("1 pushed entry was never harvested by QEMU; 0 of the 2 differing "
                         "pages are among them")


def test_resets_count_what_they_freed_and_empty_ones() -> None:
    kernel = [push(1, 1, 0, 0x1), push(1, 2, 0, 0x2), reset(1, 2, 2), reset(1, 2, 2),
              "qemu-3 (100) [000] ..... 13.0: kvm_dirty_ring_exit: vcpu 1"]
    fetched, slots = parse_qemu("\n".join([page(1, 0, 0x1), page(1, 1, 0x2)]))
    kr = analyse(parse_kernel(kernel, SIZE), fetched, slots, SIZE, "on")
    (v,) = kr.vcpus
    assert (v.resets, v.reset_freed, v.empty_resets, v.full_exits, v.overwritten) == (
        2, 2, 1, 1, 0)
    assert explain(kr, [0x1000]) is None  # nothing overwritten: no kernel part to name
    assert "resets 2 freeing 2 (1 empty), ring-full exits 1" in summary(kr)


def test_other_processes_are_left_out() -> None:
    kernel = [push(0, 1, 0, 0x1, tgid=100), push(0, 1, 0, 0x9, tgid=555)]
    ring = parse_kernel(kernel, SIZE, tgid=100)[0]
    assert ring.pushed == 1 and ring.first == {0: 1 << 48 | 0x1}


def test_index_wraps_at_32_bits() -> None:
    ring = parse_kernel([push(0, 0, 0xfffffffc, 0x7)], SIZE)[0]
    assert list(ring.first) == [0xffffffff]


def test_off_is_stated() -> None:
    from qmpctl.verify.kring import KernelRing
    assert summary(KernelRing(engaged=False, reason="not root")) == (
        "kernel ring trace: off (not root)")


def test_trace_kernel_option() -> None:
    import pytest

    from qmpctl.core.errors import HostError, UsageError
    from qmpctl.scenario.options import MigrateOptions, kernel_trace

    def never() -> str:
        raise AssertionError("the host need not be asked")

    assert kernel_trace("off", "kvm", 4096, never) == (False, "--trace-kernel off")
    assert kernel_trace("auto", "tcg", 0, never) == (
        False, "--trace-kernel auto: the run does not use KVM's dirty ring")
    with pytest.raises(UsageError, match="does not use KVM's dirty ring"):
        kernel_trace("on", "kvm", 0, never)
    assert kernel_trace("auto", "kvm", 4096, lambda: "not root") == (
        False, "--trace-kernel auto: not root")
    with pytest.raises(HostError, match="--trace-kernel on: not root"):
        kernel_trace("on", "kvm", 4096, lambda: "not root")
    assert kernel_trace("on", "kvm", 4096, lambda: None)[0]
    # Inside a lab auto stays off (nested KVM under TCG: twice the time); on still records.
    assert kernel_trace("auto", "kvm", 4096, never, lab="aarch64") == (
        False, "--trace-kernel auto: inside the aarch64 lab, where tracing doubles a nested "
               "run's time; --trace-kernel on records it")
    assert kernel_trace("on", "kvm", 4096, lambda: None, lab="aarch64")[0]
    with pytest.raises(UsageError, match="--trace-kernel"):
        MigrateOptions.from_kwargs(trace_kernel="maybe")


def test_instances_of_dead_qmpctls_are_swept(tmp_path: Path) -> None:
    from qmpctl.host import ktrace

    instances = tmp_path / "instances"
    dead = instances / f"qmpctl-{2**22 + 7}-0"  # above any pid_max: never running
    alive, other = instances / f"qmpctl-{os.getpid()}-0", instances / "someone-else"
    for d in (dead, alive, other):
        d.mkdir(parents=True)
    assert ktrace.sweep_stale(tmp_path) == [dead]
    assert sorted(p.name for p in instances.iterdir()) == sorted([alive.name, other.name])


def test_soft_limit_is_size_less_the_reserved_entries() -> None:
    # Ring of 128: the soft limit is 64 in use; the push onto 64 is past it.
    ring = parse_kernel([push(0, 64, 0, 0x1), push(0, 65, 0, 0x2)], 128)[0]
    assert (ring.soft, ring.over_full) == (1, 0)


KALLSYMS = """ffffffff812785a0 T __traceiter_kvm_dirty_ring_push
ffffffff81278630 T __traceiter_kvm_dirty_ring_reset
ffffffff81278680 T __probestub_kvm_dirty_ring_reset
ffffffffc0a01000 d __tracepoint_kvm_dirty_ring_exit\t[kvm]
"""


def test_tracepoints_are_read_from_kallsyms_without_mounting_tracefs(tmp_path: Path) -> None:
    """tracefs unmounted (no instances/): the symbol table answers; nothing is mounted."""
    from qmpctl.host import ktrace

    assert ktrace.tracepoint_symbols(KALLSYMS) == {
        "kvm_dirty_ring_push", "kvm_dirty_ring_reset", "kvm_dirty_ring_exit"}
    if os.geteuid() != 0:
        return  # unavailable() says "not root" first; the parsing above is the pure part
    root = tmp_path / "tracing"
    root.mkdir()
    syms = tmp_path / "kallsyms"
    syms.write_text(KALLSYMS)
    assert ktrace.unavailable(("kvm_dirty_ring_push", "kvm_dirty_ring_exit"), root,
                              syms) is None
    assert ktrace.unavailable(("kvm_dirty_ring_push", "kvm_dirty_ring_full"), root, syms) == (
        "the kernel has no kvm:kvm_dirty_ring_full tracepoint")
    assert list(root.iterdir()) == []  # nothing mounted, nothing made


def test_a_mounted_tracefs_answers_from_its_events(tmp_path: Path) -> None:
    from qmpctl.host import ktrace

    if os.geteuid() != 0:
        return
    root = tmp_path / "tracing"
    (root / "instances").mkdir(parents=True)
    (root / "events" / "kvm" / "kvm_dirty_ring_push").mkdir(parents=True)
    empty = tmp_path / "kallsyms"
    empty.write_text("")
    assert ktrace.unavailable(("kvm_dirty_ring_push",), root, empty) is None
    assert ktrace.unavailable(("kvm_dirty_ring_push", "kvm_dirty_ring_reset"), root,
                              empty) == "the kernel has no kvm:kvm_dirty_ring_reset tracepoint"
