"""The registers of a QEMU's in-kernel arm64 vGICv3 and ITS, read the way
QEMU itself reads them when it saves them: KVM_GET_DEVICE_ATTR on the KVM
device fds, here QEMU's own fds duplicated with pidfd_getfd(2) (root, or
ptrace rights over QEMU). The VM must be paused: KVM refuses (EBUSY) while a
vCPU is in an ioctl.

Groups and encodings: Linux `Documentation/virt/kvm/devices/arm-vgic-its.rst`
and `arm-vgic-v3.rst`: ITS registers by their frame offset, 64-bit;
redistributor registers 32-bit, `attr = MPIDR affinity << 32 | offset`.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
from pathlib import Path
from types import TracebackType

KVM_GET_DEVICE_ATTR = 0x4018AEE2  # _IOW(KVMIO, 0xe2, struct kvm_device_attr)
GRP_REDIST_REGS = 5
GRP_ITS_REGS = 8
ITS_DEVICE = "anon_inode:kvm-arm-vgic-its"
GIC_DEVICE = "anon_inode:kvm-arm-vgic-v3"
_SYS_PIDFD_GETFD = 438  # the same number on every architecture

_libc = ctypes.CDLL(None, use_errno=True)


def device_fds(pid: int, proc: Path = Path("/proc")) -> dict[str, int]:
    """QEMU's KVM device fds by anon inode name (the first of each)."""
    out: dict[str, int] = {}
    for entry in (proc / str(pid) / "fd").iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target in (ITS_DEVICE, GIC_DEVICE):
            out.setdefault(target, int(entry.name))
    return out


def mpidr_attr(cpu: int) -> int:
    """QEMU virt's MPIDR affinity of vCPU `cpu` (16 per cluster with GICv3), as
    the redistributor attribute wants it."""
    return ((cpu // 16) << 40) | ((cpu % 16) << 32)


class VgicRegisters:
    """The in-kernel GIC of process `pid`, open for reading its registers."""

    def __init__(self, pid: int) -> None:
        fds = device_fds(pid)
        missing = [n for n in (ITS_DEVICE, GIC_DEVICE) if n not in fds]
        if missing:
            raise OSError(f"QEMU (pid {pid}) has no {' or '.join(missing)} fd: not an "
                          "in-kernel vGICv3 with an ITS")
        pidfd = os.pidfd_open(pid)
        try:
            self.its_fd, self.gic_fd = (self._getfd(pidfd, fds[n])
                                        for n in (ITS_DEVICE, GIC_DEVICE))
        finally:
            os.close(pidfd)

    @staticmethod
    def _getfd(pidfd: int, fd: int) -> int:
        got = int(_libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0))
        if got < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"pidfd_getfd: {os.strerror(err)}")
        return got

    @staticmethod
    def _get(fd: int, group: int, attr: int, size: int) -> int:
        value = ctypes.create_string_buffer(8)
        request = struct.pack("<IIQQ", 0, group, attr, ctypes.addressof(value))
        fcntl.ioctl(fd, KVM_GET_DEVICE_ATTR, request)
        return int.from_bytes(value.raw[:size], "little")

    def its_reg(self, offset: int) -> int:
        """A 64-bit ITS register (GITS_CBASER 0x80, GITS_BASER<n> 0x100 + 8n)."""
        return self._get(self.its_fd, GRP_ITS_REGS, offset, 8)

    def redist_reg(self, cpu: int, offset: int) -> int:
        """A 32-bit redistributor register of vCPU `cpu` (GICR_CTLR 0x0, ...)."""
        return self._get(self.gic_fd, GRP_REDIST_REGS, mpidr_attr(cpu) | offset, 4)

    def redist_reg64(self, cpu: int, offset: int) -> int:
        """GICR_PROPBASER (0x70), GICR_PENDBASER (0x78): two 32-bit halves."""
        return self.redist_reg(cpu, offset) | self.redist_reg(cpu, offset + 4) << 32

    def close(self) -> None:
        os.close(self.its_fd)
        os.close(self.gic_fd)

    def __enter__(self) -> VgicRegisters:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None
                 ) -> None:
        self.close()
