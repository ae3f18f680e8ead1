"""QEMU binaries on this host: where they are, which version, which data
directory, and which machine types they offer.

qmpctl knows the system QEMU (`qemu-system-<arch>` on PATH) and every QEMU
unpacked by set-up into a private prefix under `.qemu/` (or
$QMPCTL_QEMU_DIR): `tools/install-bookworm-qemu.sh` puts Debian 12's own 7.2
in `.qemu/7.2`, marked complete by its `.qmpctl-prefix` file. A user names a
binary by path or by a version one of them reports (`7.2`, `10.0`, `7.2.22`).

Facts come from the binaries themselves: `-version`, `-L help` (its data
directories; QEMU builds are relocatable, so a binary in PREFIX/usr/bin uses
PREFIX/usr/share/qemu) and `-machine help` (machine types and aliases).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..core.cache import JsonCache, file_key
from ..core.errors import HostError, UsageError
from .kvm import Arch

PREFIX_STAMP = ".qmpctl-prefix"  # written last by tools/install-bookworm-qemu.sh


@dataclass(frozen=True)
class QemuBinary:
    """One QEMU binary, and what it needs to run as itself."""

    path: Path
    version: tuple[int, int, int]
    version_text: str
    # Its own data directory (firmware, option ROMs), passed as -L so a
    # private prefix never picks up the system QEMU's files; None: unknown.
    data_dir: Path | None = None
    # Environment it must be started with (LD_LIBRARY_PATH for libraries that
    # set-up unpacked into its prefix); empty for the system QEMU.
    env: tuple[tuple[str, str], ...] = ()
    prefix: Path | None = None  # the private prefix it was unpacked into, if any

    @property
    def version_str(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def release(self) -> str:
        """MAJOR.MINOR, as versioned machine types name it (`7.2`)."""
        return f"{self.version[0]}.{self.version[1]}"

    def describe(self) -> str:
        return f"QEMU {self.version_str} ({self.path})"


_VERSION_RE = re.compile(r"QEMU emulator version (\d+)\.(\d+)\.(\d+)")
_VERSION_ARG_RE = re.compile(r"^\d+\.\d+(\.\d+)?$")
# Debian 12's own QEMU, the oldest set-up installs; cross-version runs use it.
MIN_QEMU = (7, 2, 0)


def parse_version(text: str) -> tuple[int, int, int] | None:
    """(7, 2, 22) from `QEMU emulator version 7.2.22 (Debian ...)` (pure)."""
    match = _VERSION_RE.search(text)
    return None if match is None else (int(match[1]), int(match[2]), int(match[3]))


def parse_data_dirs(text: str) -> list[Path]:
    """`-L help` output: one data directory a line, the binary's own first (pure)."""
    return [Path(os.path.normpath(line.strip())) for line in text.splitlines()
            if line.strip().startswith("/")]


@dataclass(frozen=True)
class MachineType:
    """One line of `-machine help`."""

    name: str
    alias_of: str | None = None  # `pc` -> `pc-i440fx-7.2`
    deprecated: bool = False


def parse_machine_help(text: str) -> dict[str, MachineType]:
    """`-machine help` -> machine types by name (pure).

    `pc   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)` is the
    type `pc`, an alias of `pc-i440fx-7.2`; `(deprecated)` marks types the
    next releases will remove.
    """
    types: dict[str, MachineType] = {}
    for line in text.splitlines():
        if not line or line[0].isspace() or line.startswith("Supported machines"):
            continue
        name, _, rest = line.partition(" ")
        alias = re.search(r"\(alias of ([^)\s]+)\)", rest)
        types[name] = MachineType(name, alias[1] if alias else None, "(deprecated)" in rest)
    return types


def parse_cpu_help(text: str) -> set[str]:
    """`-cpu help`: the CPU model names (pure). arm lists `  cortex-a57`,
    x86 `  qemu64  QEMU Virtual CPU version 2.5+` (older: `x86 qemu64 ...`),
    then its CPUID flags under a second heading, which are not models."""
    models: set[str] = set()
    headings = 0
    for line in text.splitlines():
        words = line.split()
        if words and line.rstrip().endswith(":") and not line[0].isspace():
            headings += 1
            if headings > 1:
                break
            continue
        if not words:
            continue
        if words[0] == "x86" and len(words) > 1:
            models.add(words[1])
        elif line[0].isspace():
            models.add(words[0])
    return models


def default_qemu_name(arch: Arch) -> str:
    return f"qemu-system-{arch}"


def qemu_dir() -> Path:
    """Where set-up unpacks private QEMU prefixes ($QMPCTL_QEMU_DIR, else .qemu/)."""
    env = os.environ.get("QMPCTL_QEMU_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".qemu"


def private_prefixes(root: Path | None = None) -> list[Path]:
    """Complete private prefixes under `root` (those with their stamp), by name."""
    root = qemu_dir() if root is None else root
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if (p / PREFIX_STAMP).is_file()),
                  key=lambda p: p.name)


def prefix_of(binary: Path) -> Path | None:
    """The private prefix `binary` (PREFIX/usr/bin/NAME) was unpacked into."""
    bindir = binary.resolve().parent
    prefix = bindir.parent.parent
    if bindir.name == "bin" and bindir.parent.name == "usr" and (prefix / PREFIX_STAMP).is_file():
        return prefix
    return None


def prefix_env(prefix: Path) -> tuple[tuple[str, str], ...]:
    """LD_LIBRARY_PATH for the shared libraries set-up unpacked into `prefix`
    (only when there are any: QEMU's own modules live in a subdirectory)."""
    dirs = [d for pattern in ("usr/lib/*-linux-gnu", "lib/*-linux-gnu")
            for d in sorted(prefix.glob(pattern))
            if d.is_dir() and any(f.is_file() for f in d.glob("*.so*"))]
    return (("LD_LIBRARY_PATH", ":".join(map(str, dirs))),) if dirs else ()


def _run(argv: list[str], env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False,
                              env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run {' '.join(argv)}: {exc}") from exc
    return proc.stdout + proc.stderr


BINARY_CACHE_VERSION = 1  # bump when a probe learns more: old entries then miss
BINARY_CACHE = JsonCache("qemu-binaries.json", QemuBinary)


def _probe(path: Path, env: tuple[tuple[str, str], ...], prefix: Path | None) -> QemuBinary:
    environ = {**os.environ, **dict(env)}
    out = _run([str(path), "-version"], environ)
    version = parse_version(out)
    if version is None:
        raise UsageError(f"{path} does not look like QEMU: {out.strip()[:80]!r}")
    dirs = parse_data_dirs(_run([str(path), "-L", "help"], environ))
    return QemuBinary(path, version, out.splitlines()[0], data_dir=dirs[0] if dirs else None,
                      env=env, prefix=prefix)


@functools.cache
def _known(key: str, path: Path, env: tuple[tuple[str, str], ...],
           prefix: Path | None) -> QemuBinary:
    """This binary file's facts: from the cache if it was probed before
    (two QEMU processes less at every run's start), else probed now."""
    if (hit := BINARY_CACHE.get(key)) is not None:
        return hit
    binary = _probe(path, env, prefix)
    BINARY_CACHE.store(key, binary, lambda _key, old: old.path != path and old.path.exists())
    return binary


def probe_binary(path: Path) -> QemuBinary:
    """Version, data directory and environment of the QEMU at `path` (cached
    per file: `file_key`, with the prefix's environment)."""
    prefix = prefix_of(path)
    env = prefix_env(prefix) if prefix is not None else ()
    key = f"v{BINARY_CACHE_VERSION} {file_key(path)} prefix={prefix} env={env}"
    binary = _known(key, path, env, prefix)
    if binary.version < MIN_QEMU:
        raise UsageError(f"{path} is QEMU {binary.version_str}; qmpctl needs "
                         f">= {'.'.join(map(str, MIN_QEMU))}")
    return binary


def candidate_paths(arch: Arch) -> list[Path]:
    """Every QEMU binary for `arch` qmpctl knows: the system one, then each prefix's."""
    found = []
    if (system := shutil.which(default_qemu_name(arch))) is not None:
        found.append(Path(system))
    for prefix in private_prefixes():
        binary = prefix / "usr" / "bin" / default_qemu_name(arch)
        if binary.is_file() and os.access(binary, os.X_OK):
            found.append(binary)
    return found


def known_qemus(arch: Arch) -> list[QemuBinary]:
    """The usable ones among `candidate_paths` (doctor shows why others are not)."""
    known = []
    for path in candidate_paths(arch):
        try:
            known.append(probe_binary(path))
        except UsageError:
            continue
    return known


def is_version(name: str) -> bool:
    """`7.2`, `10.0`, `7.2.22`: a version, not a path or command name (pure)."""
    return _VERSION_ARG_RE.match(name) is not None


def select_version(wanted: str, known: list[QemuBinary]) -> QemuBinary | None:
    """The first known binary whose version is `wanted` (MAJOR.MINOR or the
    full MAJOR.MINOR.MICRO) (pure)."""
    return next((b for b in known if wanted in (b.release, b.version_str)), None)


def unknown_version(arch: Arch, wanted: str, known: list[QemuBinary]) -> str:
    """The usage error for a version no known binary reports (pure)."""
    listed = ", ".join(f"{b.release} ({b.path})" for b in known) or "none"
    return (f"no QEMU {wanted} for {arch} is known; known: {listed} (`qmpctl doctor` lists "
            "them; set-up installs 7.2 into .qemu/7.2; or give a path)")


def find_qemu(arch: Arch, override: str | None = None) -> QemuBinary:
    """Resolve and version-check the QEMU binary for `arch`: the system one,
    a version qmpctl knows (`7.2`), or a path / command name.

    An explicit name that does not exist is the user's mistake (UsageError);
    a missing default binary means set-up was not run (HostError).
    """
    if override is not None and is_version(override):
        known = known_qemus(arch)
        if (chosen := select_version(override, known)) is None:
            raise UsageError(unknown_version(arch, override, known))
        return chosen
    name = override or default_qemu_name(arch)
    resolved = shutil.which(name)
    if resolved is None:
        if override:
            raise UsageError(f"QEMU binary not found: {override}")
        raise HostError(f"{name} not found in PATH; run the README's set-up command")
    return probe_binary(Path(resolved))


@functools.cache
def _machine_types(path: Path, mtime: float, env: tuple[tuple[str, str], ...],
                   ) -> dict[str, MachineType]:
    out = _run([str(path), "-machine", "help"], {**os.environ, **dict(env)})
    types = parse_machine_help(out)
    if not types:
        raise UsageError(f"{path} -machine help listed no machine types: {out.strip()[:80]!r}")
    return types


def machine_types(binary: QemuBinary) -> dict[str, MachineType]:
    """`binary`'s machine types and their aliases, from `-machine help` (cached)."""
    return _machine_types(binary.path, binary.path.stat().st_mtime, binary.env)


@functools.cache
def _cpu_models(path: Path, mtime: float, env: tuple[tuple[str, str], ...]) -> frozenset[str]:
    return frozenset(parse_cpu_help(_run([str(path), "-cpu", "help"],
                                         {**os.environ, **dict(env)})))


def cpu_models(binary: QemuBinary) -> frozenset[str]:
    """`binary`'s CPU models, from `-cpu help` (cached)."""
    return _cpu_models(binary.path, binary.path.stat().st_mtime, binary.env)
