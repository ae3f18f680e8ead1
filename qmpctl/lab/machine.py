"""The lab VM: its QEMU command line (pure), which accelerator runs it and
why, and one run: boot, stream the console, bring back what the command wrote.

The lab QEMU is ours to end: it is killed in `finally` whatever happens, and
its scratch directory (the job's initramfs, the results) goes with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..core.errors import HostError, UsageError
from ..core.units import MiB
from ..host.kvm import Arch, KvmInfo
from ..host.memory import mem_available
from ..host.proc import die_with_parent
from .image import LabImage
from .job import JobPlan, checkout_files, pack_job

LabAccel = Literal["auto", "tcg", "kvm"]
BOOTED = "qmpctl-lab: booted in "
EXITED = "qmpctl-lab: exit "
RAN = "qmpctl-lab: command ran "
QEMU_FOR: dict[Arch, str] = {"aarch64": "qemu-system-aarch64", "x86_64": "qemu-system-x86_64"}
MIN_GUEST_MIB = 1024  # beside the unpacked root file system: the L2 guests' RAM, twice


@dataclass(frozen=True)
class LabSpec:
    """How big the lab is and how it runs."""

    arch: Arch
    cpus: int = 2
    memory_mib: int = 4096
    accel: LabAccel = "auto"
    boot_timeout: float = 180.0
    timeout: float = 3600.0


@dataclass(frozen=True)
class AccelChoice:
    accel: Literal["tcg", "kvm"]
    reason: str


def nested_enabled(sys_module: Path = Path("/sys/module")) -> bool:
    for mod in ("kvm_intel", "kvm_amd"):
        p = sys_module / mod / "parameters" / "nested"
        if p.is_file() and p.read_text().strip() in ("Y", "1"):
            return True
    return False


def choose_accel(arch: Arch, wanted: LabAccel, kvm: KvmInfo, host: str,
                 nested: bool) -> AccelChoice:
    """KVM where this host's KVM can run the lab with KVM inside it (same
    architecture, VMX/SVM with nesting on), TCG everywhere else (pure)."""
    why_not = None
    if arch != host:
        why_not = f"KVM runs only {host} guests here, the lab is {arch}"
    elif not kvm.accessible:
        why_not = f"KVM is not accessible ({kvm.error or kvm.device})"
    elif kvm.flavour not in ("vmx", "svm"):
        why_not = (f"this host's KVM ({kvm.flavour}) cannot nest KVM"
                   + (": kvm_pvm runs no 64-bit Linux" if kvm.flavour == "pvm" else ""))
    elif not nested:
        why_not = "the host's kvm_intel/kvm_amd has nested=0"
    if wanted == "kvm" and why_not:
        raise UsageError(f"--accel kvm for the lab: {why_not}")
    if wanted == "tcg":
        return AccelChoice("tcg", "asked for (--accel tcg)")
    if why_not:
        return AccelChoice("tcg", f"TCG with nested virtualization: {why_not}")
    return AccelChoice("kvm", f"the host's KVM ({kvm.flavour}) nests KVM")


def tcg_threads(arch: Arch) -> Literal["single", "multi"]:
    """TCG's threading for a lab of this architecture (pure).

    x86_64 labs run single-threaded: under multi-threaded TCG, QEMU 10.0's
    SVM emulation corrupted the state of the lab KVM's guests (docs/labs.md, "KVM
    labs"): a migrated vCPU whose VMCB held the lab kernel's own registers
    (CS 0x10 with L=1 while EFER.LMA=0, so the destination's KVM_SET_SREGS2
    fails with EINVAL), source guests that restarted at their
    entry point or triple-faulted, and lab kernels that panicked with a
    corrupted stack. arm64 labs stay multi-threaded: nothing of the kind
    showed there.
    """
    return "single" if arch == "x86_64" else "multi"


def lab_argv(spec: LabSpec, image: LabImage, accel: AccelChoice, initrd: Path,
             results: Path, interactive: bool = False) -> list[str]:
    """The lab QEMU's command line (pure)."""
    console = "ttyAMA0" if spec.arch == "aarch64" else "ttyS0"
    machine = ["-machine", "virt,virtualization=on,gic-version=3,its=on"
               if spec.arch == "aarch64" else "q35"]
    cpu = "host" if accel.accel == "kvm" else "max"  # max: EL2 on arm64, svm + npt on x86
    accel_opt = "kvm" if accel.accel == "kvm" else f"tcg,thread={tcg_threads(spec.arch)}"
    return [QEMU_FOR[spec.arch], "-name", f"qmpctl-lab-{spec.arch}", "-accel", accel_opt,
            *machine, "-cpu", cpu, "-smp", str(spec.cpus), "-m", str(spec.memory_mib),
            "-nodefaults", "-no-reboot", "-display", "none",
            "-serial", "mon:stdio" if interactive else "stdio",
            "-kernel", str(image.kernel), "-initrd", str(initrd),
            "-append", f"console={console} quiet panic=-1 rdinit=/init",
            "-device", "virtio-serial-pci",
            "-chardev", f"file,id=results,path={results}",
            "-device", "virtserialport,chardev=results,name=qmpctl.results"]


def memory_problems(spec: LabSpec, image: LabImage, available: int | None) -> list[str]:
    """Whether the lab fits: its root file system stays in its RAM (pure)."""
    rootfs_mib = image.rootfs.stat().st_size // MiB
    problems = []
    if spec.memory_mib < rootfs_mib + MIN_GUEST_MIB:
        problems.append(f"--memory {spec.memory_mib} MiB is too little for a lab: its root "
                        f"file system takes {rootfs_mib} MiB of it and its guests need "
                        f"{MIN_GUEST_MIB} MiB more (at least {rootfs_mib + MIN_GUEST_MIB})")
    if available is not None and spec.memory_mib * MiB > available:
        problems.append(f"--memory {spec.memory_mib} MiB: only {available // MiB} MiB of host "
                        "memory is available")
    if spec.cpus < 1 or spec.cpus > (os.cpu_count() or 1) * 4:
        problems.append(f"--cpus {spec.cpus}: between 1 and {(os.cpu_count() or 1) * 4}")
    return problems


@dataclass
class LabResult:
    """One command in a lab: its exit code and what it cost."""

    exit_code: int
    accel: AccelChoice
    image: str
    boot_s: float | None = None  # kernel start to /init ready, as the lab's clock says
    command_s: float | None = None  # the command alone, inside the lab
    wall_s: float = 0.0  # everything, packing and bringing back included
    returned: list[Path] = field(default_factory=list)

    @property
    def overhead_s(self) -> float | None:
        return None if self.command_s is None else self.wall_s - self.command_s

    def summary(self) -> str:
        boot = f"{self.boot_s:.1f} s" if self.boot_s is not None else "?"
        cmd = f"{self.command_s:.1f} s" if self.command_s is not None else "?"
        over = f"{self.overhead_s:.1f} s" if self.overhead_s is not None else "?"
        return (f"lab: {self.image}; {self.accel.accel} ({self.accel.reason}); boot {boot}, "
                f"command {cmd}, overhead {over} (wall {self.wall_s:.1f} s); "
                f"{len(self.returned)} file(s) brought back; exit {self.exit_code}")


def _seconds(line: str, prefix: str) -> float | None:
    try:
        return float(line[len(prefix):].split()[0])
    except (ValueError, IndexError):
        return None


def bring_back(results: Path, outputs: Sequence[Path]) -> list[Path]:
    """Extract the lab's results tar onto the host, only under `outputs`
    (anything else in it is ignored, never written)."""
    if not results.is_file() or results.stat().st_size == 0:
        return []
    written = []
    with tarfile.open(results) as tar:
        for member in tar:
            dest = Path("/" + member.name.lstrip("/"))
            if not any(dest == o or o in dest.parents for o in outputs):
                continue
            if member.isfile():
                src = tar.extractfile(member)
                if src is None:
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.lab-tmp")
                with src, tmp.open("wb") as f:
                    shutil.copyfileobj(src, f)
                tmp.chmod(member.mode & 0o7777)
                tmp.replace(dest)
                written.append(dest)
            elif member.issym() and not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to(member.linkname)
                written.append(dest)
    return written


async def run_lab(spec: LabSpec, image: LabImage, accel: AccelChoice, plan: JobPlan,
                  write: Callable[[str], object] = sys.stdout.write,
                  interactive: bool = False) -> LabResult:
    """Boot the lab, run the planned command, stream its console to `write` (or,
    `interactive`, give it QEMU's terminal), and bring back what it wrote."""
    if problems := memory_problems(spec, image, mem_available()):
        raise UsageError("; ".join(problems))
    t0 = time.monotonic()
    result = LabResult(125, accel, image.describe())
    with tempfile.TemporaryDirectory(prefix=f"qmpctl-lab-{spec.arch}-") as tmp:
        scratch = Path(tmp)
        initrd, results = scratch / "initrd.cpio", scratch / "results.tar"
        await asyncio.to_thread(_write_initrd, initrd, image, plan, spec.arch, interactive)
        argv = lab_argv(spec, image, accel, initrd, results, interactive)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=None if interactive else asyncio.subprocess.DEVNULL,
            stdout=None if interactive else asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if not interactive else None,
            preexec_fn=die_with_parent)
        try:
            if interactive:
                await asyncio.wait_for(proc.wait(), spec.timeout)
                result.exit_code = 0
            else:
                await _follow(proc, spec, result, write)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        result.returned = bring_back(results, plan.outputs)
    result.wall_s = time.monotonic() - t0
    return result


def _write_initrd(initrd: Path, image: LabImage, plan: JobPlan, arch: str,
                  interactive: bool) -> None:
    with initrd.open("wb") as out:
        with image.rootfs.open("rb") as rootfs:
            shutil.copyfileobj(rootfs, out, 16 << 20)
        pack_job(plan, arch, out, checkout_files(plan.checkout), image.modules, interactive)


async def _follow(proc: asyncio.subprocess.Process, spec: LabSpec, result: LabResult,
                  write: Callable[[str], object]) -> None:
    """Stream the console until the lab says its exit code; a lab that does not
    boot in time is named with its last console lines."""
    assert proc.stdout is not None
    tail: deque[str] = deque(maxlen=15)
    booted = exited = False
    start = time.monotonic()
    while True:
        limit = spec.boot_timeout if not booted else spec.timeout
        remaining = limit - (time.monotonic() - start)
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(), max(remaining, 0.01))
        except TimeoutError:
            what = "boot" if not booted else "finish its command"
            raise HostError(
                f"the {spec.arch} lab did not {what} within {limit:.0f} s; its console's "
                "last lines:\n  " + "\n  ".join(tail or ["(nothing)"])) from None
        if not raw:
            break
        line = raw.decode(errors="replace").rstrip("\r\n")
        tail.append(line)
        if line.startswith(BOOTED):
            booted = True
            result.boot_s = _seconds(line, BOOTED)
            start = time.monotonic()
        elif line.startswith(RAN):
            result.command_s = _seconds(line, RAN)
        elif line.startswith(EXITED):
            with contextlib.suppress(ValueError):
                result.exit_code = int(line[len(EXITED):].split()[0])
            exited = True  # what follows is the kernel powering off
            continue
        if booted and not line.startswith("qmpctl-lab: ") and not exited:
            write(line + "\n")
    rc = await proc.wait()
    if not booted:
        raise HostError(f"the {spec.arch} lab QEMU exited ({rc}) before booting; its "
                        "console's last lines:\n  " + "\n  ".join(tail or ["(nothing)"]))
    if not exited:
        raise HostError(f"the {spec.arch} lab ended (QEMU exit {rc}) without its command's "
                        "exit code; its console's last lines:\n  " + "\n  ".join(tail))


