"""Device state as QEMU migrates it, read back from a paused QEMU.

Some state lives only where QEMU's monitor cannot read it: KVM's in-kernel
GICv3 and ITS keep their registers in the kernel, which answers their device
ioctls to QEMU alone. QEMU itself reads them (each device's pre_save) whenever
it saves device state, so migrating a *paused* QEMU to a file yields exactly
what its devices hold, in QEMU's own words:

* `x-ignore-shared` keeps shared RAM (qmpctl's guest RAM is a shared file)
  out of the stream: under a megabyte, written in milliseconds;
* no vCPU runs and the run state does not change (paused -> postmigrate,
  from which `cont` still starts it), so no vm-state handler fires: the ITS
  and GIC table saves, which write guest RAM, do not run;
* every other migration capability is off for the dump and restored after,
  so the run's own migration settings stay as they were.

The stream (QEMU's migration/savevm.c) is parsed with the JSON description
QEMU appends to it (the vmdesc: every device's fields with their sizes), as
QEMU's own scripts/analyze-migration.py does. Only what the dump produces is
understood: RAM sections of plain pages, then device sections. Parsing stops
once the wanted devices are read, so devices further on that the vmdesc
cannot describe (custom savers) do not matter.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import QmpctlError
from .machine import QemuMachine

MAGIC, VERSION = 0x5145564D, 3  # "QEVM"
EOF, START, PART, END, FULL, SUBSECTION, VMDESC, CONFIGURATION, COMMAND = range(9)
FOOTER = 0x7E
# RAM_SAVE_FLAG_* (migration/ram.c); the low bits of each page header
RAM_ZERO, RAM_MEM_SIZE, RAM_PAGE, RAM_EOS, RAM_CONTINUE = 0x02, 0x04, 0x08, 0x10, 0x20
RAM_MULTIFD_FLUSH = 0x200
DUMP_CAPABILITIES = {"x-ignore-shared": True}
_INT = ("int", "uint", "bool")


class StreamError(QmpctlError):
    """The dump is not a stream this reader understands (says where and why)."""


@dataclass(frozen=True)
class DeviceSection:
    """One device's saved fields: name -> a list of its elements (a field
    saved several times, like one struct per CPU, has one element each; an
    array field's element is a list). Integers are decoded, other fields kept
    as bytes, structs and subsections as nested dicts of the same shape."""

    idstr: str
    instance_id: int
    version: int
    fields: dict[str, list[Any]] = field(repr=False)

    def one(self, name: str) -> Any:
        """The field saved exactly once."""
        values = self.fields.get(name)
        if values is None or len(values) != 1:
            raise StreamError(f"{self.idstr}: field {name!r} saved "
                              f"{0 if values is None else len(values)} times, not once")
        return values[0]


class _Reader:
    def __init__(self, data: bytes, end: int) -> None:
        self.data, self.pos, self.end = data, 0, end

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise StreamError(f"the stream ends at byte {self.end}, inside a record "
                              f"wanting {n} bytes at {self.pos}")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def u8(self) -> int:
        return self.take(1)[0]

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < self.end else None

    def be(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def idstr(self) -> str:
        return self.take(self.u8()).decode("ascii", "replace")


def vmdesc(data: bytes) -> tuple[dict[str, Any], int]:
    """The JSON description at the stream's end, and where it starts: the one
    QEMU_VM_VMDESCRIPTION record whose 32-bit length reaches exactly the end."""
    for pos in range(len(data) - 6, 3, -1):
        if data[pos] == VMDESC and \
                struct.unpack_from(">I", data, pos + 1)[0] == len(data) - pos - 5:
            try:
                return json.loads(data[pos + 5:]), pos
            except ValueError as exc:
                raise StreamError(f"the vmdesc at byte {pos} is not JSON: {exc}") from exc
    raise StreamError("no vmdesc at the end of the stream (QEMU writes one unless "
                      "suppressed; is this a migration stream?)")


def _value(r: _Reader, desc: dict[str, Any]) -> Any:
    if "struct" in desc:
        return _fields(r, desc["struct"])
    raw = r.take(int(desc.get("size", 0)))
    kind = str(desc.get("type", ""))
    if kind.startswith(_INT) and len(raw) in (1, 2, 4, 8):
        return int.from_bytes(raw, "big", signed=kind.startswith("int"))
    return raw


def _fields(r: _Reader, desc: dict[str, Any]) -> dict[str, list[Any]]:
    """One vmstate: its fields in vmdesc order, then the subsections sent."""
    out: dict[str, list[Any]] = {}
    for fd in desc.get("fields", []):
        n = fd.get("array_len")
        value = [_value(r, fd) for _ in range(n)] if n is not None else _value(r, fd)
        out.setdefault(str(fd["name"]), []).append(value)
    subs = {s["vmsd_name"]: s for s in desc.get("subsections", [])}
    while r.peek() == SUBSECTION:
        mark = r.pos
        r.u8()
        name = r.idstr()
        if name not in subs:  # the parent's subsection (QEMU matches by name too)
            r.pos = mark
            break
        r.be(4)  # version
        out.setdefault(name, []).append(_fields(r, subs[name]))
    return out


def _ram(r: _Reader, page_size: int) -> None:
    """Skip one RAM section's records up to its end of section (the dump sends
    plain pages: no compression, xbzrle, multifd or mapped-ram)."""
    while True:
        header = r.be(8)
        flags, addr = header & (page_size - 1), header & ~(page_size - 1)
        kind = flags & ~RAM_CONTINUE
        if kind == RAM_MEM_SIZE:  # the block list: name, length, then (ignore-shared) addr
            while addr > 0:
                r.idstr()
                addr -= r.be(8)
                r.be(8)
        elif kind in (RAM_ZERO, RAM_PAGE):
            if not flags & RAM_CONTINUE:
                r.idstr()
            r.take(1 if kind == RAM_ZERO else page_size)
        elif kind == RAM_EOS:
            return
        elif kind != RAM_MULTIFD_FLUSH:
            raise StreamError(f"RAM record flags 0x{flags:x} at byte {r.pos - 8}: not a "
                              "plain page (this reader knows only the dump's records)")


def read_devices(data: bytes, wanted: Collection[str]) -> dict[str, DeviceSection]:
    """The device sections named in `wanted` (by idstr), from a stream saved
    with `DUMP_CAPABILITIES`; reading stops once all are found (pure)."""
    desc, end = vmdesc(data)
    page_size = int(desc.get("page_size", 4096))
    devices = {(d.get("name"), d.get("instance_id")): d for d in desc.get("devices", [])}
    r = _Reader(data, end)
    if (magic := r.be(4)) != MAGIC or (version := r.be(4)) != VERSION:
        raise StreamError(f"not a QEMU migration stream (magic 0x{magic:x})" if magic != MAGIC
                          else f"stream version {version}, not {VERSION}")
    found: dict[str, DeviceSection] = {}
    iterable: dict[int, str] = {}
    while set(wanted) - found.keys():
        at, kind = r.pos, r.u8()
        if kind == EOF:
            break
        if kind == CONFIGURATION:
            if "configuration" not in desc:
                raise StreamError("the vmdesc does not describe the configuration section")
            _fields(r, desc["configuration"])
            continue
        if kind == COMMAND:
            r.be(2)
            r.take(r.be(2))
            continue
        if kind not in (START, PART, END, FULL):
            raise StreamError(f"unknown section type {kind} at byte {at}")
        section_id = r.be(4)
        if kind in (START, FULL):
            idstr, instance, version = r.idstr(), r.be(4), r.be(4)
            if kind == START:
                iterable[section_id] = idstr
        elif (idstr := iterable.get(section_id, "")) == "":
            raise StreamError(f"section {section_id} continued at byte {at} was never started")
        if idstr == "ram":
            _ram(r, page_size)
        elif kind == FULL and (d := devices.get((idstr, instance))) is not None:
            found[idstr] = DeviceSection(idstr, instance, version, _fields(r, d))
        else:
            raise StreamError(f"section {idstr!r} at byte {at}: "
                              + ("not described by the vmdesc" if kind == FULL else
                                 "an iterable section this reader cannot skip"))
        if r.peek() == FOOTER:
            r.u8()
            if (footer := r.be(4)) != section_id:
                raise StreamError(f"section {idstr!r} ends with the footer of section "
                                  f"{footer}, not {section_id}: the vmdesc's sizes do not "
                                  "match what was saved")
    if missing := sorted(set(wanted) - found.keys()):
        raise StreamError(f"no section {', '.join(missing)} in the stream")
    return found


async def dump_devices(machine: QemuMachine, path: Path, wanted: Collection[str],
                       timeout: float = 30.0) -> dict[str, DeviceSection]:
    """The `wanted` device sections of the paused `machine`, saved to `path`
    (removed after) by a migration that sends no shared RAM; the machine's
    migration capabilities are restored whatever happens."""
    if (status := await machine.status()) != "paused":
        raise QmpctlError(f"{machine.name} is {status}: only a paused QEMU's device state "
                          "can be dumped (without running the vm-state handlers), and "
                          "QEMU migrates a VM paused by a migration (postmigrate) no more")
    before = {c["capability"]: bool(c["state"])
              for c in await machine.execute("query-migrate-capabilities")}
    wanted_caps = {name: DUMP_CAPABILITIES.get(name, False) for name in before}
    changed = [k for k, v in wanted_caps.items() if before[k] != v]

    async def set_caps(values: dict[str, bool]) -> None:
        if changed:
            await machine.execute("migrate-set-capabilities", {"capabilities": [
                {"capability": k, "state": values[k]} for k in changed]})

    await set_caps(wanted_caps)
    try:
        await machine.execute("migrate", {"uri": f"file:{path}"})
        deadline = time.monotonic() + timeout
        while (info := await machine.execute("query-migrate"))["status"] != "completed":
            if info["status"] in ("failed", "cancelled") or time.monotonic() > deadline:
                raise QmpctlError(f"dumping {machine.name}'s device state: migration "
                                  f"{info['status']} {info.get('error-desc', '')}".rstrip())
            await asyncio.sleep(0.02)
        data = await asyncio.to_thread(path.read_bytes)
    finally:
        await set_caps(before)
        await asyncio.to_thread(path.unlink, True)
    return read_devices(data, wanted)
