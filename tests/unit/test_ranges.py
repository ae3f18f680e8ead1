import numpy as np

from qmpctl.core.units import PAGE_SIZE, MiB
from qmpctl.verify.ramimage import RamLayout, Region
from qmpctl.verify.ranges import DiffRange, describe_ranges, locate_differences

BASE = 0x4000_0000  # arm64 virt: RAM starts at 1 GiB, so gpa != offset
LAYOUT = RamLayout.linear(BASE, 64 * MiB, (
    Region("wave", BASE + 16 * MiB, BASE + 48 * MiB),
    Region("its-tables", BASE + 20 * MiB, BASE + 20 * MiB + 8 * PAGE_SIZE),  # inside wave
))


def page_of(gpa: int) -> int:
    return (gpa - BASE) // PAGE_SIZE


def test_no_pages() -> None:
    loc = locate_differences(np.empty(0, np.intp), LAYOUT)
    assert (loc.pages, loc.by_region, loc.ranges, loc.ranges_total) == (0, {}, [], 0)
    assert describe_ranges(loc) == "no differing pages"


def test_runs_merge_and_split_at_gaps() -> None:
    first = page_of(BASE + 16 * MiB)
    pages = np.array([first + 5, first, first + 1, first + 2, first + 1], dtype=np.intp)
    loc = locate_differences(pages, LAYOUT)
    assert loc.pages == 4  # the duplicate counted once
    assert loc.ranges == [
        DiffRange(start_gpa=BASE + 16 * MiB, end_gpa=BASE + 16 * MiB + 3 * PAGE_SIZE,
                  pages=3, region="wave"),
        DiffRange(start_gpa=BASE + 16 * MiB + 5 * PAGE_SIZE,
                  end_gpa=BASE + 16 * MiB + 6 * PAGE_SIZE, pages=1, region="wave"),
    ]
    assert loc.by_region == {"wave": 4}


def test_a_range_never_straddles_two_regions() -> None:
    # Contiguous pages from just below the ITS tables, through them, and out:
    # most specific region wins (RamLayout.region_of's rule).
    its = page_of(BASE + 20 * MiB)
    pages = np.arange(its - 2, its + 10)
    loc = locate_differences(pages, LAYOUT)
    assert [(r.region, r.pages) for r in loc.ranges] == [
        ("wave", 2), ("its-tables", 8), ("wave", 2)]
    assert [r.start_gpa for r in loc.ranges] == [
        BASE + 20 * MiB - 2 * PAGE_SIZE, BASE + 20 * MiB, BASE + 20 * MiB + 8 * PAGE_SIZE]
    assert loc.by_region == {"wave": 4, "its-tables": 8}
    for r in loc.ranges:
        assert LAYOUT.region_of(r.start_gpa) == r.region
        assert LAYOUT.region_of(r.end_gpa - PAGE_SIZE) == r.region


def test_pages_outside_every_region_and_at_the_region_edge() -> None:
    wave_end = page_of(BASE + 48 * MiB)
    loc = locate_differences([0, 1, wave_end - 1, wave_end], LAYOUT)
    assert loc.by_region == {"other RAM": 3, "wave": 1}
    assert [(r.start_gpa, r.pages, r.region) for r in loc.ranges] == [
        (BASE, 2, "other RAM"),
        (BASE + 48 * MiB - PAGE_SIZE, 1, "wave"),
        (BASE + 48 * MiB, 1, "other RAM"),
    ]


def test_regions_with_the_same_name_are_tallied_together() -> None:
    layout = RamLayout.linear(0, 8 * PAGE_SIZE, (Region("rom", 0, PAGE_SIZE),
                                          Region("rom", 4 * PAGE_SIZE, 5 * PAGE_SIZE)))
    loc = locate_differences([0, 2, 4], layout)
    assert loc.by_region == {"rom": 2, "other RAM": 1}


def test_hundreds_of_thousands_of_pages_every_one_accounted() -> None:
    # 2 GiB x86 guest, every other page of the top 1.5 GiB differs plus one
    # dense run: ~200k pages, ~200k ranges.
    layout = RamLayout.linear(0, 2048 * MiB, (Region("wave", 2 * MiB, 1800 * MiB),))
    sparse = np.arange(131072, 524288, 2)
    dense = np.arange(1000, 3000)
    pages = np.concatenate([sparse, dense])
    loc = locate_differences(pages, layout, max_ranges=100)
    assert loc.pages == len(sparse) + len(dense)
    assert sum(loc.by_region.values()) == loc.pages
    assert loc.by_region["wave"] == (1800 * MiB // PAGE_SIZE - 131072) // 2 + 2000
    assert loc.ranges_total == len(sparse) + 1
    assert len(loc.ranges) == 100 and loc.truncated
    assert loc.ranges[0] == DiffRange(start_gpa=1000 * PAGE_SIZE, end_gpa=3000 * PAGE_SIZE,
                                      pages=2000, region="wave")
    full = locate_differences(pages, layout)
    assert sum(r.pages for r in full.ranges) == loc.pages and not full.truncated


def test_describe_ranges_is_one_line() -> None:
    loc = locate_differences(np.arange(10, 14), RamLayout.linear(0, 64 * PAGE_SIZE))
    assert describe_ranges(loc) == (
        "4 pages in 1 range (other RAM 4): 0xa000-0xe000 (4 pages, other RAM)")
