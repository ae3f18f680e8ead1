"""`qmpctl doctor`: what this host can do, for people and for defaults.

Host facts come from `host`; QEMU features from `query-qmp-schema` of a
short-lived, paused QEMU of each architecture (`qemu.schema`).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from .core.errors import QmpctlError
from .guests.images import image_path
from .host.kvm import ARCHES, Arch, KvmInfo, host_arch, probe_kvm
from .host.qemu import candidate_paths, default_qemu_name, find_qemu, machine_types, probe_binary
from .qemu.cmdline import DEFAULT_MACHINE, MachineSpec
from .qemu.machine import QemuMachine
from .qemu.rundir import RunDir
from .qemu.schema import QemuSchema, probe_schema


class DoctorReport(BaseModel):
    host_arch: str
    kvm: KvmInfo
    long_mode_probe: str | None = None  # result of --probe: guestload/x86/probe64 under KVM
    notes: list[str]
    qemu: list[QemuSchema] = Field(
        description="every QEMU qmpctl knows, per architecture: the system one (the "
                    "default), then those set-up unpacked into .qemu/")


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
        arch="x86_64", binary=binary.path, data_dir=binary.data_dir, env=binary.env,
        accel="kvm", ram_mib=32,
        ram_path=run.side("probe64", "ram"), qmp_socket=run.side("probe64", "qmp.sock"),
        serial_socket=run.side("probe64", "serial.sock"), serial_log=run.side("probe64", "serial"),
        kernel=kernel, name="qmpctl-probe64",
    )
    try:
        async with QemuMachine(spec, run.side("probe64", "log")) as machine:
            await machine.console.wait_for(lambda v: True if v.find("probe64", ok="") else None,
                                           timeout, "probe64 to reach 64-bit code")
        return "ok: 64-bit code ran under KVM"
    except QmpctlError as exc:
        return f"failed: {exc.message}"


async def known_qemu_schemas(arch: Arch, run: RunDir) -> list[QemuSchema]:
    """Every QEMU binary for `arch` qmpctl knows, each with its schema, data
    directory and default machine type, or what is wrong with it."""
    paths = candidate_paths(arch)
    if not paths:
        return [QemuSchema(arch=arch, binary=None, version=None,
                           error=f"{default_qemu_name(arch)} not found in PATH; run the "
                                 "README's set-up command")]
    out = []
    for n, path in enumerate(paths):
        try:
            binary = probe_binary(path)
            default = machine_types(binary).get(DEFAULT_MACHINE[arch])
            machine = default.alias_of if default is not None else None
        except QmpctlError as exc:
            out.append(QemuSchema(arch=arch, binary=str(path), version=None, error=exc.message))
            continue
        schema = await probe_schema(arch, binary, run, tag=f"schema{n}")
        out.append(schema.model_copy(update={"default": n == 0, "default_machine": machine}))
    return out


async def doctor(long_mode_probe: bool = False) -> DoctorReport:
    kvm = probe_kvm()
    qemu: list[QemuSchema] = []
    with RunDir.create() as run:
        for arch in ARCHES:
            qemu += await known_qemu_schemas(arch, run)
        probe = await probe_long_mode(run) if long_mode_probe and kvm.accessible else None
    return DoctorReport(host_arch=host_arch(), kvm=kvm, long_mode_probe=probe,
                        notes=host_notes(kvm), qemu=qemu)
