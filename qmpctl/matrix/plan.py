"""Which cells this host runs, and why not the others.

qmpctl's own checks decide: each cell's options go through
`scenario.options.resolve` (as `qmpctl migrate` would, without starting
anything), and a cell it refuses here (KVM cannot run that arch, no such
QEMU version, a ring above this KVM's maximum, an image not built) is listed
as not run with qmpctl's reason. A usage error that comes from `[options]`
rather than from a cell would refuse every cell; it is caught first and is
bad input (exit 2).

A cell on a lab host is not asked about here but of its lab (`labs.lab_check`:
the lab image built, its QEMU version); inside that lab, where the lab's own
`qmpctl matrix` runs it, it is this host's cell and `resolve` decides again.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from typing import Any

from pydantic import Field

from ..core.errors import HostError, UsageError
from ..core.model import Model
from ..host.kvm import ARCHES, KvmInfo
from ..host.qemu import known_qemus
from ..scenario.options import MigrateOptions, resolve
from .cells import Cell
from .spec import LOCAL

Check = Callable[[MigrateOptions], str | None]
CellCheck = Callable[[Cell], str | None]


def labs_elsewhere(cell: Cell) -> str:
    """Why a lab cell does not run where no lab runner is (the pytest helper)."""
    return (f"host {cell.host}: a lab host's cells run under `qmpctl matrix`, which boots "
            "the lab for them")


def host_check(kvm: KvmInfo) -> Check:
    """The reason `resolve` refuses these options on this host, or None."""
    def check(opts: MigrateOptions) -> str | None:
        try:
            resolve(opts, kvm)
        except (UsageError, HostError) as exc:
            return f"qmpctl refuses it on this host: {exc.message}"
        return None
    return check


def plan(cells: list[Cell], check: Check, lab_check: CellCheck = labs_elsewhere,
         here: str = LOCAL) -> list[Cell]:
    """Each cell, with the reason it is not run (pure but for the checks):
    cells of host `here` (this host; inside a lab, that lab) by `check`, the
    others by `lab_check`."""
    def why(cell: Cell) -> str | None:
        return check(cell.options) if cell.host == here else lab_check(cell)
    return [cell if cell.not_run is not None or (reason := why(cell)) is None
            else cell.refused(reason) for cell in cells]


def check_options(cells: list[Cell], options: dict[str, Any], kvm: KvmInfo) -> None:
    """[options] that no cell could take are bad input, not "not run": resolve
    them on the plainest cell of each arch and guest (TCG, system QEMU)."""
    if not options:
        return
    for arch, guest in dict.fromkeys((c.axes["arch"], c.axes["guest"]) for c in cells):
        try:
            resolve(MigrateOptions.from_kwargs(**options, arch=arch, guest=guest, accel="tcg"),
                    kvm)
        except UsageError as exc:
            raise UsageError(f"[options] ({arch} {guest}): {exc.message}") from None
        except HostError:
            continue  # the host's problem: the cells say so


class MatrixHost(Model):
    """The host the matrix ran on, for reading its results later."""

    hostname: str
    kernel: str
    machine: str
    cpus: int | None
    kvm: KvmInfo
    qemu: dict[str, list[str]] = Field(description="per arch: each QEMU qmpctl knows, "
                                                   "'VERSION PATH', the default first")


def describe_host(kvm: KvmInfo) -> MatrixHost:
    return MatrixHost(
        hostname=platform.node(), kernel=platform.release(), machine=platform.machine(),
        cpus=os.cpu_count(), kvm=kvm,
        qemu={arch: [f"{q.version_str} {q.path}" for q in known_qemus(arch)]
              for arch in ARCHES})
