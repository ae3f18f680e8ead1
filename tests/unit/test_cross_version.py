"""Cross-version runs: which machine type and CPU both QEMUs share, which
pairs are refused, and how the report says so (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmpctl.core.errors import UsageError
from qmpctl.host.qemu import MachineType, QemuBinary, parse_machine_help
from qmpctl.report.models import RunConfig
from qmpctl.report.text import qemu_line
from qmpctl.scenario.compat import qemu_complaint
from qmpctl.scenario.options import check_ring_support, choose_cpu, choose_machine_type
from tests.unit.test_qemu_binaries import MACHINES_7_2, MACHINES_ARM_10_0

OLD = QemuBinary(Path("/r/.qemu/7.2/usr/bin/qemu-system-x86_64"), (7, 2, 22), "")
NEW = QemuBinary(Path("/usr/bin/qemu-system-x86_64"), (10, 0, 2), "")
NEW_MICRO = QemuBinary(Path("/opt/bin/qemu-system-x86_64"), (10, 0, 3), "")
MACHINES_10_0 = """\
pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-10.0)
pc-i440fx-10.0       Standard PC (i440FX + PIIX, 1996) (default)
pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996)
"""
TYPES = {OLD: parse_machine_help(MACHINES_7_2), NEW: parse_machine_help(MACHINES_10_0)}


def types(b: QemuBinary) -> dict[str, MachineType]:
    return TYPES[b]


def no_types(b: QemuBinary) -> dict[str, MachineType]:
    raise AssertionError("one release on both sides needs no -machine help")


def test_one_release_keeps_the_unversioned_type() -> None:
    assert choose_machine_type("x86_64", NEW, NEW, no_types) == (
        None, "QEMU 10.0 on both sides: its default pc")
    assert choose_machine_type("x86_64", NEW, NEW_MICRO, no_types)[0] is None


@pytest.mark.parametrize(("src", "dst"), [(OLD, NEW), (NEW, OLD)])
def test_two_releases_pin_the_older_ones_type(src: QemuBinary, dst: QemuBinary) -> None:
    machine, why = choose_machine_type("x86_64", src, dst, types)
    assert machine == "pc-i440fx-7.2"
    assert why == (f"QEMU {src.release} -> {dst.release}: pinned to the older QEMU's 'pc' "
                   "(pc-i440fx-7.2), which both offer")


def test_a_newer_qemu_without_the_older_type_is_refused() -> None:
    dropped = {OLD: TYPES[OLD], NEW: parse_machine_help(
        "pc                   Standard PC (alias of pc-i440fx-10.0)\npc-i440fx-10.0   x\n")}
    with pytest.raises(UsageError, match=(
            r"^cannot migrate QEMU 7.2.22 \(.*\) -> QEMU 10.0.2 \(.*\): QEMU 10.0.2 \(.*\) "
            r"does not offer pc-i440fx-7.2 \(the older QEMU's 'pc'\), so no machine type")):
        choose_machine_type("x86_64", OLD, NEW, dropped.__getitem__)


def test_an_older_qemu_without_an_alias_is_refused() -> None:
    bare = {OLD: parse_machine_help("pc-i440fx-7.2   Standard PC\n"), NEW: TYPES[NEW]}
    with pytest.raises(UsageError, match=r"has no 'pc' alias to a versioned type"):
        choose_machine_type("x86_64", NEW, OLD, bare.__getitem__)


def test_deprecated_pinned_type_is_said() -> None:
    arm_old = QemuBinary(Path("/a/qemu-system-aarch64"), (7, 0, 0), "")
    arm_new = QemuBinary(Path("/b/qemu-system-aarch64"), (10, 0, 2), "")
    table = {arm_old: parse_machine_help("virt   QEMU 7.0 ARM (alias of virt-7.0)\n"),
             arm_new: parse_machine_help(MACHINES_ARM_10_0)}
    machine, why = choose_machine_type("aarch64", arm_old, arm_new, table.__getitem__)
    assert machine == "virt-7.0" and why.endswith("; deprecated in QEMU 10.0")


def test_arm_tcg_cross_version_gets_a_named_cpu() -> None:
    both = frozenset({"cortex-a57", "cortex-a72", "max"})
    assert choose_cpu("aarch64", "tcg", OLD, NEW, lambda b: both) == "cortex-a57"
    assert choose_cpu("aarch64", "tcg", NEW, NEW, lambda b: both) is None
    assert choose_cpu("aarch64", "kvm", OLD, NEW, lambda b: both) is None  # -cpu host
    assert choose_cpu("x86_64", "tcg", OLD, NEW, lambda b: both) is None  # qemu64 is versioned
    models = {OLD: frozenset({"cortex-a72", "max"}), NEW: frozenset({"neoverse-n1", "max"})}
    with pytest.raises(UsageError, match=r"offer none of the CPU models cortex-a57, cortex-a72"):
        choose_cpu("aarch64", "tcg", OLD, NEW, models.__getitem__)


def test_arm64_dirty_ring_needs_qemu_8_1() -> None:
    check_ring_support("x86_64", 4096, OLD, NEW)
    check_ring_support("aarch64", 4096, NEW)
    with pytest.raises(UsageError, match=r"^--dirty-ring 4096: QEMU 7.2.22 .* has no dirty "
                                         r"ring on arm64 \(QEMU 8.1 added it"):
        check_ring_support("aarch64", 4096, NEW, OLD)


def test_qemu_complaint_keeps_its_error_lines_only() -> None:
    log = ("2026-11-23T23:32:10.287831Z qemu-system-aarch64: Invalid value 274 expecting "
           "positive value <= 258\n"
           "7462@1795476730.287858:migrate_set_state new state failed\n"
           "2026-11-23T23:32:10.287850Z qemu-system-aarch64: Failed to load "
           "cpu:cpreg_vmstate_array_len\n")
    assert qemu_complaint(log) == (
        "qemu-system-aarch64: Invalid value 274 expecting positive value <= 258 | "
        "qemu-system-aarch64: Failed to load cpu:cpreg_vmstate_array_len")
    assert qemu_complaint("") == "no output"


def config(**kw: object) -> RunConfig:
    base: dict[str, object] = dict(
        arch="x86_64", guest="wave", accel="tcg", accel_reason="requested", dirty_ring_size=0,
        dirty_tracking="tcg", ram_mib=64, smp=1, transport="unix",
        qemu_src="/usr/bin/qemu-system-x86_64", qemu_dst="/usr/bin/qemu-system-x86_64",
        qemu_src_version="10.0.2", qemu_dst_version="10.0.2", workload={}, min_passes=3,
        throttle_bandwidth=1, converge_downtime_ms=1, machine_type="pc")
    base.update(kw)
    return RunConfig.model_validate(base)


def test_summary_names_both_qemus_and_the_machine_type() -> None:
    assert qemu_line(config()) == (
        "qemu: 10.0.2 on both sides (/usr/bin/qemu-system-x86_64); machine pc")
    cross = config(qemu_src=str(OLD.path), qemu_src_version="7.2.22",
                   machine_type="pc-i440fx-7.2", machine_type_reason="why", cpu=None)
    assert qemu_line(cross) == (
        f"qemu: source 7.2.22 ({OLD.path}) -> destination 10.0.2 "
        "(/usr/bin/qemu-system-x86_64); machine pc-i440fx-7.2 (why)")
