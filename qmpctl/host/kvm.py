"""KVM as seen from userspace: which implementation, and its dirty-tracking caps.

Everything here reads the host directly (ioctls on /dev/kvm, sysfs); nothing
launches a guest. `KvmInfo` is also the report's description of the host.
"""

from __future__ import annotations

import fcntl
import os
import platform
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, computed_field

from ..core.model import Model

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

RING_SIZE_CAPS = ("dirty-log-ring", "dirty-log-ring-acq-rel")  # their value is bytes


def ring_size_text(entries: int) -> str:
    """A dirty ring's size with its units: entries per vCPU, and bytes (pure)."""
    if not entries:
        return "no dirty ring"
    return (f"{entries} entries per vCPU ({entries * KVM_DIRTY_GFN_SIZE // 1024} KiB, "
            f"{KVM_DIRTY_GFN_SIZE} bytes an entry)")


def cap_text(name: str, value: int) -> str:
    """KVM_CHECK_EXTENSION's answer in words where it is a size (pure)."""
    if name in RING_SIZE_CAPS and value:
        return f"{value} bytes a ring at most ({value // KVM_DIRTY_GFN_SIZE} entries)"
    return str(value)


KvmFlavour = Literal["vmx", "svm", "pvm", "arm64", "unknown", "none"]


class KvmInfo(Model):
    """KVM on this host. `caps` maps KVM_CAPS names to KVM_CHECK_EXTENSION's value."""

    model_config = ConfigDict(frozen=True)

    device: str
    accessible: bool
    flavour: KvmFlavour
    api_version: int | None = None
    caps: dict[str, int] = Field(default_factory=dict)
    error: str | None = None

    @computed_field  # type: ignore[prop-decorator]
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

    @computed_field  # type: ignore[prop-decorator]
    @property
    def runs_64bit_guests(self) -> bool | None:
        """Known from the module alone for most flavours; None means probe it.

        kvm_pvm runs 16/32-bit guests but only 64-bit guests written for its
        own ABI, so an ordinary 64-bit kernel hangs under it.
        """
        if not self.accessible or self.flavour == "pvm":
            return False
        if self.flavour in ("vmx", "svm", "arm64"):
            return True
        return None

    @property
    def runs_pae_guests(self) -> bool | None:
        """Whether a 32-bit guest may turn on PAE paging; None: not known.

        kvm_pvm resets the x86 wave guest at the CR0.PG write that enables PAE
        paging (2 MiB pages; measured here, QEMU 10.0), as it hung 32-bit
        paging with 4 MiB pages: the guest pages only to reach RAM above 4 GiB.
        """
        if not self.accessible or self.flavour == "pvm":
            return False
        if self.flavour in ("vmx", "svm"):
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
        return KvmInfo(device=device, accessible=False,
                       flavour="none" if flavour == "unknown" else flavour,
                       error=f"{device}: {exc.strerror}")
    try:
        api = fcntl.ioctl(fd, _KVM_GET_API_VERSION)
        caps = {name: fcntl.ioctl(fd, _KVM_CHECK_EXTENSION, num) for name, num in KVM_CAPS.items()}
    finally:
        os.close(fd)
    return KvmInfo(device=device, accessible=True, flavour=flavour, api_version=api, caps=caps)


LAB_ENV = "QMPCTL_LAB"  # set inside a qmpctl lab (its architecture): a KVM host under TCG


def inside_lab() -> str | None:
    """The architecture of the qmpctl lab this process runs in, or None: its
    KVM is nested under TCG, 20-50x slower than a real host's."""
    return os.environ.get(LAB_ENV) or None


def host_arch() -> str:
    return platform.machine()


def kvm_can_run(arch: Arch) -> bool:
    """KVM only runs guests of the host's own architecture."""
    return host_arch() == arch
