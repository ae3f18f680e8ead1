from pathlib import Path

import numpy as np
import pytest

from qmpctl.core.errors import UsageError
from qmpctl.core.units import PAGE_SIZE, GiB, MiB
from qmpctl.guests.wave import BIG_WAVE_BLOCKS, WaveGuest, big_wave, default_wave, with_hole
from qmpctl.qemu.memmap import RamSegment, ram_segments
from qmpctl.scenario.options import MigrateOptions, big_guest_throttle, build_guest
from qmpctl.verify.classify import WaveClassifier, classify_pages
from qmpctl.verify.compare import differing_pages
from qmpctl.verify.ramimage import RamImage, RamLayout
from qmpctl.verify.wave import (
    WaveParams,
    check_samples,
    check_wave,
    scan_samples,
    wave_samples,
)


def arr(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.uint8)


def test_all_equal_and_one_edge_hold() -> None:
    assert check_samples(arr(5, 5, 5, 5), 1) == (0, None, "no edge (all blocks equal)")
    assert check_samples(arr(6, 6, 5, 5), 1) == (1, None, "one edge")


def test_edge_wraps_modulo_256() -> None:
    assert check_samples(arr(0, 0, 255, 255), 1)[1] is None
    assert check_samples(arr(2, 2, 255), 3)[1] is None


def test_stale_block_is_found() -> None:
    _edges, bad, detail = check_samples(arr(7, 7, 5, 7, 6, 6), 1)
    assert bad == 2
    assert "block 2 holds 0x05 after 0x07" in detail


def test_two_edges_is_a_failure() -> None:
    _edges, bad, _detail = check_samples(arr(7, 6, 6, 7, 6), 1)
    # 7->6 is an edge; 6->7 steps the wrong way: block 3 is newer than its predecessor.
    assert bad == 3


def test_a_page_one_pass_behind_makes_a_second_edge() -> None:
    _edges, bad, _detail = check_samples(arr(6, 6, 5, 6, 5, 5), 1)
    assert bad is not None


def test_params_problems() -> None:
    assert WaveParams(0x200000, 0x400000).problems() == []
    assert WaveParams(0x200001, 0x400000).problems() == [
        "wave start and end must be multiples of the stride"]
    assert "delta 0 must be in 1..255" in WaveParams(0x200000, 0x400000, delta=0).problems()
    assert WaveParams(1 << 30, 3 << 30, stride=1 << 30).problems() == [
        "stride 1073741824 must be at most 268435456 (256 MiB)"]
    assert WaveParams(0x200000, 0x400000).fw_cfg_string() == (
        "start=0x200000 end=0x400000 stride=0x1000 delta=0x1 offset=0x0")


# ---- a wave with a hole, over a RAM file mapped in two segments -------------

# A toy pc: 4 MiB of file, 3 MiB "low" at 0, the last MiB "above 4 GiB" at 8 MiB.
TOY = RamLayout((RamSegment(0, 0, 3 * MiB), RamSegment(8 * MiB, 3 * MiB, MiB)))
HOLED = WaveParams(start=MiB, end=9 * MiB, hole_start=2 * MiB + 512 * 1024, hole_end=8 * MiB)


def toy_ram(value: int, upto_block: int = 0) -> np.ndarray:
    """The toy RAM file as the wave leaves it: blocks before `upto_block` hold value+1."""
    ram = np.zeros(TOY.size, dtype=np.uint8)
    for i in range(HOLED.blocks):
        ram[TOY.offset(HOLED.block_gpa(i))] = value + (i < upto_block)
    return ram


def test_hole_splits_the_wave_into_parts() -> None:
    assert HOLED.parts == ((MiB, 2 * MiB + 512 * 1024), (8 * MiB, 9 * MiB))
    assert HOLED.blocks == 384 + 256
    assert HOLED.block_gpa(383) == 2 * MiB + 512 * 1024 - PAGE_SIZE
    assert HOLED.block_gpa(384) == 8 * MiB
    assert HOLED.fw_cfg_string().endswith(" hole_start=0x280000 hole_end=0x800000")
    assert HOLED.problems() == []
    assert WaveParams(MiB, 9 * MiB, hole_start=8 * MiB, hole_end=2 * MiB).problems()
    assert WaveParams(MiB, 9 * MiB, hole_start=2 * MiB + 8, hole_end=8 * MiB,
                      stride=8).problems() == [
        "wave hole 0x200008-0x800000 must be aligned to pages and to the stride"]


def test_invariant_reads_across_the_hole(tmp_path: Path) -> None:
    path = tmp_path / "ram"
    path.write_bytes(toy_ram(7, upto_block=500).tobytes())  # the edge is above "4 GiB"
    with RamImage(path) as image:
        assert len(wave_samples(image, TOY, HOLED)) == HOLED.blocks
        res = check_wave(image, TOY, HOLED)
    assert res.ok and res.edges == 1 and res.value == 8 and res.blocks == 640
    ram = toy_ram(7, upto_block=500)
    ram[TOY.offset(8 * MiB + 10 * PAGE_SIZE)] = 7  # block 394, above the hole, one pass behind
    path.write_bytes(ram.tobytes())
    with RamImage(path) as image:
        res = check_wave(image, TOY, HOLED)
    # 8 -> 7 reads as the edge; the 8 after it is the first block that cannot be.
    assert not res.ok and res.first_bad_gpa == 8 * MiB + 11 * PAGE_SIZE
    assert res.detail.startswith("block 395 holds 0x08 after 0x07")


def test_scan_in_chunks_matches_one_scan() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        samples = np.repeat(rng.integers(0, 4, 6).astype(np.uint8), rng.integers(1, 5, 6))
        whole = check_samples(samples, 1)
        for size in (1, 2, 3, 7):
            chunks = [samples[i:i + size] for i in range(0, len(samples), size)]
            scan = scan_samples(chunks, 1)
            assert (scan.edges, scan.bad, scan.detail) == whole
            assert scan.blocks == len(samples) and scan.value == samples[0]


def test_classifier_knows_the_hole() -> None:
    src, dst = toy_ram(7, upto_block=500), toy_ram(7, upto_block=390)
    dst[TOY.offset(2 * MiB + 768 * 1024)] = 0x33  # RAM in the wave's hole: not the wave's
    pages = differing_pages(src, dst)
    res = classify_pages(src, dst, pages, TOY, WaveClassifier(HOLED))
    assert res.stale.pages == 110 and res.stale.examples[0] == 8 * MiB + 6 * PAGE_SIZE
    assert res.unexplained.pages == 1 and res.unexplained.examples == [2 * MiB + 768 * 1024]


def test_small_guests_keep_their_default_wave() -> None:
    assert default_wave("x86_64", 160) == WaveParams(2 * MiB, 102 * MiB)
    assert default_wave("x86_64", 2048) == WaveParams(2 * MiB, 102 * MiB)
    assert default_wave("x86_64", 64) == WaveParams(2 * MiB, 48 * MiB)


def test_big_guests_wave_over_most_of_ram_above_4g_too() -> None:
    wave = default_wave("x86_64", 8192)
    layout = RamLayout(ram_segments("x86_64", 8 * GiB))
    assert wave == WaveParams(2 * MiB, 9 * GiB, stride=32 * 1024,
                              hole_start=3 * GiB - 32 * MiB, hole_end=4 * GiB)
    assert wave.problems() == [] and all(layout.covers(a, b) for a, b in wave.parts)
    assert wave.blocks <= BIG_WAVE_BLOCKS and wave.bytes_covered > 7.9 * GiB
    three = default_wave("x86_64", 3072)  # all below 4 GiB: no hole, no paging
    assert (three.start, three.end, three.has_hole) == (2 * MiB, 3 * GiB - 32 * MiB, False)
    assert three.stride == 16 * 1024
    huge = big_wave(RamLayout(ram_segments("x86_64", 1024 * GiB)))
    assert huge.start % huge.stride == 0 and huge.blocks <= BIG_WAVE_BLOCKS


@pytest.mark.parametrize(("start", "end", "hole"), [
    (2 * GiB, 4 * GiB + 256 * MiB, (3 * GiB - 32 * MiB, 4 * GiB)),  # crosses: hole added
    (2 * MiB, 2 * GiB, None),  # below lowmem: untouched
    (4 * GiB, 5 * GiB, None),  # above 4 GiB only
])
def test_a_range_across_the_pci_hole_skips_it(start: int, end: int,
                                              hole: tuple[int, int] | None) -> None:
    layout = RamLayout(ram_segments("x86_64", 4 * GiB))
    wave = with_hole(WaveParams(start, end), layout)
    assert ((wave.hole_start, wave.hole_end) if wave.has_hole else None) == hole


def test_options_build_big_waves() -> None:
    default = build_guest(MigrateOptions(ram=8192), "x86_64", 8192)
    assert isinstance(default, WaveGuest) and default.wave == default_wave("x86_64", 8192)
    assert default.above_4g and default.wave.blocks == 261056
    assert big_guest_throttle(default.wave) == 509  # 1020 MiB dirtied per pass, over 2 s
    assert big_guest_throttle(default_wave("x86_64", 160)) == 64
    crossing = build_guest(MigrateOptions(ram=4096, wave_start=2944, wave_end=4352),
                           "x86_64", 4096)
    assert isinstance(crossing, WaveGuest)
    assert crossing.wave == WaveParams(2944 * MiB, 4352 * MiB, hole_start=3 * GiB - 32 * MiB,
                                       hole_end=4 * GiB)
    crossing.validate()
    below = build_guest(MigrateOptions(ram=4096, wave_end=1024), "x86_64", 4096)
    assert isinstance(below, WaveGuest) and not below.above_4g
    assert below.wave == WaveParams(2 * MiB, GiB)  # 261632 blocks: 4 KiB still fits
    small = build_guest(MigrateOptions(stride=8), "x86_64", 160)
    assert isinstance(small, WaveGuest) and small.wave == WaveParams(2 * MiB, 102 * MiB, 8)
    into_hole = build_guest(MigrateOptions(ram=4096, wave_end=3100), "x86_64", 4096)
    with pytest.raises(UsageError, match=r"must lie in RAM from 0x200000 .*; RAM is "
                                         r"0x0-0xc0000000, 0x100000000-0x140000000"):
        into_hole.validate()
    arm = build_guest(MigrateOptions(arch="aarch64", ram=8192), "aarch64", 8192)
    arm.validate()  # virt's RAM is one piece from 1 GiB: the wave runs to its top
    assert isinstance(arm, WaveGuest)
    assert arm.wave == WaveParams(GiB + 16 * MiB, 9 * GiB - 16 * MiB, 32 * 1024)


def test_big_linux_guests_hold_back_at_their_working_set() -> None:
    """Above 2 GiB a Linux guest's held-back bandwidth resends its working set in
    about 2 s, as for the wave guest; an explicit --throttle stays."""
    from qmpctl.guests.linux import LinuxWorkload
    from qmpctl.host.kvm import KvmInfo
    from qmpctl.scenario.options import resolve

    assert LinuxWorkload(size="25%").size_mib(8192) == 2048
    assert LinuxWorkload(size="1G").size_mib(8192) == 1024
    kvm = KvmInfo(device="/dev/kvm", accessible=False, flavour="none", error="test")
    big = resolve(MigrateOptions(guest="linux", ram=8192, workload_size="25%"), kvm)
    assert big.options.throttle == 1024
    small = resolve(MigrateOptions(guest="linux", ram=1024, workload_size="25%"), kvm)
    assert small.options.throttle == 64
    given = resolve(MigrateOptions(guest="linux", ram=8192, throttle=100), kvm)
    assert given.options.throttle == 100
