"""Another process's memory through /proc/PID/mem: RAMBlocks read straight
from each QEMU (`verify.ramblocks`), and a byte flipped in one for fault
injection. Needs ptrace rights over the process, which its parent has as root."""

from __future__ import annotations

import os

CHUNK = 16 << 20  # one pread at most: a RAMBlock may be large


def read_memory(pid: int, address: int, size: int) -> bytes:
    """`size` bytes at `address` in process `pid`'s address space."""
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    chunks, done = [], 0
    try:
        while done < size:
            chunk = os.pread(fd, min(size - done, CHUNK), address + done)
            if not chunk:
                raise OSError(f"pid {pid}: short read of {size} bytes at 0x{address:x}")
            chunks.append(chunk)
            done += len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def write_memory(pid: int, address: int, data: bytes) -> None:
    """Overwrite bytes at `address` in process `pid` (fault injection only)."""
    fd = os.open(f"/proc/{pid}/mem", os.O_WRONLY | os.O_CLOEXEC)
    try:
        if os.pwrite(fd, data, address) != len(data):
            raise OSError(f"pid {pid}: short write at 0x{address:x}")
    finally:
        os.close(fd)
