"""Another process's memory through /proc/PID/mem (here our own: the same
rights a root parent has over its QEMU)."""

from __future__ import annotations

import ctypes
import os

import pytest

from qmpctl.host.procmem import read_memory, write_memory


def test_reads_and_writes_a_process_s_memory_at_an_address() -> None:
    buf = ctypes.create_string_buffer(b"qmpctl-procmem", 32)
    address = ctypes.addressof(buf)
    assert read_memory(os.getpid(), address, 14) == b"qmpctl-procmem"
    write_memory(os.getpid(), address + 6, b"_")
    assert buf.value == b"qmpctl_procmem"
    with pytest.raises(OSError):  # nothing is mapped at 0
        read_memory(os.getpid(), 0, 1)
