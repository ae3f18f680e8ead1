from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from qmpctl.core.units import PAGE_SIZE, MiB
from qmpctl.verify.classify import (
    GuestloadClassifier,
    MismatchKind,
    WaveClassifier,
    classify_mismatches,
    classify_pages,
    guestload_page,
    guestload_tail,
    step_histogram,
)
from qmpctl.verify.compare import differing_pages
from qmpctl.verify.ramimage import RamImage, RamLayout
from qmpctl.verify.wave import WaveParams

RAM = 8 * MiB
LAYOUT = RamLayout.linear(0, RAM)
WAVE = WaveParams(start=2 * MiB, end=6 * MiB)  # stride 4096, delta 1, offset 0


def wave_ram(params: WaveParams, value: int, edge_gpa: int | None = None) -> npt.NDArray[np.uint8]:
    """RAM as the wave guest leaves it: counters below edge_gpa hold value+delta."""
    ram = np.zeros(RAM, dtype=np.uint8)
    addrs = np.arange(params.start, params.end, params.stride) + params.offset
    ram[addrs] = value
    if edge_gpa is not None:
        ram[addrs[addrs < edge_gpa]] = (value + params.delta) % 256
    return ram


def write(tmp_path: Path, name: str, ram: npt.NDArray[np.uint8]) -> Path:
    path = tmp_path / name
    path.write_bytes(ram.tobytes())
    return path


def test_lost_pages_one_pass_behind_through_real_ram_files(tmp_path: Path) -> None:
    # The kvm_pvm signature: the source finished pass v+1 over the first 300
    # pages; the destination kept pass v there.
    src = wave_ram(WAVE, 0x08, edge_gpa=WAVE.start + 300 * PAGE_SIZE)
    dst = wave_ram(WAVE, 0x08)
    a, b = write(tmp_path, "src.ram", src), write(tmp_path, "dst.ram", dst)
    with RamImage(a) as s, RamImage(b) as d:
        pages = differing_pages(s.bytes, d.bytes)
        res = classify_mismatches(s, d, pages, LAYOUT, WaveClassifier(WAVE))
    assert res.pages == 300 and res.classifier == "wave" and res.unit == "pass"
    assert res.stale.pages == 300
    assert res.stale.steps == {"1": 300}
    assert res.stale.examples == [WAVE.start + i * PAGE_SIZE for i in range(5)]
    assert res.ahead.pages == res.foreign.pages == res.unexplained.pages == 0
    assert res.headline() == "300 stale (1 pass behind)"


def test_every_page_is_classified_not_only_the_first_sixteen() -> None:
    src = wave_ram(WAVE, 10)
    dst = src.copy()
    counters = np.arange(WAVE.start, WAVE.end, PAGE_SIZE)
    dst[counters[:700]] = 9  # 1 behind
    dst[counters[700:720]] = 7  # 3 behind
    dst[counters[720:730]] = 12  # 2 ahead
    dst[counters[730:740] + 17] = 0xAA  # a byte the wave never writes
    dst[counters[740]] = 10 + 100  # a counter value far from the source's
    dst[7 * MiB + 5] = 1  # outside the wave
    pages = differing_pages(src, dst)
    assert len(pages) == 742
    res = classify_pages(src, dst, pages, LAYOUT, WaveClassifier(WAVE, max_steps=16),
                         batch_pages=64)
    assert res.stale.pages == 720 and res.stale.steps == {"1": 700, "3": 20}
    assert res.ahead.pages == 10 and res.ahead.steps == {"2": 10}
    assert res.foreign.pages == 11
    assert res.foreign.examples == [WAVE.start + i * PAGE_SIZE for i in range(730, 735)]
    assert res.unexplained.pages == 1 and res.unexplained.examples == [7 * MiB]
    assert res.headline() == ("720 stale (1-3 passes behind, mostly 1), "
                              "10 ahead (2 passes ahead), 11 foreign, 1 unexplained")


def test_counter_wraps_mod_256_and_delta_is_respected() -> None:
    params = WaveParams(start=2 * MiB, end=3 * MiB, delta=3)
    src = wave_ram(params, 0x01)
    dst = src.copy()
    dst[params.start] = (0x01 - 2 * 3) % 256  # 0xfb: two passes behind across the wrap
    dst[params.start + PAGE_SIZE] = (0x01 - 1) % 256  # not a multiple of delta
    res = classify_pages(src, dst, differing_pages(src, dst), LAYOUT, WaveClassifier(params))
    assert res.stale.steps == {"2": 1} and res.stale.examples == [params.start]
    assert res.foreign.examples == [params.start + PAGE_SIZE]


def test_small_stride_page_with_an_edge_inside_is_stale_by_its_furthest_counter() -> None:
    # stride 1 KiB, offset 8: four counters per page. The source's edge is in
    # the middle of the first page (two counters at v+1, two at v); the
    # destination holds v everywhere, and v-2 in the next page's first counter.
    params = WaveParams(start=2 * MiB, end=3 * MiB, stride=1024, offset=8)
    src = wave_ram(params, 0x40, edge_gpa=params.start + 2048)
    dst = wave_ram(params, 0x40)
    dst[params.start + PAGE_SIZE + 8] = 0x3E  # next page: 2 behind
    res = classify_pages(src, dst, differing_pages(src, dst), LAYOUT, WaveClassifier(params))
    assert res.stale.pages == 2
    assert res.stale.steps == {"1": 1, "2": 1}
    mask = WaveClassifier(params).counter_mask(np.array([params.start], np.int64))
    assert np.flatnonzero(mask[0]).tolist() == [8, 1032, 2056, 3080]


def test_large_stride_unaligned_range_counter_mask() -> None:
    # stride 3 pages + 8 bytes: counters drift through the pages; pages
    # without a counter have none in the mask, and nothing past the range.
    params = WaveParams(start=0x200000, end=0x200000 + 4 * (3 * PAGE_SIZE + 8),
                        stride=3 * PAGE_SIZE + 8, offset=16)
    gpas = np.arange(params.start, params.end + PAGE_SIZE, PAGE_SIZE, dtype=np.int64)
    mask = WaveClassifier(params).counter_mask(gpas)
    found = sorted(int(g) + int(j) for g, row in zip(gpas, mask, strict=True)
                   for j in np.flatnonzero(row))
    assert found == [params.start + k * params.stride + params.offset for k in range(4)]


def test_ahead_destination() -> None:
    src = wave_ram(WAVE, 0x20)
    dst = wave_ram(WAVE, 0x20, edge_gpa=WAVE.start + 3 * PAGE_SIZE)
    res = classify_pages(src, dst, differing_pages(src, dst), LAYOUT, WaveClassifier(WAVE))
    assert res.ahead.pages == 3 and res.ahead.steps == {"1": 3} and res.stale.pages == 0


# ---- guestload ------------------------------------------------------------------


def test_guestload_encoding_matches_guestload_c() -> None:
    # tail_of() in guestload.c, evaluated by hand with Python's big ints.
    def tail_of(page: int, seq: int) -> int:
        m = (1 << 64) - 1
        return ((seq * 0x9E3779B97F4A7C15) & m) ^ ((page * 0xC2B2AE3D27D4EB4F) & m) \
            ^ 0x7A11C0FFEE15BEEF

    for page, seq in [(0, 0), (1, 1), (12345, 987654321), (2**31, 2**40 + 3)]:
        got = guestload_tail(np.array([page], np.uint64), np.array([seq], np.uint64))
        assert int(got[0]) == tail_of(page, seq)
        words = guestload_page(page, seq).view("<u8")
        assert int(words[0]) == seq
        assert int(words[1]) == page ^ 0x51A9C7E1D00DFEED
        assert int(words[-1]) == tail_of(page, seq)
        assert not words[2:-1].any()


def guestload_ram(seqs: dict[int, int]) -> npt.NDArray[np.uint8]:
    """RAM whose physical page p holds guestload's buffer page 1000 + p at seqs[p]."""
    ram = np.zeros(RAM, dtype=np.uint8)
    for phys, seq in seqs.items():
        ram[phys * PAGE_SIZE:(phys + 1) * PAGE_SIZE] = guestload_page(1000 + phys, seq)
    return ram


def test_guestload_classes() -> None:
    pages = range(600, 700)
    src = guestload_ram(dict.fromkeys(pages, 50))
    dst = src.copy()
    dst[600 * PAGE_SIZE:620 * PAGE_SIZE] = guestload_ram(dict.fromkeys(range(600, 620), 49))[
        600 * PAGE_SIZE:620 * PAGE_SIZE]  # 1 write behind
    dst[620 * PAGE_SIZE:621 * PAGE_SIZE] = guestload_page(1620, 10)  # 40 behind
    dst[621 * PAGE_SIZE:622 * PAGE_SIZE] = guestload_page(1621, 53)  # 3 ahead
    dst[622 * PAGE_SIZE + 100] = 1  # outside the encoded fields
    dst[623 * PAGE_SIZE + 8] ^= 1  # index word corrupt: tail no longer matches
    dst[624 * PAGE_SIZE:625 * PAGE_SIZE] = 0  # destination page zero
    dst[625 * PAGE_SIZE:626 * PAGE_SIZE] = guestload_page(1777, 51)  # another buffer page
    dst[10 * PAGE_SIZE] = 7  # not a guestload page on the source
    res = classify_pages(src, dst, differing_pages(src, dst), LAYOUT, GuestloadClassifier())
    assert res.pages == 27 and res.classifier == "guestload" and res.unit == "write"
    assert res.stale.pages == 21 and res.stale.steps == {"1": 20, "33-64": 1}
    assert res.ahead.pages == 1 and res.ahead.steps == {"3": 1}
    assert res.foreign.pages == 4
    assert res.foreign.examples == [p * PAGE_SIZE for p in (622, 623, 624, 625)]
    assert res.unexplained.pages == 1 and res.unexplained.examples == [10 * PAGE_SIZE]


def test_guestload_on_arm64_layout_reports_guest_physical_addresses() -> None:
    base = 0x4000_0000
    src = guestload_ram({3: 8})
    dst = guestload_ram({3: 7})
    res = classify_pages(src, dst, [3], RamLayout.linear(base, RAM), GuestloadClassifier())
    assert res.stale.examples == [base + 3 * PAGE_SIZE] and res.stale.steps == {"1": 1}


def test_step_histogram_buckets() -> None:
    steps = np.array([1, 1, 16, 17, 32, 33, 1000, 2**40], dtype=np.int64)
    assert step_histogram(steps) == {"1": 2, "16": 1, "17-32": 2, "33-64": 1,
                                     "513-1024": 1, f"{2**39 + 1}-{2**40}": 1}
    assert step_histogram(np.empty(0, np.int64)) == {}


def test_bad_input_is_refused() -> None:
    src = np.zeros(4 * PAGE_SIZE, np.uint8)
    with pytest.raises(ValueError, match="out of range"):
        classify_pages(src, src.copy(), [4], RamLayout.linear(0, 4 * PAGE_SIZE),
                       GuestloadClassifier())
    with pytest.raises(ValueError, match="size"):
        classify_pages(src, src[:PAGE_SIZE], [0], RamLayout.linear(0, 4 * PAGE_SIZE),
                       GuestloadClassifier())


def test_summary_round_trips_through_json() -> None:
    src = wave_ram(WAVE, 3, edge_gpa=WAVE.start + PAGE_SIZE)
    dst = wave_ram(WAVE, 3)
    res = classify_pages(src, dst, differing_pages(src, dst), LAYOUT, WaveClassifier(WAVE))
    assert type(res).model_validate_json(res.model_dump_json()) == res
    assert res.of(MismatchKind.STALE) is res.stale
