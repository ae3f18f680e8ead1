"""Linux guests: Debian's cloud kernel with a busybox initramfs running
guestload (guestload/linux), a looped-back virtio-net NIC, and the guest's
write throughput around the migration."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..core.errors import UsageError
from ..core.model import Model
from ..core.units import PAGE_SIZE, MiB
from ..host.kvm import Arch
from ..qemu.console import ConsoleView, Record, SerialConsole
from ..verify.classify import GuestloadClassifier, PageClassifier
from ..verify.ramimage import RamLayout, Region, Sampled
from .base import RAM_BASE, GuestCheck, OwnGuest, ram_layout
from .images import image_path

LINUX_WORKLOADS = ("wave", "random", "hotset", "rate", "readmostly")
LINUX_CONSOLE: dict[Arch, str] = {"x86_64": "ttyS0", "aarch64": "ttyAMA0"}


@dataclass(frozen=True)
class LinuxWorkload:
    """guestload's parameters (guestload/linux/guestload.c), as kernel args."""

    kind: str = "wave"
    size: str = "64M"  # MiB/GiB or % of RAM
    hot: str | None = None  # hotset: "X,Y"
    rate_mib_s: int | None = None  # rate

    def problems(self) -> list[str]:
        out = []
        if self.kind not in LINUX_WORKLOADS:
            out.append(f"--workload {self.kind!r}: choose one of {', '.join(LINUX_WORKLOADS)}")
        num, unit = self.size[:-1], self.size[-1:]
        if not (num.isdigit() and unit in "MG%" and int(num) > 0) or \
                (unit == "%" and int(num) > 90):
            out.append(f"--workload-size {self.size!r}: expected e.g. 64M, 1G or 25% (<= 90%)")
        return out

    def size_mib(self, ram_mib: int) -> int:
        """The workload's memory in MiB (pure; `problems()` must be empty)."""
        num, unit = int(self.size[:-1]), self.size[-1:]
        return {"M": num, "G": num * 1024}.get(unit, ram_mib * num // 100)

    def cmdline(self) -> str:
        args = [f"qmpctl.workload={self.kind}", f"qmpctl.size={self.size}"]
        if self.hot:
            args.append(f"qmpctl.hot={self.hot}")
        if self.rate_mib_s:
            args.append(f"qmpctl.rate={self.rate_mib_s}")
        return " ".join(args)


@dataclass(frozen=True)
class LinuxGuest(OwnGuest):
    """Debian's cloud kernel + busybox initramfs running guestload, with a
    virtio-net-pci NIC whose frames loop back through a UDP socket on
    127.0.0.1 (on arm64 its MSI-X interrupts go through the ITS)."""

    arch: Arch
    ram_mib: int
    workload: LinuxWorkload
    smp: int = 2

    name = "linux"
    needs_64bit_kvm = True
    progress_unit = "pages written"
    wave = None
    # What the guest said before migrating, needed after resume (mutable on purpose).
    seen: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def kernel(self) -> Path:
        return image_path(self.arch, "linux", "vmlinuz")

    @property
    def initrd(self) -> Path:
        return image_path(self.arch, "linux", "initrd.img")

    @property
    def append(self) -> str:
        return (f"console={LINUX_CONSOLE[self.arch]} quiet panic=-1 "
                f"{self.workload.cmdline()}")

    def fw_cfg(self) -> tuple[tuple[str, str], ...]:
        return ()

    def workload_summary(self) -> dict[str, int | str]:
        w = self.workload
        return {"kind": f"linux-{w.kind}", "size": w.size, "hot": w.hot or "",
                "rate_mib_s": w.rate_mib_s or 0}

    def classifier(self) -> PageClassifier | None:
        return GuestloadClassifier()

    def throughput(self, src: ConsoleView, dst: ConsoleView, t_start: float, t_end: float,
                   t_cont: float) -> GuestThroughput | None:
        return guest_throughput(src, dst, t_start, t_end, t_cont)

    def devices(self, udp_port: int) -> tuple[str, ...]:
        # Each side's netdev sends to itself: traffic never leaves QEMU.
        loop = f"127.0.0.1,local.port={udp_port}"
        return ("-netdev", f"dgram,id=n0,local.type=inet,local.host={loop},"
                           f"remote.type=inet,remote.host={loop.replace('local', 'remote')}",
                "-device", "virtio-net-pci,netdev=n0")

    def layout(self, view: ConsoleView | None = None) -> RamLayout:
        return ram_layout(self.arch, self.ram_mib,
                          (Region("Linux RAM", RAM_BASE[self.arch],
                                  RAM_BASE[self.arch] + self.ram_mib * MiB),))

    def validate(self) -> None:
        problems = self.workload.problems()
        if self.ram_mib < 256:
            problems.append(f"--ram {self.ram_mib}: Linux guests need at least 256 MiB")
        if self.smp < 1:
            problems.append("--smp must be at least 1")
        if problems:
            raise UsageError("; ".join(problems))

    def ready(self, view: ConsoleView) -> bool | None:
        head = view.last("guestload")
        return True if head is not None and "ready" in head.fields else None

    def work_done(self, view: ConsoleView) -> int:
        last = view.last("progress")
        return last.int("pages") if last is not None else 0

    async def wait_resumed(self, console: SerialConsole, timeout: float) -> str:
        def advanced(v: ConsoleView) -> str | None:
            pages = [r.int("pages") for r in v.find("progress")]
            return (f"guestload progress resumed on the destination: {pages[-1] - pages[0]} "
                    f"pages written across {len(pages)} progress records"
                    if len(pages) >= 2 and pages[-1] > pages[0] else None)
        return await console.wait_for(advanced, timeout, "guestload progress after resume")

    async def _net(self, console: SerialConsole, timeout: float) -> tuple[Record, Record]:
        """`N`: the NIC's interrupt count (`net`) and which irqchip delivers them (`netinfo`)."""
        seen = len(console.view().find("netinfo"))
        await console.send(b"N")
        info = await console.wait_for(
            lambda v: v.find("netinfo")[seen] if len(v.find("netinfo")) > seen else None,
            timeout, "the guest's NIC interrupt count")
        net = console.view().last("net")
        assert net is not None  # guestload prints `net` right before `netinfo`
        return net, info

    async def before_migration(self, console: SerialConsole, timeout: float) -> list[GuestCheck]:
        # A few progress records first, so the report has a throughput baseline.
        await console.wait_for(lambda v: True if len(v.find("progress")) >= 4 else None,
                               timeout, "guestload progress before migration")
        net, info = await self._net(console, timeout)
        self.seen["irqs"] = net.int("irqs")
        # Without interrupts before migrating, "interrupts grew" after resume proves nothing.
        return [GuestCheck(name="nic-interrupting", stage="source, before migration",
                           ok=net.int("irqs") > 0,
                           detail=f"virtio-net interrupts so far: {net.int('irqs')}, via "
                                  f"{info.fields.get('chip', '?')}")]

    async def after_resume(self, console: SerialConsole, timeout: float) -> list[GuestCheck]:
        checks = []
        seen = len(console.view().find("selfcheck"))
        await console.send(b"C")
        result = await console.wait_for(
            lambda v: v.find("selfcheck")[seen] if len(v.find("selfcheck")) > seen else None,
            timeout, "guestload's self-check")
        checks.append(GuestCheck(
            name="guest-selfcheck", stage="destination, after resume",
            ok=result.fields.get("result") == "PASS",
            detail=" ".join(f"{k}={v}" for k, v in result.fields.items() if k != "result")))
        before = self.seen.get("irqs", -1)
        net, info = await self._net(console, timeout)
        chip = info.fields.get("chip", "?")
        want_chip = "ITS-MSI" if self.arch == "aarch64" else "PCI-MSI"
        checks.append(GuestCheck(
            name="nic-interrupts", stage="destination, after resume",
            ok=net.int("irqs") > before >= 0 and chip == want_chip,
            detail=f"virtio-net interrupts {before} before migration, {net.int('irqs')} "
                   f"after resume, delivered via {chip} (expected {want_chip})"))
        return checks

    def image_checks(self, ram: Path | Sampled, stage: str) -> list[GuestCheck]:
        return []  # guestload checks itself (`C`), from inside the guest


class ThroughputSample(Model):
    side: Literal["src", "dst"]
    t_s: float = Field(description="host seconds since the migration started")
    written_mib: int = Field(description="guest's cumulative MiB written")


class GuestThroughput(Model):
    """Linux guests: write throughput from guestload's progress records."""

    before_mib_s: float | None
    during_mib_s: float | None
    after_mib_s: float | None
    max_gap_during_ms: int | None = Field(
        description="longest silence between progress records while migrating")
    samples: list[ThroughputSample]


def _rate(records: list[Record]) -> float | None:
    """MiB/s between the first and last progress record (host arrival times)."""
    if len(records) < 2 or records[-1].at <= records[0].at:
        return None
    pages = records[-1].int("pages") - records[0].int("pages")
    return round(pages * PAGE_SIZE / MiB / (records[-1].at - records[0].at), 1)


def guest_throughput(src: ConsoleView, dst: ConsoleView, t_start: float, t_end: float,
                     t_cont: float) -> GuestThroughput:
    """Guest write throughput before, during and after migration, from the
    progress records' host arrival times (the guest clock stops with the VM)."""
    before = [r for r in src.find("progress") if r.at < t_start]
    during = [r for r in src.find("progress") if t_start <= r.at <= t_end]
    after = [r for r in dst.find("progress") if r.at >= t_cont]
    edge = before[-1:] + during
    gaps = [b.at - a.at for a, b in itertools.pairwise(edge)]
    return GuestThroughput(
        before_mib_s=_rate(before), during_mib_s=_rate(edge), after_mib_s=_rate(after),
        max_gap_during_ms=round(max(gaps) * 1000) if gaps else None,
        samples=[ThroughputSample(side=side, t_s=round(r.at - t_start, 3),
                                  written_mib=r.int("written_mib"))
                 for side, recs in (("src", before + during), ("dst", after)) for r in recs],
    )
