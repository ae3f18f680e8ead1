"""`qmpctl doctor`: what this host can do, for people and for defaults.

Host facts come from `host`; QEMU features from `query-qmp-schema` of a
short-lived, paused QEMU of each architecture.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .cmdline import MachineSpec
from .errors import QmpctlError
from .guests import image_path
from .host import ARCHES, Arch, KvmInfo, find_qemu, host_arch, probe_kvm
from .machine import QemuMachine
from .rundir import RunDir


class QemuFeatures(BaseModel):
    arch: str
    binary: str | None
    version: str | None
    error: str | None = None
    dirty_rate_modes: list[str] = []
    migration_capabilities: list[str] = []
    commands: dict[str, bool] = {}


class DoctorReport(BaseModel):
    host_arch: str
    kvm_device: str
    kvm_accessible: bool
    kvm_flavour: str
    kvm_error: str | None
    kvm_caps: dict[str, int]
    dirty_ring_max_entries: int
    dirty_ring_with_bitmap: bool
    runs_64bit_linux_under_kvm: bool | None
    long_mode_probe: str | None = None  # result of --probe: guestload/x86/probe64 under KVM
    notes: list[str]
    qemu: list[QemuFeatures]


WATCHED_COMMANDS = ("calc-dirty-rate", "set-vcpu-dirty-limit", "migrate-incoming",
                    "query-dirty-rate", "migrate-pause", "migrate-recover")


def schema_features(schema: list[dict[str, Any]]) -> tuple[list[str], list[str], dict[str, bool]]:
    """(dirty-rate modes, migration capabilities, watched commands present) — pure.

    query-qmp-schema names types by opaque ids, so find the enums through the
    commands and objects that use them.
    """
    by_name = {e["name"]: e for e in schema}
    commands = {e["name"] for e in schema if e.get("meta-type") == "command"}

    def enum_of_member(obj_type: str, member: str) -> list[str]:
        obj = by_name.get(obj_type, {})
        for m in obj.get("members", []):
            if m["name"] == member:
                enum = by_name.get(m["type"], {})
                return [v["name"] if isinstance(v, dict) else v for v in enum.get("members", [])
                        ] or list(enum.get("values", []))
        return []

    modes: list[str] = []
    if "calc-dirty-rate" in by_name:
        modes = enum_of_member(by_name["calc-dirty-rate"]["arg-type"], "mode")
    caps: list[str] = []
    if "migrate-set-capabilities" in by_name:
        arg = by_name[by_name["migrate-set-capabilities"]["arg-type"]]
        cap_list = by_name.get(arg["members"][0]["type"], {})
        caps = enum_of_member(cap_list.get("element-type", ""), "capability")
    return modes, caps, {c: c in commands for c in WATCHED_COMMANDS}


async def qemu_features(arch: Arch, run: RunDir) -> QemuFeatures:
    try:
        binary = find_qemu(arch)
    except QmpctlError as exc:
        return QemuFeatures(arch=arch, binary=None, version=None, error=exc.message)
    spec = MachineSpec(
        arch=arch, binary=binary.path, accel="tcg", ram_mib=32,
        ram_path=run.side(arch, "ram"), qmp_socket=run.side(arch, "qmp.sock"),
        serial_socket=run.side(arch, "serial.sock"), serial_log=run.side(arch, "serial"),
        incoming=True, name=f"qmpctl-probe-{arch}",
    )
    machine = QemuMachine(spec, run.side(arch, "log"))
    feats = QemuFeatures(arch=arch, binary=str(binary.path), version=binary.version_str)
    try:
        await machine.launch()
        schema = await machine.execute("query-qmp-schema")
        feats.dirty_rate_modes, feats.migration_capabilities, feats.commands = \
            schema_features(schema)
    except QmpctlError as exc:
        feats.error = exc.message
    finally:
        await machine.shutdown()
    return feats


def host_notes(kvm: KvmInfo) -> list[str]:
    notes = []
    if kvm.flavour == "pvm":
        notes.append("kvm_pvm: 16/32-bit and purpose-built 64-bit guests run under KVM; "
                     "ordinary 64-bit Linux kernels do not, so Linux guests use TCG")
        notes.append("kvm_pvm: qmpctl observed dirty-ring migrations losing the pages "
                     "dirtied after the last ring reap (bitmap mode verified); see README")
    if kvm.accessible and not kvm.has_ring_with_bitmap:
        notes.append("no KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP: fine on x86; on arm64 an "
                     "in-kernel ITS would lose its table writes with the dirty ring")
    return notes


async def probe_long_mode(run: RunDir, timeout: float = 30.0) -> str:
    """Boot guestload/x86/probe64 under KVM: does 64-bit (long mode) code run?

    On kvm_pvm it does (after ~5 s) although ordinary 64-bit Linux kernels do
    not boot, so this answers "long mode", not "Linux".
    """
    try:
        binary = find_qemu("x86_64")
        kernel = image_path("x86_64", "probe64.elf")
    except QmpctlError as exc:
        return f"not run: {exc.message}"
    spec = MachineSpec(
        arch="x86_64", binary=binary.path, accel="kvm", ram_mib=32,
        ram_path=run.side("probe64", "ram"), qmp_socket=run.side("probe64", "qmp.sock"),
        serial_socket=run.side("probe64", "serial.sock"), serial_log=run.side("probe64", "serial"),
        kernel=kernel, name="qmpctl-probe64",
    )
    machine = QemuMachine(spec, run.side("probe64", "log"))
    try:
        await machine.launch()
        await machine.console.wait_for(lambda v: True if v.find("probe64", ok="") else None,
                                       timeout, "probe64 to reach 64-bit code")
        return "ok: 64-bit code ran under KVM"
    except QmpctlError as exc:
        return f"failed: {exc.message}"
    finally:
        await machine.shutdown()


async def doctor(long_mode_probe: bool = False) -> DoctorReport:
    kvm = probe_kvm()
    run = RunDir.create()
    try:
        qemu = [await qemu_features(arch, run) for arch in ARCHES]
        probe = await probe_long_mode(run) if long_mode_probe and kvm.accessible else None
    finally:
        run.remove()
    return DoctorReport(
        host_arch=host_arch(), kvm_device=kvm.device, kvm_accessible=kvm.accessible,
        kvm_flavour=kvm.flavour, kvm_error=kvm.error, kvm_caps=dict(kvm.caps),
        dirty_ring_max_entries=kvm.dirty_ring_max_entries,
        dirty_ring_with_bitmap=kvm.has_ring_with_bitmap,
        runs_64bit_linux_under_kvm=kvm.runs_64bit_guests, long_mode_probe=probe,
        notes=host_notes(kvm), qemu=qemu,
    )
