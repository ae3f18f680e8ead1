"""A foreign kernel: its handshake, its own verdict, its ITS tables from the
GIC's registers, and the options that belong to it (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmpctl.core.errors import ExitCode, UsageError
from qmpctl.guests.gic import (
    decode_baser,
    decode_cbaser,
    decode_pendbaser,
    decode_propbaser,
    its_arch_rev,
    parse_xp,
)
from qmpctl.guests.kernel import KernelGuest, guest_result, migration_request
from qmpctl.migration.models import MigrationStats
from qmpctl.qemu.console import parse_console
from qmpctl.report.models import Hop, RunReport
from qmpctl.report.verdict import conclude
from qmpctl.scenario.options import MigrateOptions, option_problems
from qmpctl.verify.compare import MemoryVerdict

KUT_PASS = """\
INFO: its-migration: Migration complete
PASS: its-migration: mapped: expected=9 got=9
SUMMARY: 1 tests
EXIT: STATUS=1
""".splitlines()


def test_the_console_keeps_every_line_but_bare_pass_markers() -> None:
    view = parse_console(b"QMPCTL ready a=1\nhello\nBBB\nBBNow migrate the VM (quiet)\n")
    assert view.lines == ["QMPCTL ready a=1", "hello", "BBNow migrate the VM (quiet)"]
    assert view.passes == 3 and [r.kind for r in view.records] == ["ready"]


@pytest.mark.parametrize("line", [
    "Now migrate the VM, then press a key to continue...",
    "Now migrate the VM (quiet)", "BBBNow migrate the VM, then press a key to continue...",
    "Begin continuous migration", "Skipped VM migration (quiet)"])
def test_kvm_unit_tests_requests_are_recognised(line: str) -> None:
    assert migration_request(["boot", line]) == line


def test_no_request_in_ordinary_output() -> None:
    assert migration_request(["PASS: x", "please migrate me"]) is None


def test_pass_summary_and_exit_status_one_is_a_pass() -> None:
    res = guest_result(KUT_PASS, 0, promised=True, requests=1)
    assert (res.status, res.passed, res.failed, res.exit_status) == ("PASS", 1, 0, 1)


def test_a_fail_line_is_a_failure_even_with_a_good_exit() -> None:
    res = guest_result(["PASS: a", "FAIL: its: pending: expected=8 got=7", "EXIT: STATUS=1"],
                       0, promised=True, requests=2)
    assert res.status == "FAIL" and res.failures == ["FAIL: its: pending: expected=8 got=7"]


@pytest.mark.parametrize(("qemu_exit", "status"), [(3, "FAIL"), (1, "PASS"), (155, "SKIP"),
                                                   (0, "NO-RESULT"), (None, "NO-RESULT")])
def test_the_test_device_exit_code_decides_after_the_summary(qemu_exit: int | None,
                                                             status: str) -> None:
    """isa-debug-exit / chr-testdev: QEMU exits with (code << 1) | 1."""
    lines = ["SUMMARY: 3 tests"]
    assert guest_result(lines, qemu_exit, promised=True, requests=1).status == status


def test_a_qemu_error_exit_without_a_summary_is_never_a_pass() -> None:
    """QEMU exits 1 on its own errors too: without the guest's SUMMARY it proves nothing."""
    assert guest_result([], 1, promised=True, requests=1).status == "NO-RESULT"


def test_a_guest_that_promised_nothing_has_no_verdict() -> None:
    assert guest_result(["hello"], None, promised=False, requests=1).status == "NONE"


# Values read from QEMU 10.0's emulated ITS with guestload's arm64 guest.
def test_its_registers_decode_to_the_tables_the_guest_programmed() -> None:
    cmdq = decode_cbaser(0xb8000000402f040f)
    dev = decode_baser(0, 0xb9070000402d0600)
    coll = decode_baser(1, 0xbc070000402e0600)
    prop = decode_propbaser(0x4024078d)
    pend = decode_pendbaser(1, 0x4000000040260780, 0x4024078d)
    assert cmdq is not None and (cmdq.name, cmdq.base, cmdq.size) == ("its-cmdq", 0x402f0000,
                                                                      0x10000)
    assert dev is not None and (dev.name, dev.base, dev.size) == ("its-device", 0x402d0000,
                                                                  0x10000)
    assert coll is not None and coll.name == "its-collection" and "GITS_BASER1" in coll.located_by
    assert prop is not None and (prop.name, prop.base, prop.size) == ("lpi-prop", 0x40240000,
                                                                      0x2000)
    assert pend is not None and (pend.name, pend.base, pend.size) == ("lpi-pend-cpu1",
                                                                      0x40260000, 0x800)


def test_invalid_registers_locate_nothing() -> None:
    assert decode_baser(2, 0) is None and decode_cbaser(0x402f040f) is None
    assert decode_propbaser(0x40240000 | 12) is None  # 13 ID bits: no LPIs
    assert its_arch_rev(0x3b) == 3 and its_arch_rev(0) == 0


def test_xp_output_is_parsed() -> None:
    text = ("0000000008080100: 0xb9070000402d0600 0xbc070000402e0600\n"
            "0000000008080110: 0x0000000000000000 0x0000000000000000\n")
    assert parse_xp(text) == [0xb9070000402d0600, 0xbc070000402e0600, 0, 0]


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"guest": "linux", "wave_end": 40}, "--wave-end applies only to --guest baremetal"),
    ({"guest": "baremetal", "workload": "random"}, "--workload applies only to --guest linux"),
    ({"guest": "baremetal", "handshake": "none"}, "--handshake applies only to --guest kernel"),
    ({"guest": "kernel"}, "--guest kernel needs --kernel FILE"),
])
def test_options_for_another_guest_are_refused(kwargs: dict[str, object], problem: str) -> None:
    problems = option_problems(MigrateOptions.from_kwargs(**kwargs))
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"handshake": "line"}, "--handshake line needs --ready-line"),
    ({"handshake": "none"}, "--handshake none needs --migrate-after"),
    ({"ready_line": "x"}, "--ready-line applies only to --handshake line"),
    ({"handshake": "line", "ready_line": "("}, "--ready-line '('"),
    ({"machine_opts": ("gic-version",)}, "expected KEY=VALUE"),
    ({"machine_opts": ("max-ram-below-4g=2G",)}, "this would move it"),
])
def test_kernel_guest_options_are_checked(kwargs: dict[str, object], problem: str,
                                          tmp_path: Path) -> None:
    image = tmp_path / "k.flat"
    image.write_bytes(b"\0")
    with pytest.raises(UsageError, match=problem.replace("(", r"\(")):
        KernelGuest("aarch64", 256, image, **kwargs).validate()  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="no such file"):
        KernelGuest("aarch64", 256, tmp_path / "missing").validate()


def _memory(differing: int) -> MemoryVerdict:
    return MemoryVerdict(bytes_compared=4 << 12, pages_total=4, pages_compared=4,
                         pages_excluded=0, pages_differing=differing, exclusions=[],
                         mismatches=[], seconds=0.1, gib_per_s=1.0)


def _report(**extra: object) -> RunReport:
    rep = RunReport(qmpctl_version="t", started_at="t", verdict="verified", exit_code=0,
                    migration=MigrationStats(status="completed", passes=5, pages_resent=9),
                    memory=_memory(0))
    for key, value in extra.items():
        setattr(rep, key, value)
    return rep


def test_a_guest_fail_makes_a_verified_run_guest_failed() -> None:
    rep = _report(guest_result=guest_result(["FAIL: x"], None, promised=True, requests=1))
    conclude(rep)
    assert (rep.verdict, rep.exit_code) == ("guest-failed", ExitCode.GUEST_FAILED)
    assert rep.error is not None and "FAIL: x" in rep.error


def test_a_difference_in_an_earlier_migration_is_a_mismatch() -> None:
    rep = _report(hops=[Hop(number=1, source="src", destination="dst", memory=_memory(1),
                            migration=MigrationStats(status="completed", passes=5,
                                                     pages_resent=9))])
    assert rep.hops[0].found_difference and rep.losses()[0].migration == 1
    conclude(rep)
    assert rep.verdict == "mismatch"


def test_every_migration_must_prove_dirty_tracking() -> None:
    rep = _report(hops=[Hop(number=1, source="src", destination="dst", memory=_memory(0),
                            migration=MigrationStats(status="completed", passes=5,
                                                     pages_resent=9))],
                  migration=MigrationStats(status="completed", passes=5, pages_resent=0))
    conclude(rep)
    assert rep.verdict == "inconclusive"
    assert rep.inconclusive == ["migration 2: no page was sent twice: no dirty page was ever "
                                "re-sent"]

