"""What this host can do: KVM and its dirty-tracking capabilities, QEMU binaries.

Everything here reads the host directly (ioctls on /dev/kvm, sysfs, `qemu
--version`); nothing launches a guest. Probes that need a running QEMU live in
`doctor`, which builds on `machine`.
"""

from __future__ import annotations

import fcntl
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import HostError, UsageError

Arch = Literal["x86_64", "aarch64"]
ARCHES: tuple[Arch, ...] = ("x86_64", "aarch64")

# KVM_CHECK_EXTENSION = _IO(KVMIO=0xAE, 0x03); KVM_GET_API_VERSION = _IO(0xAE, 0x00).
_KVM_GET_API_VERSION = 0xAE00
_KVM_CHECK_EXTENSION = 0xAE03

# Capability numbers from include/uapi/linux/kvm.h.
KVM_CAPS: dict[str, int] = {
    "manual-dirty-log-protect2": 168,
    "dirty-log-ring": 192,
    "dirty-log-ring-acq-rel": 223,
    "dirty-log-ring-with-bitmap": 225,
}
KVM_DIRTY_GFN_SIZE = 16  # sizeof(struct kvm_dirty_gfn): the ring caps report bytes

KvmFlavour = Literal["vmx", "svm", "pvm", "arm64", "unknown", "none"]


@dataclass(frozen=True)
class KvmInfo:
    """KVM as seen from userspace. `caps` maps KVM_CAPS names to the ioctl's value."""

    device: str
    accessible: bool
    flavour: KvmFlavour
    api_version: int | None = None
    caps: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def dirty_ring_max_entries(self) -> int:
        """Largest ring QEMU may ask for; arm64 only offers the acquire/release ring."""
        ring_bytes = self.caps.get("dirty-log-ring", 0) or self.caps.get(
            "dirty-log-ring-acq-rel", 0
        )
        return ring_bytes // KVM_DIRTY_GFN_SIZE

    @property
    def has_ring_with_bitmap(self) -> bool:
        return self.caps.get("dirty-log-ring-with-bitmap", 0) > 0

    @property
    def runs_64bit_guests(self) -> bool | None:
        """Known from the module alone for most flavours; None means probe it.

        kvm_pvm runs 16/32-bit guests but only 64-bit guests written for its
        own ABI, so an ordinary 64-bit kernel hangs under it.
        """
        if not self.accessible:
            return False
        if self.flavour == "pvm":
            return False
        if self.flavour in ("vmx", "svm", "arm64"):
            return True
        return None


def kvm_flavour(sys_module: Path = Path("/sys/module")) -> KvmFlavour:
    """Which KVM implementation is loaded, from the module names in sysfs."""
    for name, flavour in (("kvm_pvm", "pvm"), ("kvm_intel", "vmx"), ("kvm_amd", "svm")):
        if (sys_module / name).exists():
            return flavour  # type: ignore[return-value]
    if platform.machine() == "aarch64" and Path("/dev/kvm").exists():
        return "arm64"
    return "unknown" if (sys_module / "kvm").exists() else "none"


def probe_kvm(device: str = "/dev/kvm") -> KvmInfo:
    """Open /dev/kvm and ask KVM_CHECK_EXTENSION for the dirty-tracking caps."""
    flavour = kvm_flavour()
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return KvmInfo(device, False, "none" if flavour == "unknown" else flavour,
                       error=f"{device}: {exc.strerror}")
    try:
        api = fcntl.ioctl(fd, _KVM_GET_API_VERSION)
        caps = {name: fcntl.ioctl(fd, _KVM_CHECK_EXTENSION, num) for name, num in KVM_CAPS.items()}
    finally:
        os.close(fd)
    return KvmInfo(device, True, flavour, api_version=api, caps=caps)


def host_arch() -> str:
    return platform.machine()


def kvm_can_run(arch: Arch) -> bool:
    """KVM only runs guests of the host's own architecture."""
    return host_arch() == arch


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
