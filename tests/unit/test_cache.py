"""core.cache: one JSON file per kind of learned fact, best effort both ways."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from qmpctl.core.cache import JsonCache, cache_dir, file_key


@dataclass(frozen=True)
class Fact:
    path: Path
    version: tuple[int, int, int]


def test_entries_round_trip_and_keep_decides_what_stays(tmp_path: Path) -> None:
    cache = JsonCache("f.json", Fact, tmp_path / "sub" / "f.json")
    assert cache.load() == {} and cache.get("a") is None  # no file yet
    a, b = Fact(Path("/a"), (1, 2, 3)), Fact(Path("/b"), (4, 5, 6))
    cache.store("a", a)
    cache.store("b", b)
    assert cache.load() == {"a": a, "b": b}
    cache.store("c", a, keep=lambda key, _fact: key != "a")
    assert cache.load() == {"b": b, "c": a}
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["f.json"]  # no temporary left


@pytest.mark.parametrize("text", ["{not json", '{"a": {"path": 3}}', "[]"])
def test_a_corrupt_file_reads_as_empty(tmp_path: Path, text: str) -> None:
    (tmp_path / "f.json").write_text(text)
    assert JsonCache("f.json", Fact, tmp_path / "f.json").load() == {}


def test_a_cache_that_cannot_be_written_is_no_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")  # the cache's directory would be a file
    cache = JsonCache("f.json", Fact, blocked / "f.json")
    cache.store("a", Fact(Path("/a"), (1, 2, 3)))
    assert cache.load() == {}


def test_where_and_file_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "qmpctl"
    assert JsonCache("f.json", Fact).path == tmp_path / "qmpctl" / "f.json"
    target = tmp_path / "bin"
    target.write_text("x")
    before = file_key(target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert file_key(target) != before and str(target) in before
