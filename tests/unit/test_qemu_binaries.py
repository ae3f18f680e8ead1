"""Knowing QEMU binaries: what their own output says (pure parsers), private
prefixes, and naming one by path or version."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qmpctl.core.cache import JsonCache
from qmpctl.core.errors import UsageError
from qmpctl.host import qemu
from qmpctl.host.qemu import (
    MachineType,
    QemuBinary,
    is_version,
    parse_cpu_help,
    parse_data_dirs,
    parse_machine_help,
    parse_version,
    prefix_env,
    prefix_of,
    private_prefixes,
    select_version,
    unknown_version,
)

# Excerpts of the real outputs (Debian's 7.2.22 and 10.0.2).
MACHINES_7_2 = """\
Supported machines are:
microvm              microvm (i386)
pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)
pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)
pc-i440fx-7.1        Standard PC (i440FX + PIIX, 1996)
none                 empty machine
"""
MACHINES_ARM_10_0 = """\
Supported machines are:
virt                 QEMU 10.0 ARM Virtual Machine (alias of virt-10.0)
virt-10.0            QEMU 10.0 ARM Virtual Machine
virt-7.0             QEMU 7.0 ARM Virtual Machine (deprecated)
virt-7.2             QEMU 7.2 ARM Virtual Machine
"""
CPUS_X86 = """\
Available CPUs:
  486                   (alias configured by machine type)
  qemu64                (alias configured by machine type)
  qemu64-v1             QEMU Virtual CPU version 2.5+

Recognized CPUID flags:
  3dnow 3dnowext 3dnowprefetch abm ace2
"""
CPUS_ARM = "Available CPUs:\n  cortex-a57\n  cortex-a72\n  max\n"


def binary(version: tuple[int, int, int], path: str = "/usr/bin/qemu-system-x86_64"
           ) -> QemuBinary:
    return QemuBinary(Path(path), version, f"QEMU emulator version {version}")


def test_parse_version() -> None:
    assert parse_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n"
                         "Copyright (c) 2003-2022") == (7, 2, 22)
    assert parse_version("qemu-system-x86_64: error while loading shared libraries") is None


def test_data_dirs_from_L_help_own_directory_first() -> None:
    text = ("/work/.qemu/7.2/usr/bin/../share/qemu\n/work/.qemu/7.2/usr/bin/../share/seabios\n"
            "/work/.qemu/7.2/usr/bin/../lib/ipxe/qemu\n")
    assert parse_data_dirs(text) == [Path("/work/.qemu/7.2/usr/share/qemu"),
                                     Path("/work/.qemu/7.2/usr/share/seabios"),
                                     Path("/work/.qemu/7.2/usr/lib/ipxe/qemu")]


def test_machine_help_aliases_and_deprecation() -> None:
    x86 = parse_machine_help(MACHINES_7_2)
    assert x86["pc"] == MachineType("pc", "pc-i440fx-7.2")
    assert x86["pc-i440fx-7.2"] == MachineType("pc-i440fx-7.2")
    assert "Supported" not in x86 and "none" in x86
    arm = parse_machine_help(MACHINES_ARM_10_0)
    assert arm["virt"].alias_of == "virt-10.0"
    assert arm["virt-7.0"].deprecated and not arm["virt-7.2"].deprecated


def test_cpu_help_models_not_cpuid_flags() -> None:
    assert parse_cpu_help(CPUS_X86) == {"486", "qemu64", "qemu64-v1"}
    assert parse_cpu_help("Available CPUs:\nx86 qemu64  QEMU Virtual CPU version 2.5+\n") == {
        "qemu64"}
    assert parse_cpu_help(CPUS_ARM) == {"cortex-a57", "cortex-a72", "max"}


def test_version_or_path() -> None:
    assert is_version("7.2") and is_version("10.0") and is_version("7.2.22")
    assert not is_version("7") and not is_version("/usr/bin/qemu-system-x86_64")
    assert not is_version("qemu-system-x86_64")


def test_select_by_release_or_full_version() -> None:
    system, old = binary((10, 0, 2)), binary((7, 2, 22), "/r/.qemu/7.2/usr/bin/q")
    known = [system, old]
    assert select_version("7.2", known) is old
    assert select_version("7.2.22", known) is old
    assert select_version("10.0", known) is system
    assert select_version("8.2", known) is None
    assert unknown_version("x86_64", "8.2", known).startswith(
        "no QEMU 8.2 for x86_64 is known; known: 10.0 (/usr/bin/qemu-system-x86_64), "
        "7.2 (/r/.qemu/7.2/usr/bin/q)")


def make_prefix(root: Path, name: str, version: str, libs: bool = False) -> Path:
    """A fake private prefix: a stamp, a 'QEMU' script answering -version and
    -L help the way a relocatable build does, optionally a library."""
    prefix = root / name
    bindir = prefix / "usr" / "bin"
    bindir.mkdir(parents=True)
    for arch in ("x86_64", "aarch64"):
        script = bindir / f"qemu-system-{arch}"
        script.write_text(
            "#!/bin/sh\n"
            f'case "$1" in -version) echo "QEMU emulator version {version} (test)";;\n'
            '  -L) echo "$(dirname "$0")/../share/qemu";; esac\n')
        script.chmod(0o755)
    (prefix / "usr" / "lib" / "x86_64-linux-gnu" / "qemu").mkdir(parents=True)
    if libs:
        (prefix / "usr" / "lib" / "x86_64-linux-gnu" / "libslirp.so.0").write_bytes(b"")
    (prefix / ".qmpctl-prefix").write_text("qemu-system-x86=1:7.2\n")
    return prefix


def test_private_prefixes_need_their_stamp(tmp_path: Path) -> None:
    done = make_prefix(tmp_path, "7.2", "7.2.22")
    (tmp_path / "half").mkdir()  # an install that did not finish
    assert private_prefixes(tmp_path) == [done]
    assert prefix_of(done / "usr" / "bin" / "qemu-system-x86_64") == done
    assert prefix_of(Path("/usr/bin/qemu-system-x86_64")) is None


def test_prefix_libraries_become_ld_library_path(tmp_path: Path) -> None:
    plain = make_prefix(tmp_path, "7.2", "7.2.22")
    assert prefix_env(plain) == ()  # QEMU's own modules (usr/lib/*/qemu) need nothing
    with_libs = make_prefix(tmp_path, "7.1", "7.1.0", libs=True)
    assert prefix_env(with_libs) == (
        ("LD_LIBRARY_PATH", str(with_libs / "usr" / "lib" / "x86_64-linux-gnu")),)


def test_find_qemu_by_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = make_prefix(tmp_path, "7.2", "7.2.22", libs=True)
    monkeypatch.setenv("QMPCTL_QEMU_DIR", str(tmp_path))
    monkeypatch.setattr(qemu, "candidate_paths", lambda arch: [
        prefix / "usr" / "bin" / f"qemu-system-{arch}"])
    found = qemu.find_qemu("x86_64", "7.2")
    assert found.version == (7, 2, 22) and found.prefix == prefix
    assert found.data_dir == prefix / "usr" / "share" / "qemu"
    assert dict(found.env)["LD_LIBRARY_PATH"].endswith("usr/lib/x86_64-linux-gnu")
    # The same binary named by path is the same QemuBinary, environment and all.
    assert qemu.find_qemu("x86_64", str(found.path)) == found
    with pytest.raises(UsageError, match=r"^no QEMU 9.9 for x86_64 is known; known: 7.2 \("):
        qemu.find_qemu("x86_64", "9.9")


def test_too_old_a_qemu_is_refused(tmp_path: Path) -> None:
    prefix = make_prefix(tmp_path, "6.2", "6.2.0")
    with pytest.raises(UsageError, match=r"is QEMU 6.2.0; qmpctl needs >= 7.2.0"):
        qemu.probe_binary(prefix / "usr" / "bin" / "qemu-system-x86_64")


def test_release_and_describe() -> None:
    b = binary((7, 2, 22), "/p/usr/bin/qemu-system-x86_64")
    assert (b.release, b.version_str) == ("7.2", "7.2.22")
    assert b.describe() == "QEMU 7.2.22 (/p/usr/bin/qemu-system-x86_64)"
    assert os.fspath(b.path) == "/p/usr/bin/qemu-system-x86_64"


async def test_machine_starts_the_binary_with_its_environment(tmp_path: Path) -> None:
    """A private prefix's LD_LIBRARY_PATH reaches the QEMU process (a fake one
    that records its environment and exits: the launch then fails, as it must)."""
    from qmpctl.core.errors import LaunchError
    from qmpctl.qemu.cmdline import MachineSpec
    from qmpctl.qemu.machine import QemuMachine

    fake = tmp_path / "qemu"
    fake.write_text(f'#!/bin/sh\necho "$LD_LIBRARY_PATH" > {tmp_path}/env\n')
    fake.chmod(0o755)
    spec = MachineSpec(arch="x86_64", binary=fake, accel="tcg", ram_mib=32,
                       ram_path=tmp_path / "ram", qmp_socket=tmp_path / "qmp.sock",
                       serial_socket=tmp_path / "s.sock", serial_log=tmp_path / "serial",
                       env=(("LD_LIBRARY_PATH", "/p/usr/lib/x86_64-linux-gnu"),), name="fake")
    with pytest.raises(LaunchError, match="QEMU exited during start-up"):
        await QemuMachine(spec, tmp_path / "log").launch(timeout=10)
    assert (tmp_path / "env").read_text() == "/p/usr/lib/x86_64-linux-gnu\n"


def test_a_binary_is_probed_once_per_file_across_runs(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A later run (a new process: the in-process cache cleared) takes the
    facts from the cache file; a rebuilt binary is probed again."""
    monkeypatch.setattr(qemu, "BINARY_CACHE", JsonCache("b.json", QemuBinary, tmp_path / "b.json"))
    path = make_prefix(tmp_path, "7.2", "7.2.22", libs=True) / "usr" / "bin" / "qemu-system-x86_64"
    ran: list[list[str]] = []
    real_run = qemu._run

    def counting(argv: list[str], env: dict[str, str] | None = None) -> str:
        ran.append(argv)
        return real_run(argv, env)

    monkeypatch.setattr(qemu, "_run", counting)
    first = qemu.probe_binary(path)
    assert len(ran) == 2  # -version, -L help
    qemu._known.cache_clear()
    assert qemu.probe_binary(path) == first and len(ran) == 2
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # rebuilt
    qemu._known.cache_clear()
    assert qemu.probe_binary(path) == first and len(ran) == 4
    assert len(qemu.BINARY_CACHE.load()) == 1  # the old file's entry went
