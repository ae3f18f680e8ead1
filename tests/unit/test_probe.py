"""The compare method chosen by measuring: the pure choice, the cache, the
verdict whichever method ran. No timing is asserted: figures are given."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from qmpctl.core.cache import JsonCache
from qmpctl.core.errors import UsageError
from qmpctl.core.units import PAGE_SIZE, MiB
from qmpctl.report.text import choice_line
from qmpctl.scenario.options import (
    MigrateOptions,
    compare_method_problems,
    requested_method,
)
from qmpctl.verify import probe as pr
from qmpctl.verify.compare import Method, MethodChoice
from qmpctl.verify.digest import DIGEST_ONLY
from qmpctl.verify.probe import CachedProbe, choose, choose_method, compare_by, stripes
from qmpctl.verify.ramimage import RamImage, RamLayout

PAGES = 64


# The choice, from given figures (GiB/s) --------------------------------------

def test_map_chosen_where_map_is_faster() -> None:
    # The machine where the old default was set: map 7.5, read 5.5.
    assert choose({"map": 7.5, "read": 5.5, "hash": 4.0}) == "map"


def test_read_chosen_where_read_is_faster() -> None:
    # The fresh 2-core machine of issue #24: map 5.99, read 12.16, hash ~10.7.
    assert choose({"map": 5.99, "read": 12.16, "hash": 10.75}) == "read"


def test_hash_needs_a_clear_margin_over_the_byte_methods() -> None:
    assert choose({"map": 10.0, "read": 9.0, "hash": 10.5}) == "map"  # within 1.1x: bytes
    assert choose({"map": 10.0, "read": 9.0, "hash": 11.5}) == "hash"
    assert choose({"map": 10.0, "hash": 10.5}, hash_margin=1.0) == "hash"


def test_ties_and_missing_candidates() -> None:
    assert choose({"map": 6.0, "read": 6.0}) == "map"
    assert choose({"read": 3.0, "hash": 2.0}) == "read"
    assert choose({"hash": 1.0}) == "hash"
    with pytest.raises(ValueError):
        choose({})


def test_rule_in_words() -> None:
    assert "hash is chosen only above 1.1x" in pr.describe_rule(
        {"map": 1.0, "read": 2.0, "hash": 2.1}, "read")
    assert pr.describe_rule({"map": 1.0, "hash": 3.0}, "hash").startswith("hash was more")


# Where the probe looks ------------------------------------------------------

def test_stripes_cover_a_small_file_whole() -> None:
    size = 96 * MiB
    bounds = stripes(size, total=128 * MiB)
    assert bounds[0][0] == 0 and bounds[-1][1] == size
    assert sum(e - s for s, e in bounds) == size


def test_stripes_spread_over_a_large_file() -> None:
    size = 2048 * MiB
    bounds = stripes(size, total=128 * MiB, count=8)
    assert len(bounds) == 8
    assert all(s % PAGE_SIZE == 0 and e % PAGE_SIZE == 0 and e <= size for s, e in bounds)
    assert sum(e - s for s, e in bounds) == 128 * MiB
    assert bounds[0][0] == 0 and bounds[-1][1] > size - 32 * MiB  # reaches the end
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(bounds))


# Probe, cache, forced ------------------------------------------------------

@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, Path]:
    data = np.random.default_rng(2).integers(0, 256, PAGES * PAGE_SIZE, dtype=np.uint8)
    a, b = tmp_path / "a.ram", tmp_path / "b.ram"
    a.write_bytes(data.tobytes())
    data[5 * PAGE_SIZE + 7] ^= 0xFF
    data[40 * PAGE_SIZE] ^= 0x01
    b.write_bytes(data.tobytes())
    return a, b


class FakeProbe:
    """Given figures instead of a measurement; counts the calls."""

    def __init__(self, figures: dict[Method, float]) -> None:
        self.figures, self.calls = figures, 0

    def __call__(self, src: Path, dst: Path) -> tuple[dict[Method, float], int, float]:
        self.calls += 1
        return dict(self.figures), 128, 0.2


def test_forced_method_is_not_probed(images: tuple[Path, Path], tmp_path: Path) -> None:
    fake = FakeProbe({"map": 1.0})
    got = choose_method("read", *images, cache=tmp_path / "c.json", measure=fake)
    assert (got.method, got.why, fake.calls) == ("read", "forced", 0)
    assert not (tmp_path / "c.json").exists()


def test_probe_cached_then_reused(images: tuple[Path, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "probe.json"
    fake = FakeProbe({"map": 5.99, "read": 12.16, "hash": 10.75})
    first = choose_method(None, *images, cache=cache, measure=fake)
    assert (first.method, first.why, first.probe_mib) == ("read", "probed", 128)
    assert first.figures == {"map": 5.99, "read": 12.16, "hash": 10.75}
    again = choose_method(None, *images, cache=cache, measure=fake)
    assert (again.method, again.why, fake.calls) == ("read", "cached", 1)
    assert again.probed_at == first.probed_at and again.figures == first.figures
    assert "cached probe from" in choice_line(again)


def test_corrupt_cache_is_probed_again(images: tuple[Path, Path], tmp_path: Path) -> None:
    cache = tmp_path / "probe.json"
    cache.write_text("{not json")
    fake = FakeProbe({"map": 7.5, "read": 5.5})
    assert choose_method(None, *images, cache=cache, measure=fake).why == "probed"
    assert fake.calls == 1 and json.loads(cache.read_text())
    cache.write_text(json.dumps({"x": {"key": 3}}))  # valid JSON, wrong shape
    assert choose_method(None, *images, cache=cache, measure=fake).why == "probed"


def test_a_new_kernel_or_boot_misses_the_cache(images: tuple[Path, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "probe.json"
    fake = FakeProbe({"map": 7.5, "read": 5.5})
    choose_method(None, *images, cache=cache, measure=fake)
    monkeypatch.setattr(pr.platform, "release", lambda: "9.9.9-other")
    assert choose_method(None, *images, cache=cache, measure=fake).why == "probed"
    assert fake.calls == 2
    key = pr.host_key(images[0])
    assert "kernel=9.9.9-other" in key and f"page={images[0].stat().st_blksize}" in key


def test_other_boots_are_dropped_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "probe.json"
    old = CachedProbe(key="v1 boot=old kernel=k", probed_at="t", figures={"map": 1.0},
                      probe_mib=1, probe_s=0.1)
    new = old.model_copy(update={"key": "v1 boot=new kernel=k"})
    store = JsonCache(pr.CACHE_NAME, CachedProbe, cache)
    store.store(old.key, old, pr.same_boot(old.key))
    store.store(new.key, new, pr.same_boot(new.key))
    assert list(store.load()) == ["v1 boot=new kernel=k"]


def test_cache_under_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert pr.PROBE_CACHE.path == tmp_path / "qmpctl" / pr.CACHE_NAME


def test_real_probe_measures_every_candidate(images: tuple[Path, Path]) -> None:
    figures, mib, seconds = pr.probe(*images, threads=2)
    assert set(figures) == {"map", "read", "hash"}
    assert all(g > 0 for g in figures.values()) and seconds > 0
    assert mib == 0  # 256 KiB: the whole file, under a MiB


# The verdict is the same whichever method ran ------------------------------

@pytest.mark.parametrize("method", ["map", "read", "hash"])
def test_every_method_finds_and_describes_the_same_pages(images: tuple[Path, Path],
                                                         method: Method) -> None:
    layout = RamLayout.linear(0, PAGES * PAGE_SIZE)
    with RamImage(images[0]) as s, RamImage(images[1]) as d:
        v = compare_by(method, s, d, layout)
    assert v.method == method and v.differing.tolist() == [5, 40]
    first = v.mismatches[0]
    assert (first.page, first.first_diff, first.differing_bytes) == (5, 7, 1)
    assert not first.src_hex.startswith(DIGEST_ONLY)
    if method == "hash":
        assert v.digest_proof is not None and "2^-64" in v.digest_proof
        assert "compared byte by byte" in v.digest_proof
    else:
        assert v.digest_proof is None


# The option ----------------------------------------------------------------

def test_bad_compare_method_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--compare-method 'fast': choose auto, map, read"):
        MigrateOptions.from_kwargs(compare_method="fast")


def test_compare_method_against_verify_hash() -> None:
    assert requested_method(MigrateOptions()) is None
    assert requested_method(MigrateOptions(compare_method="read")) == "read"
    assert compare_method_problems(MigrateOptions(verify="hash", compare_method="map"))
    assert not compare_method_problems(MigrateOptions(verify="hash", compare_method="hash"))
    assert not compare_method_problems(MigrateOptions(compare_method="map"))
    remote = MigrateOptions(dst_host="h", compare_method="read")
    assert "another host" in compare_method_problems(remote)[0]


def test_choice_lines() -> None:
    forced = MethodChoice(method="map", why="forced", detail="--compare-method map")
    assert choice_line(forced) == "map, forced: --compare-method map"
    probed = MethodChoice(method="read", why="probed", probed_at="t", probe_mib=128,
                          probe_s=0.21, figures={"map": 5.99, "read": 12.16},
                          detail="read was the fastest byte method")
    assert choice_line(probed).startswith("read, probed now (map 5.99, read 12.16 GiB/s over "
                                          "128 MiB of each image in 0.21 s)")
