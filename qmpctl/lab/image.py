"""The lab image on disk and the kernel configuration a lab needs.

`images/lab/build.sh` writes, per architecture, `vmlinuz`, `rootfs.cpio`
(uncompressed: no decompression under emulation), the kernel's `config` and
`manifest.txt` (what it was built from) into images/out/lab/<arch>/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.errors import HostError, UsageError
from ..guests.images import build_hint
from ..host.kvm import Arch

LAB_ARCHES: tuple[Arch, ...] = ("aarch64", "x86_64")

# What a lab kernel must have, per architecture, and why (CONFIG_X: (allowed, why)).
_COMMON = {
    "CONFIG_BLK_DEV_INITRD": ("y", "the lab boots from an initramfs"),
    "CONFIG_DEVTMPFS": ("y", "/dev comes from devtmpfs"),
    "CONFIG_TMPFS": ("y", "guest RAM lives on tmpfs (/dev/shm)"),
    "CONFIG_VIRTIO_PCI": ("y", "the results port is virtio-serial on PCI"),
    "CONFIG_VIRTIO_CONSOLE": ("y", "the results port is a virtio-serial port"),
    "CONFIG_KVM": ("ym", "the lab exists to run KVM"),
}
REQUIRED_CONFIG: dict[Arch, dict[str, tuple[str, str]]] = {
    "aarch64": {
        **_COMMON,
        "CONFIG_KVM": ("y", "arm64 KVM cannot be a module"),
        "CONFIG_HAVE_KVM_DIRTY_RING_ACQ_REL": ("y", "the dirty ring (arm64 needs acq-rel)"),
        "CONFIG_NEED_KVM_DIRTY_RING_WITH_BITMAP": ("y", "the ring's backup bitmap (ITS saves)"),
        "CONFIG_SERIAL_AMBA_PL011_CONSOLE": ("y", "the console is virt's PL011"),
    },
    "x86_64": {
        **_COMMON,
        "CONFIG_KVM_AMD": ("ym", "the x86 lab nests KVM on TCG's SVM"),
        "CONFIG_HAVE_KVM_DIRTY_RING_TSO": ("y", "the dirty ring"),
        "CONFIG_SERIAL_8250_CONSOLE": ("y", "the console is a 16550 UART"),
    },
}


def parse_config(text: str) -> dict[str, str]:
    """A kernel .config as {CONFIG_X: value}; `# CONFIG_X is not set` is absent (pure)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, eq, value = line.partition("=")
        if eq and name.startswith("CONFIG_"):
            out[name] = value.strip('"')
    return out


def config_problems(text: str, arch: Arch) -> list[str]:
    """What a lab kernel of `arch` lacks, each with why it is needed (pure)."""
    config = parse_config(text)
    problems = []
    for name, (allowed, why) in REQUIRED_CONFIG[arch].items():
        value = config.get(name)
        if value is None or value not in allowed:
            have = f"={value}" if value else " not set"
            want = " or ".join(f"={v}" for v in allowed)
            problems.append(f"{name}{have} (needs {want}: {why})")
    return problems


def labs_dir(images: Path) -> Path:
    return images / "lab"


@dataclass(frozen=True)
class LabImage:
    """A lab's kernel and root file system, and what they were built from."""

    arch: Arch
    kernel: Path
    rootfs: Path
    config: Path
    manifest: dict[str, str]
    modules: Path | None = None  # a developer's modules directory (--modules)

    @property
    def kernel_release(self) -> str:
        return self.manifest.get("kernel_release", "?")

    def describe(self) -> str:
        m = self.manifest
        return (f"{self.arch} lab: kernel {m.get('kernel_release', '?')} "
                f"({m.get('kernel_package') or self.kernel}), QEMU {m.get('qemu', '?')}, "
                f"Python {m.get('python3', '?')}")


def parse_manifest(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def find_image(images: Path, arch: Arch) -> LabImage:
    """The lab image set-up built for `arch`, or a HostError saying how to build it."""
    d = labs_dir(images) / arch
    files = {n: d / n for n in ("vmlinuz", "rootfs.cpio", "config", "manifest.txt")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise HostError(f"the {arch} lab image is not built ({', '.join(missing)} missing): "
                        f"build it with {build_hint('lab', arch)}")
    return LabImage(arch, files["vmlinuz"], files["rootfs.cpio"], files["config"],
                    parse_manifest(files["manifest.txt"].read_text()))


def kernel_config_for(kernel: Path, config: Path | None) -> Path:
    """Where a developer's kernel keeps its configuration: --kernel-config, a
    `config-*` file beside the image, or the build tree's .config
    (arch/*/boot/Image -> ../../../.config)."""
    if config is not None:
        return config
    candidates = [*sorted(kernel.parent.glob("config-*")), kernel.parent / ".config",
                  *(p / ".config" for p in kernel.resolve().parents[:4])]
    for c in candidates:
        if c.is_file():
            return c
    raise UsageError(f"no kernel configuration found for {kernel} (looked for config-* beside "
                     "it and a .config in its build tree): give it with --kernel-config")


def custom_image(base: LabImage, kernel: Path, modules: Path | None,
                 config: Path | None) -> LabImage:
    """The lab image with a developer's kernel (their patch under test), checked
    before anything boots: the file, its configuration, its modules."""
    if not kernel.is_file():
        raise UsageError(f"--kernel {kernel}: no such file")
    cfg = kernel_config_for(kernel, config)
    if problems := config_problems(cfg.read_text(errors="replace"), base.arch):
        raise UsageError(f"--kernel {kernel} cannot run a {base.arch} lab (config {cfg}): "
                         + "; ".join(problems))
    release = parse_config(cfg.read_text(errors="replace")).get("CONFIG_LOCALVERSION", "")
    if modules is not None:
        if not modules.is_dir():
            raise UsageError(f"--modules {modules}: not a directory")
        if not (modules / "modules.order").is_file() and not (modules / "modules.dep").is_file():
            raise UsageError(f"--modules {modules}: not a kernel modules directory (no "
                             "modules.order or modules.dep; give lib/modules/<release>)")
        release = modules.name
    manifest = {**base.manifest, "kernel_release": release or "custom",
                "kernel_package": f"custom kernel {kernel}"}
    return LabImage(base.arch, kernel, base.rootfs, cfg, manifest, modules)
