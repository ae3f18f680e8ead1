from pathlib import Path

import numpy as np

from qmpctl.core.units import PAGE_SIZE, MiB
from qmpctl.qemu.memmap import RamSegment
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
