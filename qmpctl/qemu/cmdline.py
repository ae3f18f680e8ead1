"""A typed description of one QEMU process, and the pure function that turns
it into a command line.

Source and destination are built from the same `MachineSpec` except for the
per-side files and `incoming`, which is what makes them migration-compatible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..host.kvm import Arch

Accel = Literal["kvm", "tcg"]
# The machine each architecture runs; unversioned, this is the binary's newest
# type (`pc` is an alias of `pc-i440fx-<its version>`).
DEFAULT_MACHINE: dict[Arch, str] = {"x86_64": "pc", "aarch64": "virt"}
RAM_BLOCK = "ram0"  # the guest RAM backend's id, and so its RAMBlock's name


@dataclass(frozen=True)
class MachineSpec:
    """Everything that decides a QEMU command line."""

    arch: Arch
    binary: Path
    accel: Accel
    ram_mib: int
    ram_path: Path  # memory-backend-file, share=on: the controller reads it directly
    qmp_socket: Path  # QEMU connects to the controller's server here
    serial_socket: Path  # first UART, likewise a client connection
    serial_log: Path
    dirty_ring_size: int = 0  # entries; 0 = dirty bitmap (KVM only)
    smp: int = 1
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    fw_cfg: tuple[tuple[str, str], ...] = ()  # (name, string) pairs
    devices: tuple[str, ...] = ()  # extra raw arguments, e.g. -netdev/-device pairs
    machine_opts: tuple[str, ...] = ()  # extra -machine KEY=VALUE (a foreign guest's needs)
    trace_events: tuple[str, ...] = ()  # QEMU trace events, logged to stderr
    trace_timestamps: bool = False  # -msg timestamp=on: wall-clock time on each trace line
    incoming: bool = False  # destination: -incoming defer, paused (-S)
    paused: bool = False  # -S alone: launched, never run (until `cont`)
    name: str = "guest"
    # The binary's own data directory (-L): firmware and option ROMs of its
    # version, not another QEMU's (QemuBinary.data_dir).
    data_dir: Path | None = None
    # Environment the binary needs on top of ours (QemuBinary.env).
    env: tuple[tuple[str, str], ...] = ()
    # A versioned machine type both sides of a cross-version migration
    # support (`pc-i440fx-7.2`, `virt-7.2`); None: the unversioned `pc`/`virt`.
    machine_type: str | None = None
    # -cpu model; None: host under KVM, else x86's default (qemu64) or arm's max.
    cpu: str | None = None
    # Run inside this network namespace (`ip netns exec`, which execs QEMU in
    # place: same pid). QMP and serial stay on filesystem unix sockets, which
    # are not tied to a network namespace.
    netns: str | None = None
    # A QEMU on another host listens for qmpctl, which reaches it the way
    # that host is reached (qmpctl.host.remote): its QMP and serial listen on
    # TCP at `listen` (QMP_PORT, SERIAL_PORT; a netns destination, over the
    # management veth), or, with `listen_unix`, on its own unix sockets (a
    # host reached through ssh, where qmpctl relays to them).
    listen: str | None = None
    listen_unix: bool = False


QMP_PORT, SERIAL_PORT = 4440, 4441


def machine_args(spec: MachineSpec) -> list[str]:
    """-machine/-cpu for the architecture; the RAM backend is always ours."""
    extra = "".join(f",{_escape_opt(opt)}" for opt in spec.machine_opts)
    machine = spec.machine_type or DEFAULT_MACHINE[spec.arch]
    if spec.arch == "x86_64":
        # No kvmclock: SeaBIOS would register a pvclock page in its own RAM
        # and KVM rewrites it on each side, a difference that is not a lost page.
        cpu = spec.cpu or "qemu64"
        cpu_args = (["-cpu", f"{cpu},-kvmclock"] if spec.accel == "kvm" else
                    ["-cpu", cpu] if spec.cpu else [])
        return ["-machine", f"{machine},memory-backend={RAM_BLOCK}{extra}", *cpu_args]
    return ["-machine", f"{machine},gic-version=3,its=on,memory-backend={RAM_BLOCK}{extra}",
            "-cpu", spec.cpu or ("host" if spec.accel == "kvm" else "max")]


def accel_args(spec: MachineSpec) -> list[str]:
    if spec.accel == "tcg":
        return ["-accel", "tcg"]
    if spec.dirty_ring_size:
        return ["-accel", f"kvm,dirty-ring-size={spec.dirty_ring_size}"]
    return ["-accel", "kvm"]


def _escape_opt(value: str) -> str:
    """QEMU option values escape a comma by doubling it."""
    return value.replace(",", ",,")


def _endpoint(spec: MachineSpec, path: Path, port: int) -> str:
    """Where a chardev meets qmpctl: QEMU connects to our unix socket, or (a
    remote QEMU) listens on TCP or on its unix socket for us; wait=off, the
    guest is paused (-S)."""
    if spec.listen_unix:
        return f"path={_escape_opt(str(path))},server=on,wait=off"
    if spec.listen is None:
        return f"path={_escape_opt(str(path))}"
    return f"host={spec.listen},port={port},server=on,wait=off"


def build_argv(spec: MachineSpec) -> list[str]:
    """The full argv for `spec` (pure: same spec, same list)."""
    argv = ["ip", "netns", "exec", spec.netns] if spec.netns is not None else []
    argv += [
        str(spec.binary),
        "-name", spec.name,
        "-nodefaults",
        "-no-user-config",
        *(["-L", str(spec.data_dir)] if spec.data_dir is not None else []),
        "-display", "none",
        "-no-reboot",
        *accel_args(spec),
        "-object",
        f"memory-backend-file,id={RAM_BLOCK},size={spec.ram_mib}M,"
        f"mem-path={_escape_opt(str(spec.ram_path))},share=on",
        *machine_args(spec),
        "-m", f"{spec.ram_mib}M",
        "-smp", str(spec.smp),
        "-chardev", f"socket,id=qmp0,{_endpoint(spec, spec.qmp_socket, QMP_PORT)}",
        "-mon", "chardev=qmp0,mode=control",
        "-chardev",
        f"socket,id=serial0,{_endpoint(spec, spec.serial_socket, SERIAL_PORT)},"
        f"logfile={_escape_opt(str(spec.serial_log))}",
        "-serial", "chardev:serial0",
    ]
    if spec.kernel is not None:
        argv += ["-kernel", str(spec.kernel)]
    if spec.initrd is not None:
        argv += ["-initrd", str(spec.initrd)]
    if spec.append is not None:
        argv += ["-append", spec.append]
    for name, value in spec.fw_cfg:
        argv += ["-fw_cfg", f"name={name},string={_escape_opt(value)}"]
    argv += list(spec.devices)
    if spec.trace_timestamps:
        argv += ["-msg", "timestamp=on"]
    for event in spec.trace_events:
        argv += ["-trace", event]
    if spec.incoming:
        argv += ["-incoming", "defer", "-S"]
    elif spec.paused:
        argv += ["-S"]
    return argv
