"""The machines' RAM split and `RamLayout`'s maps across it (pure)."""

from pathlib import Path

import numpy as np
import pytest

from qmpctl.core.units import PAGE_SIZE, GiB, MiB
from qmpctl.qemu.memmap import RamSegment, pc_lowmem, ram_segments
from qmpctl.testing import corrupt_destination
from qmpctl.verify.compare import apply_exclusions, exclusion_problems, page_spans
from qmpctl.verify.ramimage import RamLayout, Region
from qmpctl.verify.ranges import locate_differences

LOW = 0xC000_0000
BIG = RamLayout(ram_segments("x86_64", 8 * GiB))  # 3 GiB low + 5 GiB from 4 GiB


@pytest.mark.parametrize(("ram", "low"), [
    (160 * MiB, 160 * MiB),
    (2 * GiB, 2 * GiB),
    (3583 * MiB, 3583 * MiB),  # all of it below 3.5 GiB: no split
    (0xE000_0000 - PAGE_SIZE, 0xE000_0000 - PAGE_SIZE),
    (0xE000_0000, LOW),  # 3.5 GiB does not fit below 3.5 GiB: gigabyte-aligned split
    (4 * GiB, LOW),
    (64 * GiB, LOW),
])
def test_pc_lowmem_follows_pc_piix(ram: int, low: int) -> None:
    assert pc_lowmem(ram) == low


def test_segments_per_machine() -> None:
    assert ram_segments("x86_64", 2 * GiB) == (RamSegment(0, 0, 2 * GiB),)
    assert ram_segments("x86_64", 3584 * MiB) == (RamSegment(0, 0, LOW),
                                                  RamSegment(4 * GiB, LOW, 512 * MiB))
    assert ram_segments("x86_64", 8 * GiB) == (RamSegment(0, 0, LOW),
                                               RamSegment(4 * GiB, LOW, 5 * GiB))
    assert ram_segments("aarch64", 8 * GiB) == (RamSegment(GiB, 0, 8 * GiB),)


def test_offsets_and_addresses_at_the_boundaries() -> None:
    assert BIG.size == 8 * GiB and BIG.start == 0 and BIG.end == 9 * GiB
    assert BIG.gpa(LOW - 1) == LOW - 1
    assert BIG.gpa(LOW) == 4 * GiB  # first byte above lowmem is at 4 GiB
    assert BIG.gpa(8 * GiB - 1) == 9 * GiB - 1
    assert BIG.gpa_end(LOW) == LOW  # a file range ending at lowmem ends below the hole
    assert BIG.offset(4 * GiB) == LOW
    assert BIG.offset(4 * GiB + 0x1234) == LOW + 0x1234
    assert BIG.offset(LOW - 1) == LOW - 1
    assert BIG.offset(LOW) == LOW  # an exclusive end of low RAM
    assert BIG.offset(9 * GiB) == 8 * GiB
    for gpa in (LOW + 1, 0xE000_0000, 4 * GiB - 1, 9 * GiB + 1):
        with pytest.raises(ValueError, match="outside RAM"):
            BIG.offset(gpa)
    with pytest.raises(ValueError, match="outside the RAM file"):
        BIG.gpa(8 * GiB)
    assert not BIG.contains(LOW) and not BIG.contains(4 * GiB - 1)
    assert BIG.contains(LOW - 1) and BIG.contains(4 * GiB)
    offsets = np.array([0, LOW - PAGE_SIZE, LOW, 8 * GiB - PAGE_SIZE], dtype=np.int64)
    assert BIG.gpas(offsets).tolist() == [0, LOW - PAGE_SIZE, 4 * GiB, 9 * GiB - PAGE_SIZE]
    assert BIG.describe() == "0x0-0xc0000000, 0x100000000-0x240000000"


def test_round_trip_everywhere() -> None:
    for offset in range(0, 8 * GiB, 64 * MiB + PAGE_SIZE):
        assert BIG.offset(BIG.gpa(offset)) == offset


def test_pieces_leave_the_hole_out() -> None:
    assert BIG.pieces(2 * GiB, 5 * GiB) == [(2 * GiB, LOW, 2 * GiB), (4 * GiB, 5 * GiB, LOW)]
    assert BIG.pieces(LOW, 4 * GiB) == []
    assert BIG.covers(4 * GiB, 5 * GiB) and not BIG.covers(2 * GiB, 5 * GiB)


def test_segments_must_tile_the_file() -> None:
    with pytest.raises(ValueError, match="tile"):
        RamLayout((RamSegment(0, 0, GiB), RamSegment(4 * GiB, 2 * GiB, GiB)))
    with pytest.raises(ValueError, match="overlap"):
        RamLayout((RamSegment(0, 0, GiB), RamSegment(GiB // 2, GiB, GiB)))


def test_differing_pages_across_the_hole_are_two_ranges() -> None:
    layout = BIG.with_regions(Region("wave", 2 * MiB, LOW - 32 * MiB),
                              Region("wave", 4 * GiB, 9 * GiB))
    pages = np.array([LOW // PAGE_SIZE - 1, LOW // PAGE_SIZE], dtype=np.int64)  # adjacent in file
    loc = locate_differences(pages, layout)
    assert [(r.start_gpa, r.end_gpa, r.region) for r in loc.ranges] == [
        (LOW - PAGE_SIZE, LOW, "other RAM"), (4 * GiB, 4 * GiB + PAGE_SIZE, "wave")]


def test_exclusions_over_the_hole() -> None:
    across = Region("across", LOW - 2 * PAGE_SIZE, 4 * GiB + PAGE_SIZE + 1)
    assert page_spans(across, BIG) == [(LOW // PAGE_SIZE - 2, LOW // PAGE_SIZE),
                                       (LOW // PAGE_SIZE, LOW // PAGE_SIZE + 2)]
    found = np.array([LOW // PAGE_SIZE - 1, LOW // PAGE_SIZE + 1, LOW // PAGE_SIZE + 5])
    kept, _mask, (excl,) = apply_exclusions(found, BIG.size // PAGE_SIZE, BIG, [across])
    assert kept.tolist() == [LOW // PAGE_SIZE + 5]
    assert (excl.pages, excl.pages_differing_hidden) == (4, 2)
    assert (excl.effective_start, excl.effective_end) == (LOW - 2 * PAGE_SIZE,
                                                          4 * GiB + 2 * PAGE_SIZE)
    assert exclusion_problems([across], BIG) == []
    assert exclusion_problems([Region("hole", LOW, 4 * GiB)], BIG) == [
        "--exclude 0xc0000000-0x100000000: outside guest RAM "
        "0x0-0xc0000000, 0x100000000-0x240000000"]
    assert exclusion_problems([Region("top", 9 * GiB - PAGE_SIZE, 9 * GiB + 1)], BIG)


async def test_corrupt_destination_goes_through_the_memory_map(tmp_path: Path) -> None:
    ram = tmp_path / "dst.ram"
    with ram.open("wb") as f:
        f.truncate(4 * GiB)  # sparse: 3 GiB low, 1 GiB from 4 GiB
    hooks = corrupt_destination(4 * GiB + 0x123)
    assert hooks.before_verify is not None
    await hooks.before_verify(ram, ram)
    with ram.open("rb") as f:
        f.seek(LOW + 0x123)
        assert f.read(1) == b"\x5a"
    in_the_hole = corrupt_destination(LOW + 0x123).before_verify
    assert in_the_hole is not None
    with pytest.raises(ValueError, match="not in the destination's RAM"):
        await in_the_hole(ram, ram)
