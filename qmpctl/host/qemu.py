"""QEMU binaries on this host: where they are and which version they are."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import HostError, UsageError
from .kvm import Arch


@dataclass(frozen=True)
class QemuBinary:
    path: Path
    version: tuple[int, int, int]
    version_text: str

    @property
    def version_str(self) -> str:
        return ".".join(map(str, self.version))


_VERSION_RE = re.compile(r"QEMU emulator version (\d+)\.(\d+)\.(\d+)")
MIN_QEMU = (8, 1, 0)  # ring-with-bitmap handling; 10.0 is what set-up installs


def default_qemu_name(arch: Arch) -> str:
    return f"qemu-system-{arch}"


def find_qemu(arch: Arch, override: str | None = None) -> QemuBinary:
    """Resolve and version-check the QEMU binary for `arch`.

    An explicit path that does not exist is the user's mistake (UsageError);
    a missing default binary means set-up was not run (HostError).
    """
    name = override or default_qemu_name(arch)
    resolved = shutil.which(name)
    if resolved is None:
        if override:
            raise UsageError(f"QEMU binary not found: {override}")
        raise HostError(f"{name} not found in PATH; run the README's set-up command")
    try:
        out = subprocess.run(
            [resolved, "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run {resolved} --version: {exc}") from exc
    match = _VERSION_RE.search(out)
    if match is None:
        raise UsageError(f"{resolved} does not look like QEMU: {out.strip()[:80]!r}")
    version = (int(match[1]), int(match[2]), int(match[3]))
    if version < MIN_QEMU:
        raise UsageError(
            f"{resolved} is QEMU {'.'.join(map(str, version))}; qmpctl needs "
            f">= {'.'.join(map(str, MIN_QEMU))}"
        )
    return QemuBinary(Path(resolved), version, out.splitlines()[0])
