"""Cross-version migrations between Debian 12's own QEMU 7.2 (unpacked by
set-up into .qemu/7.2) and the system QEMU 10.0, real binaries under TCG.

x86_64 precopy verifies both ways on the pinned `pc-i440fx-7.2`. arm64 does
not migrate between these two releases at all (the CPU's register list
differs, even for a named model), and qmpctl must refuse that pair before the
guest starts, in QEMU's own words.
"""

from __future__ import annotations

from typing import Any

import pytest

from qmpctl.host.qemu import known_qemus, qemu_dir, select_version
from qmpctl.report.text import summary_lines
from qmpctl.scenario.options import MigrateOptions
from qmpctl.scenario.runner import run
from qmpctl.testing import ExitCode, MigrateFn, RunReport, assert_verified
from tests.conftest import our_qemu_processes

pytestmark = pytest.mark.qemu

SMALL = dict(accel="tcg", ram=64, timeout=120.0)
OLD, NEW = "7.2", "10.0"


def missing(arch: str) -> str | None:
    """Why a cross-version test of `arch` cannot run here, or None."""
    known = known_qemus(arch)  # type: ignore[arg-type]
    if select_version(NEW, known) is None:
        return f"no QEMU {NEW} for {arch}: the system QEMU from bookworm-backports is missing"
    if select_version(OLD, known) is None:
        return (f"no QEMU {OLD} for {arch} in {qemu_dir()}/*/usr/bin: `./bootstrap setup` "
                "as root unpacks Debian 12's own 7.2 there (tools/install-bookworm-qemu.sh)")
    return None


def needs_both(arch: str) -> pytest.MarkDecorator:
    reason = missing(arch)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


async def migrate(qmpctl_migrate: MigrateFn, **kw: Any) -> RunReport:
    report = await qmpctl_migrate(**{**SMALL, **kw})
    assert our_qemu_processes() == [], "a QEMU of this run survived it"
    return report


@needs_both("x86_64")
@pytest.mark.parametrize(("src", "dst"), [(OLD, NEW), (NEW, OLD)], ids=["7.2-to-10.0",
                                                                       "10.0-to-7.2"])
async def test_x86_precopy_between_releases_verifies(qmpctl_migrate: MigrateFn, src: str,
                                                     dst: str) -> None:
    rep = await migrate(qmpctl_migrate, qemu_src=src, qemu_dst=dst, wave_end=18)
    assert_verified(rep)
    c, m, v = rep.config, rep.migration, rep.memory
    assert c is not None and m is not None and v is not None
    assert c.qemu_src_version.startswith(src + ".") and c.qemu_dst_version.startswith(dst + ".")
    assert c.qemu_src != c.qemu_dst
    assert c.machine_type == "pc-i440fx-7.2" and c.cpu is None
    assert c.machine_type_reason == (f"QEMU {src} -> {dst}: pinned to the older QEMU's 'pc' "
                                     "(pc-i440fx-7.2), which both offer")
    assert m.passes >= 3 and m.pages_resent > 0 and not m.workload_stalled
    assert v.pages_compared == v.pages_total == 64 * 256 and v.pages_differing == 0
    assert [g.name for g in rep.guest_checks if not g.ok] == []
    assert "cross_version_probe" in rep.timings_s
    # 7.2's `info ramblock` has no host addresses: its firmware blocks are
    # listed as not compared, saying which side, never silently dropped.
    old_side = "source" if src == OLD else "destination"
    others = [b for b in rep.ramblocks if b.name != "ram0"]
    assert {b.name for b in others} >= {"pc.bios", "pc.rom"}
    assert all(not b.compared and f"of the {old_side} QEMU lists no host addresses" in b.reason
               for b in others), others
    line = next(s for s in summary_lines(rep) if s.startswith("qemu: "))
    assert (f"qemu: source {c.qemu_src_version} ({c.qemu_src}) -> destination "
            f"{c.qemu_dst_version} ({c.qemu_dst}); machine pc-i440fx-7.2") in line


@needs_both("aarch64")
@pytest.mark.parametrize(("src", "dst"), [(OLD, NEW), (NEW, OLD)], ids=["7.2-to-10.0",
                                                                       "10.0-to-7.2"])
async def test_arm64_pair_is_refused_before_the_guest_starts(src: str, dst: str) -> None:
    """Measured here: the ITS guest on virt-7.2 with -cpu cortex-a57 (max is no
    better) does not load across 7.2 <-> 10.0 (`device 'cpu'`: 10.0 sends 274
    CPU registers where 7.2 takes at most 258, and 7.2's are refused by 10.0).
    (Not through the plugin, which fails a test on any usage error.)"""
    rep = await run(MigrateOptions(arch="aarch64", qemu_src=src, qemu_dst=dst, wave_end=32,
                                   **SMALL))
    assert our_qemu_processes() == []
    assert (rep.verdict, rep.exit_code) == ("usage-error", ExitCode.USAGE), rep.error
    assert rep.error is not None
    assert "cannot migrate this machine (virt-7.2, -cpu cortex-a57)" in rep.error
    assert "device 'cpu'" in rep.error
    assert rep.boot_s is None and rep.migration is None  # no guest ever started
    assert rep.config is not None and rep.config.machine_type == "virt-7.2"
