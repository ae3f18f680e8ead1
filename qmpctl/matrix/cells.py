"""Cells: one point of the cartesian product, as MigrateOptions keywords.

Cell ids always name every axis, in a fixed order, so one configuration has
the same id in every preset and file (CI history, `--cell`, `--known-loss`
stay comparable):

    {arch}-{accel}[-{bitmap|ringN}]-smp{N}-{guest}-{feature}-{qemu}[@{host}]
    x86_64-kvm-ring4096-smp1-baremetal-precopy-10.0->10.0
    x86_64-tcg-smp1-baremetal-postcopy-7.2->10.0
    x86_64-kvm-ring4096-smp1-baremetal-precopy-10.0->10.0@lab-x86_64

A cell on this host (`local`) has no host part, so every id from before the
host axis is unchanged; the same configuration in a lab is the same id with
`@lab-ARCH`, and sits right after the local one (host is the innermost axis).

Under TCG, dirty pages are tracked by TCG itself: the tracking and ring axes
do not apply, so a TCG cell has no tracking part and runs once per
combination of the other axes. When a product names tracking or ring sizes
explicitly, each combination that collapses into the TCG cell is still listed
as a cell that is not run, saying so; nothing is dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from itertools import product
from typing import Any

from ..core.errors import UsageError
from ..host.kvm import Arch
from ..scenario.options import DEFAULT_RAM, MigrateOptions, build_guest, option_problems
from .features import FEATURES
from .spec import LOCAL, Axes, MatrixSpec, parse_qemu_pair

TCG_COLLAPSED = ("TCG tracks dirty pages itself: tracking and ring sizes apply to KVM only, so "
                 "this combination is the TCG cell without them ({id})")


@dataclass(frozen=True)
class Cell:
    """One configuration of the matrix. `kwargs` are `qmpctl_migrate`'s
    keyword arguments (= `qmpctl migrate`'s options); `not_run` says why this
    host does not run it (None: it runs). `str(cell)` is its id."""

    id: str
    axes: Mapping[str, str]  # axis name -> value, as --known-loss matches them
    kwargs: Mapping[str, Any]
    options: MigrateOptions
    not_run: str | None = None

    def __str__(self) -> str:
        return self.id

    @property
    def host(self) -> str:
        """Where it runs: `local` or a lab host (`lab-aarch64`, `lab-x86_64`)."""
        return self.axes.get("host", LOCAL)

    def refused(self, reason: str) -> Cell:
        return replace(self, not_run=reason)


def default_smp(arch: Arch, guest: str) -> int:
    """The vCPUs `qmpctl migrate` gives this guest when --smp is not set."""
    opts = MigrateOptions.from_kwargs(arch=arch, guest=guest)
    return build_guest(opts, arch, DEFAULT_RAM[guest]).smp


def _tracking_variants(axes: Axes) -> list[tuple[str, int | None]]:
    """(tracking, ring size): ring sizes multiply tracking=ring only."""
    return [(t, r) for t in axes.trackings
            for r in ((None,) if t == "bitmap" else axes.rings)]


def _cell(arch: Arch, accel: str, tracking: str, ring: int | None, smp: int | str, guest: str,
          feature: str, qemu: str, host: str, options: Mapping[str, Any],
          not_run: str | None = None) -> Cell:
    smp_n = default_smp(arch, guest) if smp == "default" else int(smp)
    segment = "" if tracking == "tcg" else ("bitmap" if ring is None else f"ring{ring}")
    cell_id = "-".join(p for p in (arch, accel, segment, f"smp{smp_n}", guest, feature, qemu)
                       if p) + ("" if host == LOCAL else f"@{host}")
    src, dst = parse_qemu_pair(qemu)
    kwargs: dict[str, Any] = {"arch": arch, "accel": accel, "guest": guest}
    if ring is not None or tracking == "bitmap":
        kwargs["dirty_ring"] = ring or 0
    if smp != "default":
        kwargs["smp"] = smp_n
    if src is not None:
        kwargs |= {"qemu_src": src, "qemu_dst": dst}
    kwargs |= FEATURES[feature] | dict(options)
    try:
        opts = MigrateOptions.from_kwargs(**kwargs)
    except UsageError as exc:
        raise UsageError(f"cell {cell_id}: {exc.message}") from None
    if problems := option_problems(opts):
        raise UsageError(f"cell {cell_id}: {'; '.join(problems)}")
    axes = {"arch": arch, "accel": accel, "tracking": tracking, "ring": str(ring or ""),
            "smp": str(smp_n), "guest": guest, "feature": feature, "qemu": qemu, "host": host}
    return Cell(cell_id, axes, kwargs, opts, not_run)


def _product_cells(axes: Axes, options: Mapping[str, Any]) -> Iterator[Cell]:
    variants = _tracking_variants(axes)
    # host last: the same configuration on each host, one after the other
    for arch, accel, (tracking, ring), smp, guest, feature, qemu, host in product(
            axes.arch, axes.accel, variants, axes.smp, axes.guest, axes.feature, axes.qemu,
            axes.host):
        if accel == "kvm":
            yield _cell(arch, accel, tracking, ring, smp, guest, feature, qemu, host, options)
            continue
        tcg = _cell(arch, accel, "tcg", None, smp, guest, feature, qemu, host, options)
        yield tcg
        if axes.explicit_tracking:
            yield _cell(arch, accel, tracking, ring, smp, guest, feature, qemu, host, options,
                        TCG_COLLAPSED.format(id=tcg.id))


def expand(spec: MatrixSpec) -> list[Cell]:
    """Every cell of the spec, in product order, each id once (a union of
    products may name a cell twice). Raises UsageError for options a cell
    cannot take (pure)."""
    cells: dict[str, Cell] = {}
    for axes in spec.axes:
        for cell in _product_cells(axes, spec.options):
            cells.setdefault(cell.id, cell)
    return list(cells.values())


def select(cells: list[Cell], pattern: str | None) -> list[Cell]:
    """`--cell REGEX`: the cells whose id it matches (re.search)."""
    if pattern is None:
        return cells
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"--cell {pattern!r}: not a regular expression ({exc})") from None
    chosen = [c for c in cells if regex.search(c.id)]
    if not chosen:
        shown = ", ".join(c.id for c in cells[:3]) + (", ..." if len(cells) > 3 else "")
        raise UsageError(f"--cell {pattern!r} matches none of the {len(cells)} cells "
                         f"({shown})")
    return chosen
