"""The `Guest` protocol: what the runner needs from any guest it launches."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..host.kvm import Arch
from ..qemu.console import ConsoleView, SerialConsole
from ..qemu.machine import QemuMachine
from ..verify.classify import PageClassifier
from ..verify.ramimage import RamLayout, Sampled
from .base import GuestCheck, GuestResult
from .gic import ItsTable
from .linux import GuestThroughput


class Guest(Protocol):
    """A guest image plus its workload, checks and memory map."""

    @property
    def arch(self) -> Arch: ...
    @property
    def ram_mib(self) -> int: ...
    @property
    def smp(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def progress_unit(self) -> str: ...
    @property
    def needs_64bit_kvm(self) -> bool: ...
    @property
    def kernel(self) -> Path: ...
    @property
    def initrd(self) -> Path | None: ...
    @property
    def append(self) -> str | None: ...
    @property
    def machine_opts(self) -> tuple[str, ...]:
        """Extra `-machine` KEY=VALUE options the guest needs."""
    @property
    def measures_progress(self) -> bool:
        """Whether `work_done` sees the workload's writes (else QEMU's re-sent
        pages are the only evidence memory was re-dirtied)."""
    @property
    def checks_image_after_resume(self) -> bool:
        """Whether the guest may be paused again after the resume to check its image."""

    def fw_cfg(self) -> tuple[tuple[str, str], ...]: ...
    def devices(self, udp_port: int) -> tuple[str, ...]: ...
    def validate(self) -> None:
        """Raise UsageError when the guest cannot run as configured."""
    def workload_summary(self) -> dict[str, int | str]: ...
    def layout(self, view: ConsoleView | None = None) -> RamLayout:
        """Where things are in RAM; `view` refines it from what the guest announced."""
    def ready(self, view: ConsoleView) -> bool | None: ...
    def work_done(self, view: ConsoleView) -> int:
        """Monotonic measure of the workload's writes as the console reports them."""
    async def before_migration(self, console: SerialConsole, timeout: float
                               ) -> list[GuestCheck]: ...
    async def wait_resumed(self, console: SerialConsole, timeout: float) -> str: ...
    async def after_resume(self, console: SerialConsole, timeout: float
                           ) -> list[GuestCheck]: ...
    def image_checks(self, ram: Path | Sampled, stage: str) -> list[GuestCheck]: ...
    def classifier(self) -> PageClassifier | None:
        """How to tell a stale page from a corrupt one in this workload's memory."""
    def throughput(self, src: ConsoleView, dst: ConsoleView, t_start: float, t_end: float,
                   t_cont: float) -> GuestThroughput | None: ...
    async def next_migration(self, machine: QemuMachine, timeout: float) -> bool:
        """After the resume on `machine`: does the guest ask to be migrated again?"""
    def result(self, transcript: bytes, qemu_exit_code: int | None, requests: int
               ) -> GuestResult | None:
        """The guest's own verdict from all it printed (None: it gives none)."""
    def announced_tables(self, view: ConsoleView) -> tuple[ItsTable, ...] | None:
        """The ITS/LPI tables the guest said it uses (None: the guest has no
        ITS; empty: it has one but said nothing)."""
