from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qmpctl.core.errors import UsageError
from qmpctl.core.units import PAGE_SIZE, GiB, MiB
from qmpctl.guests import wave as wave_guest
from qmpctl.guests.its import ItsGuest
from qmpctl.guests.wave import (
    BIG_WAVE_BLOCKS,
    WaveGuest,
    big_wave,
    default_wave,
    with_hole,
    writer_passes,
    writers_check,
)
from qmpctl.qemu.console import ConsoleView, parse_record
from qmpctl.qemu.memmap import RamSegment, ram_segments
from qmpctl.scenario.options import (
    MigrateOptions,
    big_guest_throttle,
    build_guest,
    option_problems,
    writers_problem,
)
from qmpctl.verify.classify import WaveClassifier, classify_pages
from qmpctl.verify.compare import differing_pages
from qmpctl.verify.ramimage import RamImage, RamLayout
from qmpctl.verify.wave import (
    WaveParams,
    check_samples,
    check_wave,
    scan_samples,
    slice_params,
    wave_samples,
    wave_slices,
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
    # 6 6 5 | 6 5 5: block 3 went back to the older pass's 6 after 5, a
    # second edge, and it is the block named, with both values.
    edges, bad, detail = check_samples(arr(6, 6, 5, 6, 5, 5), 1)
    assert (edges, bad) == (3, 3)
    assert detail == "block 3 holds 0x06 after 0x05: not equal and not one step of 1 behind"
    assert check_samples(arr(6, 6, 5, 5, 5, 5), 1) == (1, None, "one edge")  # the same, whole


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
    assert default_wave("x86_64", 64) == WaveParams(2 * MiB, 32 * MiB)  # RAM - 32 MiB


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
    assert big.throttle == 1024 and big.options.throttle is None
    small = resolve(MigrateOptions(guest="linux", ram=1024, workload_size="25%"), kvm)
    assert small.throttle == 64
    given = resolve(MigrateOptions(guest="linux", ram=8192, throttle=100), kvm)
    assert given.throttle == 100


# ---- several writers: one slice per vCPU -------------------------------------


def test_slices_split_whole_blocks_remainder_last() -> None:
    assert wave_slices(10, 1) == [(0, 10)]
    assert wave_slices(10, 4) == [(0, 2), (2, 4), (4, 7), (7, 10)]
    assert wave_slices(8, 4) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert wave_slices(3, 3) == [(0, 1), (1, 2), (2, 3)]
    for blocks in range(1, 40):
        for n in range(1, min(blocks, 8) + 1):
            cuts = wave_slices(blocks, n)
            assert cuts[0][0] == 0 and cuts[-1][1] == blocks
            assert all(a[1] == b[0] for a, b in pairwise(cuts))
            sizes = [e - s for s, e in cuts]
            assert sizes == sorted(sizes) and sizes[-1] - sizes[0] <= 1
    with pytest.raises(ValueError):
        wave_slices(3, 4)


def test_guest_c_split_is_the_same() -> None:
    """wave.c's compute_slices, transcribed: q = B / N, r = B % N, slice i is
    q blocks plus one when i >= N - r."""
    for blocks in (25600, 25601, 25602, 25603, 7, 9):
        for n in range(1, min(blocks, 8) + 1):
            q, r = divmod(blocks, n)
            first, c_side = 0, []
            for i in range(n):
                length = q + (1 if i >= n - r else 0)
                c_side.append((first, first + length))
                first += length
            assert c_side == wave_slices(blocks, n)


SMALL = WaveParams(start=MiB, end=MiB + 16 * PAGE_SIZE)  # 16 blocks
SMALL_LAYOUT = RamLayout((RamSegment(0, 0, 2 * MiB),))


def small_image(tmp_path: Path, counters: list[int]) -> Path:
    ram = np.zeros(SMALL_LAYOUT.size, dtype=np.uint8)
    for i, v in enumerate(counters):
        ram[SMALL_LAYOUT.offset(SMALL.block_gpa(i))] = v
    path = tmp_path / "ram"
    path.write_bytes(ram.tobytes())
    return path


def test_each_slice_has_its_own_edge(tmp_path: Path) -> None:
    # 4 writers of 4 blocks, several passes apart: one edge in each slice.
    counters = [9, 8, 8, 8, 3, 3, 3, 3, 21, 21, 20, 20, 5, 5, 5, 4]
    with RamImage(small_image(tmp_path, counters)) as image:
        res = check_wave(image, SMALL_LAYOUT, SMALL, writers=4)
        one = check_wave(image, SMALL_LAYOUT, SMALL)
    assert res.ok and res.edges == 3 and [s.value for s in res.slices] == [9, 3, 21, 5]
    assert [(s.first, s.blocks, s.edges) for s in res.slices] == [
        (0, 4, 1), (4, 4, 0), (8, 4, 1), (12, 4, 1)]
    assert res.detail == ("4 slices, at most one edge each; edges 1,0,1,1, "
                          "values 0x09,0x03,0x15,0x05")
    assert not one.ok  # read as one writer's wave, the slices' steps are wrong


def test_two_edges_within_one_slice_fail(tmp_path: Path) -> None:
    # Slice 2 (blocks 8-11) steps down twice: 21 20 20 19 is one pass too many.
    counters = [9, 8, 8, 8, 3, 3, 3, 3, 21, 20, 20, 19, 5, 5, 5, 4]
    with RamImage(small_image(tmp_path, counters)) as image:
        res = check_wave(image, SMALL_LAYOUT, SMALL, writers=4)
    assert not res.ok and [s.bad for s in res.slices] == [None, None, 11, None]
    assert res.first_bad_gpa == SMALL.block_gpa(11)
    assert res.detail.startswith("slice 2 of 4 (blocks 8-11): 2 edges, at most one allowed")


def test_a_stale_block_in_a_slice_fails(tmp_path: Path) -> None:
    counters = [9, 8, 8, 8, 3, 2, 3, 3, 21, 21, 20, 20, 5, 5, 5, 4]
    with RamImage(small_image(tmp_path, counters)) as image:
        res = check_wave(image, SMALL_LAYOUT, SMALL, writers=4)
    assert not res.ok and res.slices[1].bad == 6
    assert "block 2 holds 0x03 after 0x02" in res.slices[1].detail


def test_slices_across_a_hole() -> None:
    half = slice_params(HOLED, 320, 640)  # the second half: 64 blocks low, 256 high
    assert (half.start, half.end, half.has_hole) == (HOLED.block_gpa(320), 9 * MiB, True)
    low = slice_params(HOLED, 0, 320)
    assert (low.start, low.end, low.has_hole) == (MiB, HOLED.block_gpa(320), False)


def test_classifier_counts_passes_of_each_slice_writer() -> None:
    """The classifier compares a counter with itself on both sides: k passes
    behind is k passes of the writer of that counter's slice, whatever the
    other slices hold."""
    src = np.zeros(SMALL_LAYOUT.size, dtype=np.uint8)
    for i, v in enumerate([9, 8, 8, 8, 3, 3, 3, 3, 21, 21, 20, 20, 5, 5, 5, 4]):
        src[SMALL_LAYOUT.offset(SMALL.block_gpa(i))] = v
    dst = src.copy()
    dst[SMALL_LAYOUT.offset(SMALL.block_gpa(5))] = 1  # 2 passes behind (slice 1)
    dst[SMALL_LAYOUT.offset(SMALL.block_gpa(9))] = 20  # 1 pass behind (slice 2)
    res = classify_pages(src, dst, differing_pages(src, dst), SMALL_LAYOUT,
                         WaveClassifier(SMALL))
    assert res.stale.pages == 2 and res.stale.steps == {"1": 1, "2": 1}


def test_smp_wave_guest_params_and_refusals() -> None:
    guest = build_guest(MigrateOptions(smp=4), "x86_64", 160)
    assert isinstance(guest, WaveGuest) and guest.writers == 4
    guest.validate()
    assert guest.fw_cfg()[0][1].endswith(" offset=0x0 cpus=4")
    assert guest.workload_summary()["writers"] == 4
    one = build_guest(MigrateOptions(), "x86_64", 160)
    assert one.fw_cfg()[0][1].endswith(" offset=0x0")  # unchanged for one writer
    big = build_guest(MigrateOptions(ram=8192, smp=2), "x86_64", 8192)
    with pytest.raises(UsageError, match=r"--smp 2: one wave writer per vCPU needs a wave "
                                         r"below 4 GiB without a hole"):
        big.validate()
    below = build_guest(MigrateOptions(ram=8192, smp=8, wave_end=1024), "x86_64", 8192)
    below.validate()
    tiny = build_guest(MigrateOptions(smp=8, wave_start=2, wave_end=2, stride=PAGE_SIZE),
                       "x86_64", 160)
    with pytest.raises(UsageError):
        tiny.validate()
    arm = build_guest(MigrateOptions(arch="aarch64", smp=4), "aarch64", 1024)
    assert isinstance(arm, WaveGuest) and arm.writers == 1


def test_arm64_writers_params_and_refusals() -> None:
    """--writers N on the arm64 ITS guest: vCPUs 1..N write, so --smp
    defaults to N + 1 and may not be less; the guest is told `writers=N`
    (nothing new for one writer); x86 takes its writers from --smp."""
    arm = build_guest(MigrateOptions(arch="aarch64", writers=3), "aarch64", 64)
    assert isinstance(arm, ItsGuest) and (arm.writers, arm.smp) == (3, 4)
    arm.validate()
    assert arm.fw_cfg()[0][1].endswith(" offset=0x0 writers=3")
    assert arm.workload_summary()["writers"] == 3
    one = build_guest(MigrateOptions(arch="aarch64"), "aarch64", 64)
    assert isinstance(one, ItsGuest) and (one.writers, one.smp) == (1, 2)
    assert one.fw_cfg()[0][1].endswith(" offset=0x0")  # as before
    wide = build_guest(MigrateOptions(arch="aarch64", writers=2, smp=6), "aarch64", 64)
    assert isinstance(wide, ItsGuest) and (wide.writers, wide.smp) == (2, 6)
    wide.validate()
    short = build_guest(MigrateOptions(arch="aarch64", writers=3, smp=3), "aarch64", 64)
    with pytest.raises(UsageError, match=r"--writers 3 with --smp 3: at most 2 .* give "
                                         r"--smp 4 or more"):
        short.validate()
    tiny = build_guest(MigrateOptions(arch="aarch64", writers=3, wave_start=32, wave_end=32,
                                      stride=PAGE_SIZE), "aarch64", 64)
    with pytest.raises(UsageError, match="--writers 3: the wave has only 0 blocks"):
        tiny.validate()
    # A wave above 4 GiB is no obstacle on arm64 (no PAE window to share).
    big = build_guest(MigrateOptions(arch="aarch64", ram=8192, writers=2), "aarch64", 8192)
    assert isinstance(big, ItsGuest) and big.wave.end > 4 * GiB
    big.validate()
    assert writers_problem(MigrateOptions(arch="aarch64", writers=7), "aarch64") is None
    assert "must be 1..7" in str(writers_problem(MigrateOptions(writers=8), "aarch64"))
    assert "must be 1..7" in str(writers_problem(MigrateOptions(writers=0), "aarch64"))
    assert "x86 wave runs a writer on every vCPU (--smp N)" in str(
        writers_problem(MigrateOptions(writers=2), "x86_64"))
    assert option_problems(MigrateOptions(guest="linux", writers=2)) == [
        "--writers applies only to --guest baremetal, not --guest linux"]


def test_arm64_wave_status_reads_as_per_writer_passes() -> None:
    """The arm64 guest's 'S' answer (decimal counts) reads as the x86 one's."""
    view = ConsoleView()
    view.records.append(parse_record("lpi-status issued=10 delivered=9 wrong-pe=0"))
    view.records.append(parse_record("wave-status writers=3 passes=12,0,7"))
    assert writer_passes(view, 0) == [12, 0, 7]
    assert writer_passes(view, 1) is None


class FakeConsole:
    """Answers each 'S' with the next per-CPU pass counts."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self._view = ConsoleView()

    def view(self) -> ConsoleView:
        return self._view

    async def send(self, data: bytes) -> None:
        assert data == b"S"
        passes = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        self._view.records.append(parse_record(f"wave-status cpus=0x4 passes={passes}"))

    async def wait_for(self, probe: Any, timeout: float, what: str) -> Any:
        result = probe(self._view)
        assert result is not None, what
        return result


async def test_writers_check_needs_every_cpu_to_advance(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wave_guest, "WRITERS_POLL_S", 0.0)
    console: Any = FakeConsole(["0x5,0x9,0x4,0x5", "0x6,0x9,0x5,0x5", "0x7,0xa,0x6,0x6"])
    ok = await writers_check(console, 4, "src", 10.0)
    assert ok.ok and ok.detail == ("4 of 4 vCPUs advanced their slice; passes per vCPU "
                                   "5->7, 9->10, 4->6, 5->6")
    monkeypatch.setattr(wave_guest, "WRITERS_WAIT_S", 0.05)
    stuck: Any = FakeConsole(["0x5,0x9,0x4,0x5", "0x6,0x9,0x5,0x6"])  # vCPU 1 stopped
    bad = await writers_check(stuck, 4, "src", 10.0)
    assert not bad.ok and bad.detail.startswith("3 of 4 vCPUs advanced")
    short: Any = FakeConsole(["0x5", "0x6"])  # the guest runs fewer writers than asked
    assert not (await writers_check(short, 4, "src", 10.0)).ok


def test_layout_names_the_announced_guest_image() -> None:
    guest = build_guest(MigrateOptions(smp=2), "x86_64", 160)
    view = ConsoleView([parse_record("wave-guest v1 arch=x86_64 mode=32bit "
                                     "image=0x100000-0x11102e")])
    assert guest.layout(view).region_of(0x10B100) == wave_guest.GUEST_IMAGE
    assert guest.layout().region_of(0x10B100) != wave_guest.GUEST_IMAGE


@pytest.mark.parametrize("ram_mib", [32, 64, 96, 128, 160])
def test_small_x86_default_wave_keeps_clear_of_seabios_freed_heap(ram_mib: int) -> None:
    # SeaBIOS leaves its POST heap dirty a few MiB below RAM - 16 MiB: a wave
    # reaching it fails the guest's uniform-RAM check (seen with --ram 64, 96).
    wave = default_wave("x86_64", ram_mib)
    assert wave.start == 2 * MiB
    assert wave.end <= max(ram_mib * MiB - 32 * MiB, 3 * MiB)
