"""The host facts a kernel or QEMU maintainer asks for first: which kernel,
which CPU and with which flags. Read from /proc; the parsing is pure."""

from __future__ import annotations

import platform
from pathlib import Path

from pydantic import ConfigDict, Field

from ..core.model import Model

# The CPU flags that decide how KVM runs a guest and tracks its dirty pages.
VIRT_FLAGS = ("vmx", "svm", "ept", "npt", "vpid", "pml", "hypervisor", "pdpe1gb", "la57")


class HostFacts(Model):
    """Kernel and CPU of the host the run's QEMUs ran on (the source's host)."""

    model_config = ConfigDict(frozen=True)

    machine: str = Field(description="uname -m")
    kernel_release: str = Field(description="uname -r")
    kernel_version: str = Field(description="/proc/version: the build, compiler and date")
    cpu_model: str | None = Field(None, description="/proc/cpuinfo's first `model name`")
    cpus: int = Field(0, description="logical CPUs in /proc/cpuinfo")
    cpu_flags: list[str] = Field(default_factory=list,
                                 description="the first CPU's flags (x86 `flags`, arm64 "
                                             "`Features`)")

    @property
    def virt_flags(self) -> list[str]:
        """Of `cpu_flags`, those that matter to KVM (VIRT_FLAGS), present ones only."""
        return [f for f in VIRT_FLAGS if f in self.cpu_flags]


def parse_cpuinfo(text: str) -> tuple[str | None, int, list[str]]:
    """(model name, logical CPUs, first CPU's flags) from /proc/cpuinfo (pure)."""
    model: str | None = None
    flags: list[str] | None = None
    cpus = 0
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor":
            cpus += 1
        elif key in ("model name", "Model name") and model is None:
            model = value
        elif key in ("flags", "Features") and flags is None:
            flags = value.split()
    return model, cpus, flags or []


def probe_host_facts(proc: Path = Path("/proc")) -> HostFacts:
    """This host's facts; a file that cannot be read leaves its field empty."""
    def read(name: str) -> str:
        try:
            return (proc / name).read_text(errors="replace")
        except OSError:
            return ""

    model, cpus, flags = parse_cpuinfo(read("cpuinfo"))
    return HostFacts(machine=platform.machine(), kernel_release=platform.release(),
                     kernel_version=read("version").strip(), cpu_model=model, cpus=cpus,
                     cpu_flags=flags)
