"""`qmpctl doctor`: what this host can do, for people and for defaults.

Host facts come from `host`; QEMU features from `query-qmp-schema` of a
short-lived, paused QEMU of each architecture (`qemu.schema`).
"""

from __future__ import annotations

from pydantic import Field

from . import __version__
from .core.errors import QmpctlError
from .core.model import Model
from .guests.build import missing_message, missing_tools
from .guests.images import DATA, KNOWN_IMAGES, build_hint, find_root, image_path, image_roots
from .guests.needs import ALL_NEEDS
from .host.kvm import ARCHES, Arch, KvmInfo, host_arch, probe_kvm
from .host.qemu import candidate_paths, default_qemu_name, find_qemu, machine_types, probe_binary
from .qemu.cmdline import DEFAULT_MACHINE, MachineSpec
from .qemu.machine import QemuMachine
from .qemu.rundir import RunDir
from .qemu.schema import QemuSchema, probe_schema

# What a host needs, for people who installed the package (docs/install.md: "Host requirements").
REQUIREMENTS = (
    "Debian 12 (bookworm) or similar; QEMU 10 from bookworm-backports (qemu-system-x86, "
    "qemu-system-arm, qemu-utils, ipxe-qemu, seabios; QEMU >= 7.2 works); Debian's own "
    "QEMU 7.2 for cross-version runs: tools/install-bookworm-qemu.sh DIR/7.2, then "
    "QMPCTL_QEMU_DIR=DIR",
    "permissions: read-write /dev/kvm for KVM runs (root or the kvm group; TCG needs none); "
    "root for --dst-via netns and to mount a huge-page tmpfs for --ram-dir; /dev/shm room "
    "for twice the guest RAM",
    "building images (qmpctl images build): make gcc binutils gcc-aarch64-linux-gnu; "
    "--linux adds apt dpkg cpio gzip libc6-dev libc6-dev-arm64-cross; --lab adds "
    "mmdebstrap kmod python3",
)


class ImageStatus(Model):
    name: str
    path: str | None = Field(description="where qmpctl takes it from; None: missing")
    source: str | None = Field(description="QMPCTL_IMAGES, checkout, cache or package")
    build: str = Field(description="the command that builds it")


class DoctorReport(Model):
    qmpctl_version: str = __version__
    host_arch: str
    kvm: KvmInfo
    long_mode_probe: str | None = None  # result of --probe: guestload/x86/probe64 under KVM
    notes: list[str]
    qemu: list[QemuSchema] = Field(
        description="every QEMU qmpctl knows, per architecture: the system one (the "
                    "default), then those set-up unpacked into .qemu/")
    image_roots: list[str] = Field(default_factory=list,
                                   description="where images are looked for, in order")
    images: list[ImageStatus] = Field(default_factory=list)
    requirements: list[str] = Field(default_factory=lambda: list(REQUIREMENTS))
    scripts: str | None = Field(None, description="the host set-up scripts the package "
                                                  "ships (install-host.sh, ...)")
    missing_build_tools: str | None = None


def image_statuses() -> list[ImageStatus]:
    """Each image qmpctl knows: where it comes from, or how to build it."""
    out = []
    for parts in KNOWN_IMAGES:
        root = find_root(*parts)
        out.append(ImageStatus(
            name="/".join(parts), path=str(root.path.joinpath(*parts)) if root else None,
            source=root.source if root else None, build=build_hint(*parts)))
    return out


def host_notes(kvm: KvmInfo) -> list[str]:
    notes = []
    if kvm.flavour == "pvm":
        notes.append("kvm_pvm: 16/32-bit and purpose-built 64-bit guests run under KVM; "
                     "ordinary 64-bit Linux kernels do not, so Linux guests use TCG")
        notes.append("kvm_pvm: qmpctl observed dirty-ring migrations losing the pages "
                     "dirtied after the last ring reap (bitmap mode verified); "
                     "see docs/findings.md")
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
    missing = missing_tools(ALL_NEEDS)
    scripts = DATA / "tools"
    return DoctorReport(
        host_arch=host_arch(), kvm=kvm, long_mode_probe=probe, notes=host_notes(kvm), qemu=qemu,
        image_roots=[f"{r.source}: {r.path}" for r in image_roots()], images=image_statuses(),
        scripts=str(scripts) if scripts.is_dir() else None,
        missing_build_tools=missing_message(ALL_NEEDS, missing) if missing else None)
