from pathlib import Path

from qmpctl.qemu.cmdline import MachineSpec, build_argv


def spec(**kw: object) -> MachineSpec:
    base: dict[str, object] = dict(
        arch="x86_64", binary=Path("/usr/bin/qemu-system-x86_64"), accel="kvm", ram_mib=160,
        ram_path=Path("/run/q/src.ram"), qmp_socket=Path("/run/q/src.qmp.sock"),
        serial_socket=Path("/run/q/src.serial.sock"), serial_log=Path("/run/q/src.serial"),
        dirty_ring_size=4096, kernel=Path("/img/wave.elf"),
        fw_cfg=(("opt/qmpctl/params", "start=0x200000 end=0x400000"),), name="qmpctl-src",
    )
    base.update(kw)
    return MachineSpec(**base)  # type: ignore[arg-type]


def opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_kvm_ring_source_command_line() -> None:
    argv = build_argv(spec())
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    assert opt(argv, "-accel") == ["kvm,dirty-ring-size=4096"]
    assert opt(argv, "-object") == [
        "memory-backend-file,id=ram0,size=160M,mem-path=/run/q/src.ram,share=on"]
    assert opt(argv, "-machine") == ["pc,memory-backend=ram0"]
    assert opt(argv, "-cpu") == ["qemu64,-kvmclock"]
    assert opt(argv, "-fw_cfg") == ["name=opt/qmpctl/params,string=start=0x200000 end=0x400000"]
    assert "-incoming" not in argv and "-S" not in argv
    assert opt(argv, "-chardev")[0] == "socket,id=qmp0,path=/run/q/src.qmp.sock"


def test_destination_waits_paused_for_incoming() -> None:
    argv = build_argv(spec(incoming=True))
    assert opt(argv, "-incoming") == ["defer"]
    assert argv[-1] == "-S"


def test_bitmap_and_tcg_accel() -> None:
    assert opt(build_argv(spec(dirty_ring_size=0)), "-accel") == ["kvm"]
    tcg = build_argv(spec(accel="tcg", dirty_ring_size=0))
    assert opt(tcg, "-accel") == ["tcg"]
    assert "-cpu" not in tcg


def test_aarch64_virt_with_its() -> None:
    argv = build_argv(spec(arch="aarch64", accel="tcg", dirty_ring_size=0))
    assert opt(argv, "-machine") == ["virt,gic-version=3,its=on,memory-backend=ram0"]
    assert opt(argv, "-cpu") == ["max"]


def test_commas_in_paths_are_escaped() -> None:
    argv = build_argv(spec(ram_path=Path("/tmp/a,b/src.ram")))
    assert "mem-path=/tmp/a,,b/src.ram" in opt(argv, "-object")[0]


def test_build_argv_depends_only_on_the_spec() -> None:
    # Pure: the same spec gives the same argv whatever the environment or
    # the files on disk (none of these paths exists), and the spec is not changed.
    s = spec()
    before = repr(s)
    argv = build_argv(s)
    assert argv == build_argv(spec()) and repr(s) == before
    assert not Path("/run/q").exists() and "mem-path=/run/q/src.ram" in " ".join(argv)


def test_netns_wraps_qemu_in_ip_netns_exec() -> None:
    plain = build_argv(spec())
    argv = build_argv(spec(netns="qmpctl-ab12cd_e-dst", incoming=True))
    assert argv[:5] == ["ip", "netns", "exec", "qmpctl-ab12cd_e-dst",
                        "/usr/bin/qemu-system-x86_64"]
    assert argv[4:] == build_argv(spec(incoming=True))
    assert plain[0] == "/usr/bin/qemu-system-x86_64" and "netns" not in plain


def test_data_dir_is_passed_with_L() -> None:
    assert "-L" not in build_argv(spec())
    argv = build_argv(spec(data_dir=Path("/r/.qemu/7.2/usr/share/qemu")))
    assert opt(argv, "-L") == ["/r/.qemu/7.2/usr/share/qemu"]


def test_pinned_machine_type_and_cpu() -> None:
    x86 = build_argv(spec(machine_type="pc-i440fx-7.2", accel="tcg", dirty_ring_size=0))
    assert opt(x86, "-machine") == ["pc-i440fx-7.2,memory-backend=ram0"]
    assert "-cpu" not in x86
    assert opt(build_argv(spec(machine_type="pc-i440fx-7.2")), "-cpu") == ["qemu64,-kvmclock"]
    arm = build_argv(spec(arch="aarch64", accel="tcg", dirty_ring_size=0,
                          machine_type="virt-7.2", cpu="cortex-a57"))
    assert opt(arm, "-machine") == ["virt-7.2,gic-version=3,its=on,memory-backend=ram0"]
    assert opt(arm, "-cpu") == ["cortex-a57"]


def test_paused_source_is_S_without_incoming() -> None:
    argv = build_argv(spec(paused=True))
    assert argv[-1] == "-S" and "-incoming" not in argv
