"""`qmpctl lab run|shell|doctor`: the lab's face on the command line (the
main CLI mounts this typer app as `lab`)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from ..core.errors import ExitCode, QmpctlError

if TYPE_CHECKING:  # imported by the commands: `qmpctl migrate` starts without them
    from .image import LabImage
    from .machine import AccelChoice, LabSpec

app = typer.Typer(no_args_is_help=True, help=(
    "A KVM host as a VM (arm64 with the in-kernel vGIC-ITS, dirty ring and backup bitmap; "
    "x86_64 with nested SVM): run a command inside it against this checkout."))
_PASS = {"allow_extra_args": True, "ignore_unknown_options": True}
DEFAULT_CPUS = min(2, os.cpu_count() or 1)  # TCG runs a thread per vCPU


def checkout() -> Path:
    """The source checkout this qmpctl runs from (a lab packs it afresh each run)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise QmpctlError(f"a lab runs a source checkout of qmpctl; {root} is not one")
    return root


ArchOpt = Annotated[str, typer.Option(
    "--arch", help="aarch64 (GICv3 + ITS, ring + backup bitmap) or x86_64 (nested SVM)")]
CpusOpt = Annotated[int, typer.Option("--cpus", help="the lab's vCPUs")]
MemOpt = Annotated[int, typer.Option("--memory", help="the lab's RAM in MiB (its guests' RAM "
                                                     "and /dev/shm live in it)")]
AccelOpt = Annotated[str, typer.Option(
    "--accel", help="auto (KVM where this host can nest it, else TCG), tcg or kvm")]
KernelOpt = Annotated[Path | None, typer.Option(
    "--kernel", help="your own kernel image (the patch under test) instead of Debian's")]
ModulesOpt = Annotated[Path | None, typer.Option(
    "--modules", help="its modules directory (lib/modules/<release>)")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--kernel-config", help="its .config (default: config-* beside it or its build tree's)")]


def _prepare(arch: str, cpus: int, memory: int, accel: str, kernel: Path | None,
             modules: Path | None, kernel_config: Path | None, boot_timeout: float,
             timeout: float) -> tuple[LabSpec, LabImage, AccelChoice]:
    from ..guests.images import images_dir
    from ..host.kvm import host_arch, probe_kvm
    from .image import LAB_ARCHES, custom_image, find_image
    from .machine import LabAccel, LabSpec, choose_accel, nested_enabled

    if arch not in LAB_ARCHES:
        raise typer.BadParameter(f"{arch!r}: one of {', '.join(LAB_ARCHES)}",
                                 param_hint="--arch")
    if accel not in ("auto", "tcg", "kvm"):
        raise typer.BadParameter(f"{accel!r}: auto, tcg or kvm", param_hint="--accel")
    if modules is not None and kernel is None:
        raise typer.BadParameter("applies only with --kernel", param_hint="--modules")
    spec = LabSpec(arch, cpus, memory, cast(LabAccel, accel), boot_timeout,
                   timeout)
    image = find_image(images_dir("lab", spec.arch, "manifest.txt"), spec.arch)
    if kernel is not None:
        image = custom_image(image, kernel.resolve(), modules and modules.resolve(),
                             kernel_config)
    choice = choose_accel(spec.arch, spec.accel, probe_kvm(), host_arch(), nested_enabled())
    return spec, image, choice


def _run(arch: str, cpus: int, memory: int, accel: str, kernel: Path | None,
         modules: Path | None, kernel_config: Path | None, boot_timeout: float, timeout: float,
         argv: list[str] | None) -> int:
    from .job import plan_job
    from .machine import run_lab

    try:
        spec, image, choice = _prepare(arch, cpus, memory, accel, kernel, modules,
                                       kernel_config, boot_timeout, timeout)
        plan = plan_job(argv or ["bash", "-l"], Path.cwd(), checkout())
        print(f"qmpctl lab: {image.describe()}; {choice.accel}: {choice.reason}",
              file=sys.stderr)
        result = asyncio.run(run_lab(spec, image, choice, plan, interactive=argv is None))
    except QmpctlError as exc:
        print(f"qmpctl lab: {exc.message}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    print(f"qmpctl {result.summary()}", file=sys.stderr)
    return result.exit_code


@app.command(context_settings=_PASS)
def run(
    ctx: typer.Context,
    arch: ArchOpt = "aarch64", cpus: CpusOpt = DEFAULT_CPUS,
    memory: MemOpt = 4096, accel: AccelOpt = "auto", kernel: KernelOpt = None,
    modules: ModulesOpt = None, kernel_config: ConfigOpt = None,
    boot_timeout: Annotated[float, typer.Option(help="seconds for the lab to boot")] = 180.0,
    timeout: Annotated[float, typer.Option(help="seconds for the command")] = 3600.0,
) -> None:
    """Boot a lab, run `-- COMMAND...` in it against this checkout, stream its
    output, bring back what it wrote, and exit with its exit code."""
    argv = list(ctx.args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise typer.BadParameter("give the command after --, e.g. `qmpctl lab run -- "
                                 "qmpctl migrate --arch aarch64 --accel kvm`")
    raise typer.Exit(_run(arch, cpus, memory, accel, kernel, modules, kernel_config,
                          boot_timeout, timeout, argv))


@app.command()
def shell(
    arch: ArchOpt = "aarch64", cpus: CpusOpt = DEFAULT_CPUS,
    memory: MemOpt = 4096, accel: AccelOpt = "auto", kernel: KernelOpt = None,
    modules: ModulesOpt = None, kernel_config: ConfigOpt = None,
) -> None:
    """A shell in a lab, for a person (QEMU's console: Ctrl-A X leaves)."""
    raise typer.Exit(_run(arch, cpus, memory, accel, kernel, modules, kernel_config,
                          180.0, 24 * 3600.0, None))


@app.command()
def doctor(arch: ArchOpt = "aarch64", cpus: CpusOpt = DEFAULT_CPUS,
           memory: MemOpt = 4096, accel: AccelOpt = "auto") -> None:
    """`qmpctl doctor` inside a lab: its KVM, ring and bitmap capabilities, its QEMU."""
    raise typer.Exit(_run(arch, cpus, memory, accel, None, None, None, 180.0, 600.0,
                          ["qmpctl", "doctor"]))
