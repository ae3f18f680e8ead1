"""The QMP schema cache: a binary's schema is read by a probe QEMU once, then
taken from the cache until the file changes; a failed probe is not kept."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from qmpctl.core.cache import JsonCache
from qmpctl.host.qemu import QemuBinary
from qmpctl.qemu import schema as schema_mod
from qmpctl.qemu.rundir import RunDir
from qmpctl.qemu.schema import QemuSchema, binary_key, cached_schema


def entries(cache: Path) -> dict[str, QemuSchema]:
    return JsonCache("qmp-schema.json", QemuSchema, cache).load()


def binary(tmp_path: Path) -> QemuBinary:
    path = tmp_path / "qemu-system-x86_64"
    path.write_bytes(b"not really QEMU")
    return QemuBinary(path, (10, 0, 2), "QEMU emulator version 10.0.2")


def test_a_schema_is_probed_once_per_binary_file(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    qemu, cache, probes = binary(tmp_path), tmp_path / "cache" / "qmp-schema.json", []

    async def probe(arch: str, b: QemuBinary, run: RunDir, tag: str = "") -> QemuSchema:
        probes.append(tag)
        return QemuSchema(arch=arch, binary=str(b.path), version=b.version_str,
                          migration_capabilities=["events", f"probe{len(probes)}"])

    monkeypatch.setattr(schema_mod, "probe_schema", probe)
    run = RunDir(tmp_path)
    first = asyncio.run(cached_schema("x86_64", qemu, run, cache=cache))
    again = asyncio.run(cached_schema("x86_64", qemu, run, cache=cache))
    assert probes == ["schema"] and again == first
    assert list(entries(cache)) == [binary_key(qemu)]
    st = qemu.path.stat()
    os.utime(qemu.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # a rebuilt binary
    changed = asyncio.run(cached_schema("x86_64", qemu, run, cache=cache))
    assert len(probes) == 2 and changed.migration_capabilities[-1] == "probe2"
    assert list(entries(cache)) == [binary_key(qemu)]  # the old one went


def test_a_failed_probe_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    qemu, cache = binary(tmp_path), tmp_path / "qmp-schema.json"

    async def probe(arch: str, b: QemuBinary, run: RunDir, tag: str = "") -> QemuSchema:
        return QemuSchema(arch=arch, binary=str(b.path), version=None, error="no monitor")

    monkeypatch.setattr(schema_mod, "probe_schema", probe)
    got = asyncio.run(cached_schema("x86_64", qemu, RunDir(tmp_path), cache=cache))
    assert got.error == "no monitor" and not cache.exists()


def test_a_corrupt_cache_is_probed_again(tmp_path: Path) -> None:
    cache = tmp_path / "qmp-schema.json"
    cache.write_text("{not json")
    assert entries(cache) == {}
