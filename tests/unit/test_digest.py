from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import xxhash

import qmpctl.verify.compare as cmp
from qmpctl.core.units import PAGE_SIZE
from qmpctl.verify.compare import compare_images
from qmpctl.verify.digest import DIGEST_ONLY, compare_digests, digest_pages, page_digests
from qmpctl.verify.ramimage import RamImage, RamLayout, Region

PAGES = 64


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, Path]:
    data = np.random.default_rng(2).integers(0, 256, PAGES * PAGE_SIZE, dtype=np.uint8)
    a, b = tmp_path / "a.ram", tmp_path / "b.ram"
    a.write_bytes(data.tobytes())
    b.write_bytes(data.tobytes())
    return a, b


def flip(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        old = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([old ^ 0x01]))


def digests(path: Path, threads: int | None = None) -> npt.NDArray[np.uint64]:
    with RamImage(path) as image:
        return page_digests(image, threads)


def test_digest_is_xxh3_64_of_each_page(images: tuple[Path, Path]) -> None:
    raw = images[0].read_bytes()
    expected = [xxhash.xxh3_64_intdigest(raw[o:o + PAGE_SIZE])
                for o in range(0, len(raw), PAGE_SIZE)]
    got = digests(images[0])
    assert got.dtype == np.uint64 and got.shape == (PAGES,)
    assert got.tolist() == expected
    assert digest_pages(np.frombuffer(raw, dtype=np.uint8)).tolist() == expected


def test_same_pages_same_digests(images: tuple[Path, Path]) -> None:
    a, b = images
    da, db = digests(a), digests(b)
    assert np.array_equal(da, db)
    res = compare_digests(da, db, RamLayout.linear(0, PAGES * PAGE_SIZE))
    assert res.identical and res.pages_compared == PAGES and res.pages_excluded == 0
    assert res.bytes_compared == PAGES * PAGE_SIZE


def test_one_flipped_byte_is_exactly_that_page(images: tuple[Path, Path]) -> None:
    a, b = images
    flip(b, 37 * PAGE_SIZE + 4095)
    base = 0x4000_0000
    layout = RamLayout.linear(base, PAGES * PAGE_SIZE,
                       (Region("workload", base + 32 * PAGE_SIZE, base + 40 * PAGE_SIZE),))
    da, db = digests(a), digests(b)
    assert np.flatnonzero(da != db).tolist() == [37]
    res = compare_digests(da, db, layout)
    assert res.pages_differing == 1 and res.differing.tolist() == [37]
    [m] = res.mismatches
    assert (m.page, m.offset, m.gpa, m.region) == (
        37, 37 * PAGE_SIZE, base + 37 * PAGE_SIZE, "workload")
    assert m.src_hex == f"{DIGEST_ONLY} xxh3 {int(da[37]):016x}"
    assert m.dst_hex == f"{DIGEST_ONLY} xxh3 {int(db[37]):016x}"
    assert (m.differing_bytes, m.first_diff) == (0, 0)  # unknown from digests
    assert res.differing_in(layout, base + 32 * PAGE_SIZE, base + 40 * PAGE_SIZE) == 1


def test_exclusions_counted_as_by_compare_images(images: tuple[Path, Path]) -> None:
    a, b = images
    for page in (5, 7, 20):
        flip(b, page * PAGE_SIZE + 100)
    layout = RamLayout.linear(0, PAGES * PAGE_SIZE)
    excl = [Region("firmware scratch", 4 * PAGE_SIZE, 6 * PAGE_SIZE),
            Region("one byte", 7 * PAGE_SIZE + 5, 7 * PAGE_SIZE + 6)]
    res = compare_digests(digests(a), digests(b), layout, excl)
    assert res.differing.tolist() == [20]
    assert (res.pages_excluded, res.pages_compared, res.pages_differing) == (3, PAGES - 3, 1)
    assert [(e.reason, e.effective_start, e.effective_end, e.pages, e.pages_differing_hidden)
            for e in res.exclusions] == [
        ("firmware scratch", 4 * PAGE_SIZE, 6 * PAGE_SIZE, 2, 1),
        ("one byte", 7 * PAGE_SIZE, 8 * PAGE_SIZE, 1, 1)]
    assert res.excluded_in(layout, 0, 8 * PAGE_SIZE) == 3
    with RamImage(a) as s, RamImage(b) as d:
        by_bytes = compare_images(s, d, layout, excl)
    same = {"bytes_compared", "pages_total", "pages_compared", "pages_excluded",
            "pages_differing", "exclusions"}
    assert res.model_dump(include=same) == by_bytes.model_dump(include=same)
    assert [m.page for m in res.mismatches] == [m.page for m in by_bytes.mismatches]


def test_many_chunks_threads_and_short_blocks(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cmp, "CHUNK_BYTES", 8 * PAGE_SIZE)
    monkeypatch.setattr(cmp, "BLOCK_BYTES", 3 * PAGE_SIZE)
    size = 41 * PAGE_SIZE
    a, b = tmp_path / "a", tmp_path / "b"
    data = np.random.default_rng(3).integers(0, 256, size, dtype=np.uint8).tobytes()
    a.write_bytes(data)
    b.write_bytes(data)
    for page in (0, 8, 10, 40):
        flip(b, page * PAGE_SIZE)
    da = digests(a, threads=2)
    assert da.tolist() == digests(a, threads=1).tolist() == digest_pages(
        np.frombuffer(data, dtype=np.uint8)).tolist()
    res = compare_digests(da, digests(b, threads=2), RamLayout.linear(0, size), max_reported=2)
    assert res.differing.tolist() == [0, 8, 10, 40]
    assert [m.page for m in res.mismatches] == [0, 8]


def test_seconds_are_what_the_digests_took(images: tuple[Path, Path]) -> None:
    d = digests(images[0])
    res = compare_digests(d, d, RamLayout.linear(0, PAGES * PAGE_SIZE), seconds=0.5)
    assert res.seconds == 0.5
    assert res.gib_per_s == round(PAGES * PAGE_SIZE / (1 << 30) / 0.5, 3)


def test_mismatched_inputs_are_refused(images: tuple[Path, Path], tmp_path: Path) -> None:
    d = digests(images[0])
    with pytest.raises(ValueError, match="differ in shape"):
        compare_digests(d, d[:-1], RamLayout.linear(0, PAGES * PAGE_SIZE))
    with pytest.raises(ValueError, match="do not cover RAM"):
        compare_digests(d, d, RamLayout.linear(0, (PAGES + 1) * PAGE_SIZE))
    odd = tmp_path / "odd"
    odd.write_bytes(bytes(PAGE_SIZE + 1))
    with pytest.raises(ValueError, match="not a multiple"):
        digests(odd)
