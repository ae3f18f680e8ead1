"""Labs: the pure parts (kernel config checks, job planning, the initramfs
writer, the accelerator choice, bringing results back). A real lab boots in
tests/e2e/test_lab.py."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from qmpctl.core.errors import UsageError
from qmpctl.host.kvm import KvmInfo
from qmpctl.lab.image import LabImage, config_problems, custom_image, parse_config
from qmpctl.lab.job import Cpio, checkout_files, dist_info, job_script, pack_job, plan_job
from qmpctl.lab.machine import (
    AccelChoice,
    LabSpec,
    bring_back,
    choose_accel,
    lab_argv,
    memory_problems,
    tcg_threads,
)

ARM_OK = """CONFIG_BLK_DEV_INITRD=y
CONFIG_DEVTMPFS=y
CONFIG_TMPFS=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_CONSOLE=y
CONFIG_KVM=y
CONFIG_HAVE_KVM_DIRTY_RING_ACQ_REL=y
CONFIG_NEED_KVM_DIRTY_RING_WITH_BITMAP=y
CONFIG_SERIAL_AMBA_PL011_CONSOLE=y
"""


def test_config_parse_ignores_unset_lines() -> None:
    assert parse_config('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x"\n') == {
        "CONFIG_A": "y", "CONFIG_C": "x"}


def test_arm64_kernel_config_complete_has_no_problems() -> None:
    assert config_problems(ARM_OK, "aarch64") == []


def test_kernel_without_kvm_or_bitmap_is_named_with_why() -> None:
    text = ARM_OK.replace("CONFIG_KVM=y", "# CONFIG_KVM is not set").replace(
        "CONFIG_NEED_KVM_DIRTY_RING_WITH_BITMAP=y\n", "")
    problems = config_problems(text, "aarch64")
    assert len(problems) == 2
    assert problems[0].startswith("CONFIG_KVM not set (needs =y")
    assert "backup bitmap" in problems[1]


def test_arm64_kvm_as_module_is_refused() -> None:
    assert config_problems(ARM_OK.replace("CONFIG_KVM=y", "CONFIG_KVM=m"), "aarch64") == [
        "CONFIG_KVM=m (needs =y: arm64 KVM cannot be a module)"]


def _image(tmp_path: Path, rootfs_mib: int = 1) -> LabImage:
    rootfs = tmp_path / "rootfs.cpio"
    rootfs.write_bytes(b"\0" * rootfs_mib * 1024 * 1024)
    return LabImage("aarch64", tmp_path / "vmlinuz", rootfs, tmp_path / "config",
                    {"kernel_release": "6.12"})


def test_custom_kernel_checks_before_anything_boots(tmp_path: Path) -> None:
    base = _image(tmp_path)
    kernel = tmp_path / "build" / "arch" / "arm64" / "boot" / "Image"
    with pytest.raises(UsageError, match="no such file"):
        custom_image(base, kernel, None, None)
    kernel.parent.mkdir(parents=True)
    kernel.write_bytes(b"kernel")
    with pytest.raises(UsageError, match="no kernel configuration found"):
        custom_image(base, kernel, None, None)
    (tmp_path / "build" / ".config").write_text(ARM_OK.replace("CONFIG_KVM=y\n", ""))
    with pytest.raises(UsageError, match=r"cannot run a aarch64 lab .*CONFIG_KVM not set"):
        custom_image(base, kernel, None, None)
    (tmp_path / "build" / ".config").write_text(ARM_OK)
    with pytest.raises(UsageError, match=r"--modules .*: not a directory"):
        custom_image(base, kernel, tmp_path / "nope", None)
    (tmp_path / "6.13.0").mkdir()
    with pytest.raises(UsageError, match="not a kernel modules directory"):
        custom_image(base, kernel, tmp_path / "6.13.0", None)
    (tmp_path / "6.13.0" / "modules.order").write_text("")
    image = custom_image(base, kernel, tmp_path / "6.13.0", None)
    assert image.kernel == kernel and image.kernel_release == "6.13.0"
    assert image.modules == tmp_path / "6.13.0"


def test_plan_packs_named_inputs_and_brings_back_named_outputs(tmp_path: Path) -> None:
    checkout = tmp_path / "src"
    (checkout / "reports").mkdir(parents=True)
    kernel = tmp_path / "k" / "gic.flat"
    kernel.parent.mkdir()
    kernel.write_bytes(b"x")
    out = tmp_path / "out"
    out.mkdir()
    plan = plan_job(["qmpctl", "migrate", "--kernel", str(kernel), f"--report={out}/r.json",
                     "--junit", "reports/j.xml", "--append", "its-migration"],
                    checkout, checkout, {"CI": "true", "SECRET": "x"})
    assert plan.inputs == (kernel,)
    assert plan.outputs == (checkout, kernel, out / "r.json")
    assert plan.env == (("CI", "true"),)


def test_plan_outside_the_checkout_brings_back_its_working_directory(tmp_path: Path) -> None:
    plan = plan_job(["pytest"], tmp_path / "suite", tmp_path / "src", {})
    assert plan.outputs == (tmp_path / "src", tmp_path / "suite")


def test_job_script_quotes_the_command_and_puts_the_checkout_first(tmp_path: Path) -> None:
    plan = plan_job(["qmpctl", "migrate", "--append", "a b; rm -rf /"], tmp_path, tmp_path, {})
    script = job_script(plan, "aarch64")
    assert f"export PYTHONPATH={tmp_path}:/opt/qmpctl-lab/site\n" in script
    assert "qmpctl migrate --append 'a b; rm -rf /'\n" in script
    assert "export QMPCTL_LAB=aarch64\n" in script


def test_dist_info_carries_the_console_script_and_the_pytest_plugin() -> None:
    info = dist_info(Path("pyproject.toml").read_text(),
                     '"""doc"""\nX = 1\n__version__ = "9.8.7"\n')
    assert "Name: qmpctl\nVersion: 9.8.7\n" in info["METADATA"]
    assert "[console_scripts]\nqmpctl = qmpctl.__main__:main\n" in info["entry_points.txt"]
    assert "[pytest11]\nqmpctl = qmpctl.pytest_plugin\n" in info["entry_points.txt"]


def test_cpio_is_what_the_cpio_tool_reads_with_parents_first(tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"0123456789")
    buf = io.BytesIO()
    cpio = Cpio(buf)
    cpio.add_bytes("lab/job.sh", b"#!/bin/sh\n", 0o755)
    cpio.add_file("/a/b/c.bin", src)
    cpio.add_dir("/d/e")
    cpio.close()
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=buf.getvalue(),
                             capture_output=True, check=True).stdout.decode().split()
    assert listing == ["lab", "lab/job.sh", "a", "a/b", "a/b/c.bin", "d", "d/e"]
    extract = tmp_path / "x"
    extract.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=buf.getvalue(), cwd=extract, check=True)
    assert (extract / "a/b/c.bin").read_bytes() == b"0123456789"
    assert (extract / "lab/job.sh").stat().st_mode & 0o777 == 0o755


def test_packed_job_has_script_collect_list_and_checkout(tmp_path: Path) -> None:
    checkout = Path.cwd()
    plan = plan_job(["true"], checkout, checkout, {})
    buf = io.BytesIO()
    pack_job(plan, "aarch64", buf, [checkout / "pyproject.toml"])
    names = subprocess.run(["cpio", "-t", "--quiet"], input=buf.getvalue(),
                           capture_output=True, check=True).stdout.decode().split()
    assert {"lab/job.sh", "lab/collect", str(checkout / "pyproject.toml").lstrip("/"),
            "opt/qmpctl-lab/site/qmpctl-lab.dist-info/entry_points.txt"} <= set(names)


KVM_PVM = KvmInfo(device="/dev/kvm", accessible=True, flavour="pvm")
KVM_VMX = KvmInfo(device="/dev/kvm", accessible=True, flavour="vmx")


@pytest.mark.parametrize(("arch", "kvm", "nested", "want", "why"), [
    ("aarch64", KVM_VMX, True, "tcg", "KVM runs only x86_64 guests here, the lab is aarch64"),
    ("x86_64", KVM_PVM, False, "tcg", "kvm_pvm runs no 64-bit Linux"),
    ("x86_64", KVM_VMX, False, "tcg", "nested=0"),
    ("x86_64", KVM_VMX, True, "kvm", "nests KVM"),
])
def test_accel_choice_says_why(arch: str, kvm: KvmInfo, nested: bool, want: str,
                               why: str) -> None:
    choice = choose_accel(arch, "auto", kvm, "x86_64", nested)  # type: ignore[arg-type]
    assert choice.accel == want and why in choice.reason


def test_forcing_kvm_where_it_cannot_nest_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--accel kvm for the lab: KVM runs only x86_64"):
        choose_accel("aarch64", "kvm", KVM_VMX, "x86_64", True)


def test_lab_argv_is_nested_virt_with_the_its_and_a_results_port(tmp_path: Path) -> None:
    argv = lab_argv(LabSpec("aarch64", cpus=2, memory_mib=4096), _image(tmp_path),
                    AccelChoice("tcg", "x"), tmp_path / "i.cpio", tmp_path / "r.tar")
    assert argv[0] == "qemu-system-aarch64"
    assert "virt,virtualization=on,gic-version=3,its=on" in argv
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi"
    assert f"file,id=results,path={tmp_path / 'r.tar'}" in argv
    assert "virtserialport,chardev=results,name=qmpctl.results" in argv


def test_x86_lab_tcg_is_single_threaded_and_svm_capable(tmp_path: Path) -> None:
    # Multi-threaded TCG corrupted the nested KVM guests' state in x86 labs
    # (docs/labs.md); arm64 labs keep one thread per vCPU.
    argv = lab_argv(LabSpec("x86_64", cpus=2, memory_mib=4096), _image(tmp_path),
                    AccelChoice("tcg", "x"), tmp_path / "i.cpio", tmp_path / "r.tar")
    assert argv[0] == "qemu-system-x86_64"
    assert argv[argv.index("-accel") + 1] == "tcg,thread=single"
    assert argv[argv.index("-cpu") + 1] == "max"
    assert argv[argv.index("-smp") + 1] == "2"
    assert tcg_threads("x86_64") == "single"
    assert tcg_threads("aarch64") == "multi"


def test_a_kvm_lab_has_no_tcg_threading(tmp_path: Path) -> None:
    argv = lab_argv(LabSpec("x86_64"), _image(tmp_path), AccelChoice("kvm", "x"),
                    tmp_path / "i.cpio", tmp_path / "r.tar")
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert argv[argv.index("-cpu") + 1] == "host"


def test_too_little_lab_memory_is_refused_with_the_figures(tmp_path: Path) -> None:
    image = _image(tmp_path, rootfs_mib=400)
    problems = memory_problems(LabSpec("aarch64", memory_mib=1024), image, 8 << 30)
    assert problems == ["--memory 1024 MiB is too little for a lab: its root file system "
                        "takes 400 MiB of it and its guests need 1024 MiB more (at least 1424)"]
    assert memory_problems(LabSpec("aarch64", memory_mib=4096), image, 2 << 30) == [
        "--memory 4096 MiB: only 2048 MiB of host memory is available"]


def test_results_come_back_only_under_the_planned_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tar_path = tmp_path / "r.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, data in [(f"{out}/r.json", b"{}"), (f"{tmp_path}/elsewhere", b"no"),
                           ("/lab/.start", b"")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert bring_back(tar_path, [out]) == [out / "r.json"]
    assert (out / "r.json").read_bytes() == b"{}"
    assert not (tmp_path / "elsewhere").exists()


def test_the_checkout_goes_with_qmpctls_compiled_bytecode(tmp_path: Path) -> None:
    """The lab's Python loads qmpctl's .pyc instead of compiling it under TCG;
    other Pythons' bytecode and ignored files stay behind."""
    checkout = tmp_path / "co"
    (checkout / "qmpctl" / "__pycache__").mkdir(parents=True)
    (checkout / ".gitignore").write_text("__pycache__/\n")
    (checkout / "qmpctl" / "cli.py").write_text("")
    tag = sys.implementation.cache_tag
    ours = checkout / "qmpctl" / "__pycache__" / f"cli.{tag}.pyc"
    ours.write_bytes(b"")
    (checkout / "qmpctl" / "__pycache__" / "cli.cpython-39.pyc").write_bytes(b"")
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    files = checkout_files(checkout)
    assert set(files) == {checkout / ".gitignore", checkout / "qmpctl" / "cli.py", ours}
