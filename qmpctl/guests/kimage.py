"""Is a `--kernel` file an image QEMU can boot on this arch? Checked before
launch, so a wrong path or a truncated build is one usage error naming it,
not a QEMU that fails to start (or boots garbage) after the source is up."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

from ..host.kvm import Arch

ELF_MACHINES: dict[Arch, dict[int, str]] = {
    "x86_64": {3: "i386", 62: "x86-64"},
    "aarch64": {183: "AArch64"},
}
MULTIBOOT_MAGIC = 0x1BADB002  # searched in the first 8 KiB, 4-byte aligned
MULTIBOOT_SEARCH = 8192
HEAD = 64 << 10


def elf_problem(head: bytes, size: int, read_at: Callable[[int, int], bytes],
                arch: Arch) -> str | None:
    """An ELF file's header and loadable segments against its size (pure but
    for `read_at(offset, n)`)."""
    if len(head) < 52 or head[5] != 1 or head[4] not in (1, 2):
        return "a truncated or big-endian ELF header"
    wide = head[4] == 2
    machine = struct.unpack_from("<H", head, 18)[0]
    if machine not in ELF_MACHINES[arch]:
        return (f"an ELF file for machine {machine}, not {arch} "
                f"({' or '.join(ELF_MACHINES[arch].values())})")
    phoff, phentsize, phnum = (struct.unpack_from("<Q", head, 32)[0],
                               *struct.unpack_from("<HH", head, 54)) if wide else \
        (struct.unpack_from("<I", head, 28)[0], *struct.unpack_from("<HH", head, 42))
    if phnum == 0 or phoff + phnum * phentsize > size:
        return f"an ELF file whose program headers lie beyond its {size} bytes (truncated?)"
    table = read_at(phoff, phnum * phentsize)
    loads = 0
    for i in range(phnum):
        entry = table[i * phentsize:(i + 1) * phentsize]
        p_type = struct.unpack_from("<I", entry, 0)[0]
        offset, filesz = (struct.unpack_from("<QxxxxxxxxxxxxxxxxQ", entry, 8) if wide
                          else struct.unpack_from("<IxxxxxxxxI", entry, 4))
        if p_type == 1:  # PT_LOAD
            loads += 1
            if offset + filesz > size:
                return (f"a truncated ELF file: segment {i} ends at byte {offset + filesz}, "
                        f"the file has {size}")
    return None if loads else "an ELF file with nothing to load (no PT_LOAD segment)"


def image_problem(path: Path, arch: Arch) -> str | None:
    """Why `path` is not a kernel image QEMU boots on `arch` (ELF, multiboot,
    bzImage on x86; ELF, Image, gzip or a flat binary on arm64), or None."""
    size = path.stat().st_size
    if size == 0:
        return "an empty file"
    with path.open("rb") as f:
        head = f.read(HEAD)

        def read_at(offset: int, n: int) -> bytes:
            f.seek(offset)
            return f.read(n)

        if head.startswith(b"\x7fELF"):
            return elf_problem(head, size, read_at, arch)
    if arch == "x86_64":
        if head[0x202:0x206] == b"HdrS":  # the Linux boot protocol (bzImage)
            return None
        if any(struct.unpack_from("<I", head, o)[0] == MULTIBOOT_MAGIC
               for o in range(0, min(len(head), MULTIBOOT_SEARCH) - 3, 4)):
            return None
        return ("not a kernel image QEMU boots on x86: no ELF, multiboot or Linux boot "
                "protocol header")
    if head[0x38:0x3C] == b"ARM\x64" or head.startswith(b"\x1f\x8b"):
        return None  # arm64 Image, or a gzip-compressed one
    if all(32 <= b < 127 or b in b"\t\n\r" for b in head[:4096]):
        return "a text file, not a kernel image (ELF, Image or a flat binary)"
    return None  # a flat binary (kvm-unit-tests' arm64 *.flat): anything goes
