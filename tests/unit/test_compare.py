import os
from pathlib import Path

import numpy as np
import pytest

import qmpctl.verify.compare as cmp
from qmpctl.core.units import PAGE_SIZE
from qmpctl.verify.compare import compare_images, differing_pages, exclusion_problems
from qmpctl.verify.ramimage import RamImage, RamLayout, Region

PAGES = 64


@pytest.fixture(params=["read", "map"])
def method(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every comparison test runs with both ways of reading the images."""
    monkeypatch.setattr(cmp, "METHOD", request.param)
    return str(request.param)


@pytest.fixture
def images(method: str, tmp_path: Path) -> tuple[Path, Path]:
    data = np.random.default_rng(1).integers(0, 256, PAGES * PAGE_SIZE, dtype=np.uint8)
    a, b = tmp_path / "a.ram", tmp_path / "b.ram"
    a.write_bytes(data.tobytes())
    b.write_bytes(data.tobytes())
    return a, b


def poke(path: Path, offset: int, value: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(bytes([value]))


def test_differing_pages_pure() -> None:
    a = np.zeros(4 * PAGE_SIZE, dtype=np.uint8)
    b = a.copy()
    b[2 * PAGE_SIZE + 4095] = 1
    assert differing_pages(a, b).tolist() == [2]


def test_identical(images: tuple[Path, Path]) -> None:
    with RamImage(images[0]) as s, RamImage(images[1]) as d:
        res = compare_images(s, d, RamLayout.linear(0, PAGES * PAGE_SIZE))
    assert res.identical and res.pages_compared == PAGES and res.pages_excluded == 0


def test_one_byte_reports_exact_page_and_region(images: tuple[Path, Path]) -> None:
    a, b = images
    original = a.read_bytes()[37 * PAGE_SIZE + 100]
    poke(b, 37 * PAGE_SIZE + 100, original ^ 0xFF)
    base = 0x4000_0000
    layout = RamLayout.linear(base, PAGES * PAGE_SIZE,
                       (Region("workload", base + 32 * PAGE_SIZE, base + 40 * PAGE_SIZE),))
    with RamImage(a) as s, RamImage(b) as d:
        res = compare_images(s, d, layout)
    assert res.pages_differing == 1
    m = res.mismatches[0]
    assert (m.page, m.gpa, m.region, m.first_diff, m.differing_bytes) == (
        37, 0x4000_0000 + 37 * PAGE_SIZE, "workload", 100, 1)
    assert m.src_hex.split()[4] == f"{original:02x}"
    assert m.dst_hex.split()[4] == f"{original ^ 0xFF:02x}"


def test_exclusion_is_counted_not_silent(images: tuple[Path, Path]) -> None:
    a, b = images
    poke(b, 5 * PAGE_SIZE, a.read_bytes()[5 * PAGE_SIZE] ^ 1)
    excl = [Region("firmware scratch", 4 * PAGE_SIZE, 6 * PAGE_SIZE)]
    with RamImage(a) as s, RamImage(b) as d:
        res = compare_images(s, d, RamLayout.linear(0, PAGES * PAGE_SIZE), excl)
    assert res.identical
    assert (res.pages_excluded, res.pages_compared) == (2, PAGES - 2)
    [e] = res.exclusions
    assert (e.reason, e.effective_start, e.effective_end, e.pages, e.pages_differing_hidden) == (
        "firmware scratch", 4 * PAGE_SIZE, 6 * PAGE_SIZE, 2, 1)


def test_unaligned_exclusion_covers_whole_pages_and_says_so(images: tuple[Path, Path]) -> None:
    """A one-byte exclusion hides a whole page: the report must show that page."""
    a, b = images
    poke(b, 7 * PAGE_SIZE + 100, a.read_bytes()[7 * PAGE_SIZE + 100] ^ 1)
    excl = [Region("one byte", 7 * PAGE_SIZE + 5, 7 * PAGE_SIZE + 6)]
    with RamImage(a) as s, RamImage(b) as d:
        res = compare_images(s, d, RamLayout.linear(0, PAGES * PAGE_SIZE), excl)
    [e] = res.exclusions
    assert (e.start, e.end) == (7 * PAGE_SIZE + 5, 7 * PAGE_SIZE + 6)
    assert (e.effective_start, e.effective_end, e.pages_differing_hidden) == (
        7 * PAGE_SIZE, 8 * PAGE_SIZE, 1)
    assert res.pages_excluded == 1


def test_exclusions_checked_against_the_memory_map() -> None:
    layout = RamLayout.linear(0x4000_0000, PAGES * PAGE_SIZE)
    top = 0x4000_0000 + PAGES * PAGE_SIZE
    assert exclusion_problems([Region("x", 0x4000_0000, 0x4000_1000)], layout) == []
    assert exclusion_problems([Region("x", 0, 0x1000)], layout) == [
        f"--exclude 0x0-0x1000: outside guest RAM 0x40000000-0x{top:x}"]
    assert exclusion_problems([Region("all", 0x4000_0000, top)], layout) == [
        "--exclude: the exclusions cover all of guest RAM; nothing would be compared"]


def test_many_chunks_and_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 method: str) -> None:
    monkeypatch.setattr(cmp, "CHUNK_BYTES", 8 * PAGE_SIZE)
    monkeypatch.setattr(cmp, "BLOCK_BYTES", 3 * PAGE_SIZE)  # a short last block per chunk
    size = 40 * PAGE_SIZE
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(bytes(size))
    b.write_bytes(bytes(size))
    for page in (0, 9, 10, 23, 39):
        poke(b, page * PAGE_SIZE + 7, 1)
    with RamImage(a) as s, RamImage(b) as d:
        res = cmp.compare_images(s, d, RamLayout.linear(0, size), threads=2)
        one = cmp.compare_images(s, d, RamLayout.linear(0, size), threads=1)
        assert one.differing.tolist() == [0, 9, 10, 23, 39]
    assert [m.page for m in res.mismatches] == [0, 9, 10, 23, 39]
    assert res.differing.tolist() == [0, 9, 10, 23, 39]


def test_the_verdict_says_how_it_compared_and_on_what_pages(images: tuple[Path, Path],
                                                            method: str) -> None:
    a, b = images
    with RamImage(a) as s, RamImage(b) as d:
        res = cmp.compare_images(s, d, RamLayout.linear(0, PAGES * PAGE_SIZE))
        assert res.method == method
        assert res.ram_page_kib == os.fstat(s.fd).st_blksize >> 10


def test_default_threads_is_every_cpu_this_process_may_use(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The affinity mask, not the machine's CPU count: a run pinned (taskset,
    # a cgroup) to 3 of 8 CPUs must not start 8 threads.
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {1, 4, 6})
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert cmp.worker_count() == 3
