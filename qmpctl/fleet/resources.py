"""What a host can run, as Dask resources, and what a cell needs (pure).

A worker declares each capability from `qmpctl doctor`'s facts with the
amount `--slots` (so capabilities never limit more than slots do); a task
asks for 1 of each capability its cell's axes need and 1 `slot`. Names:

    slot                           one migration at a time per slot
    {arch}-tcg                     a QEMU for arch is installed
    {arch}-kvm, {arch}-kvm-bitmap  KVM runs arch here (its own arch)
    {arch}-kvm-ring{N}             a dirty ring of N entries (powers of two to the maximum)
    {arch}-kvm-ring-with-bitmap    KVM's ring-with-bitmap (arm64 ring cells need it)
    {arch}-kvm-64bit               KVM runs 64-bit Linux (Linux/kernel guests on x86_64 KVM)
    qemu-{arch}-{X.Y}, qemu-{arch}-{X.Y.Z}   each installed QEMU version
    lab-{arch}                     a `qmpctl lab` image is built (a fact; lab cells run locally)

The worker's own `qmpctl migrate` checks still decide when the task runs (a
feature its QEMU lacks is refused there, naming the worker).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..host.kvm import ARCHES, KvmInfo
from ..host.qemu import is_version
from ..matrix.cells import Cell
from ..matrix.plan import MatrixHost
from ..scenario.options import MigrateOptions

SLOT = "slot"
MIN_RING = 64  # smallest ring declared; QEMU and KVM refuse what they cannot take


def ring_sizes(max_entries: int) -> list[int]:
    """Every power of two from MIN_RING to the host's maximum ring (pure)."""
    sizes, n = [], MIN_RING
    while n <= max_entries:
        sizes.append(n)
        n *= 2
    return sizes


def host_resources(machine: MatrixHost, host_arch: str, labs: Iterable[str], slots: int,
                   withheld: Iterable[str] = ()) -> dict[str, float]:
    """The resources a worker on this host declares (pure): each fact, `slots`
    of it. `withheld`: names the user keeps off this worker (`--without`)."""
    kvm: KvmInfo = machine.kvm
    names = [SLOT]
    for arch in ARCHES:
        qemus = machine.qemu.get(arch, [])
        if qemus:
            names.append(f"{arch}-tcg")
        for line in qemus:
            full = line.split()[0]
            names += [f"qemu-{arch}-{'.'.join(full.split('.')[:2])}", f"qemu-{arch}-{full}"]
        if kvm.accessible and arch == host_arch and qemus:
            names += [f"{arch}-kvm", f"{arch}-kvm-bitmap"]
            names += [f"{arch}-kvm-ring{n}" for n in ring_sizes(kvm.dirty_ring_max_entries)]
            if kvm.has_ring_with_bitmap:
                names.append(f"{arch}-kvm-ring-with-bitmap")
            if kvm.runs_64bit_guests:
                names.append(f"{arch}-kvm-64bit")
    names += [f"lab-{arch}" for arch in labs]
    drop = set(withheld)
    return {n: float(slots) for n in dict.fromkeys(names) if n not in drop}


def cell_needs(cell: Cell) -> dict[str, float]:
    """The resources one run of `cell` takes (pure)."""
    a = cell.axes
    arch, accel = a["arch"], a["accel"]
    needs = [SLOT, f"{arch}-{accel}"]
    if accel == "kvm":
        if a["tracking"] == "bitmap":
            needs.append(f"{arch}-kvm-bitmap")
        else:
            needs.append(f"{arch}-kvm-ring{a['ring']}")
            if arch == "aarch64":
                needs.append(f"{arch}-kvm-ring-with-bitmap")
        if a["guest"] != "baremetal" and arch == "x86_64":
            needs.append(f"{arch}-kvm-64bit")
    for key in ("qemu_src", "qemu_dst"):
        if (version := cell.kwargs.get(key)) is not None:
            needs.append(f"qemu-{arch}-{version}")
    return dict.fromkeys(needs, 1.0)


def missing(needs: Mapping[str, float], have: Mapping[str, float]) -> list[str]:
    """What `have` lacks of `needs` (pure)."""
    return [n for n, amount in needs.items() if have.get(n, 0.0) < amount]


def unschedulable(needs: Mapping[str, float], workers: Mapping[str, Mapping[str, float]],
                  ) -> str | None:
    """Why no worker can run a task needing `needs`, or None (pure): the
    resources it asks for, and what the closest worker lacks."""
    if any(not missing(needs, have) for have in workers.values()):
        return None
    asked = ", ".join(n for n in needs if n != SLOT)
    if not workers:
        return f"unschedulable: no worker is connected (it needs {asked})"
    name, have = min(workers.items(), key=lambda w: (len(missing(needs, w[1])), w[0]))
    return (f"unschedulable: no worker has all of {asked} (the closest, {name}, lacks "
            f"{', '.join(missing(needs, have))})")


def options_needs(opts: MigrateOptions, kvm_arch: str | None = None,
                  ring_with_bitmap: bool = False, guest64: bool = False) -> dict[str, float]:
    """The resources one `qmpctl_migrate` call takes (pure): its options' arch,
    accelerator (auto: any host with the QEMU; the worker's KVM decides, as
    it would here), tracking and QEMU versions, and what the test's
    `qmpctl_kvm` marker asks for (`kvm_arch` set: KVM of that arch)."""
    arch = opts.arch
    needs = [SLOT, f"{arch}-tcg"]
    if opts.accel == "kvm" or kvm_arch is not None:
        arch = kvm_arch or arch
        needs = [SLOT, f"{arch}-kvm"]
        if opts.dirty_ring == 0:
            needs.append(f"{arch}-kvm-bitmap")
        elif opts.dirty_ring is not None:
            needs.append(f"{arch}-kvm-ring{opts.dirty_ring}")
        if ring_with_bitmap:
            needs.append(f"{arch}-kvm-ring-with-bitmap")
        if guest64 or (opts.guest != "baremetal" and arch == "x86_64"):
            needs.append(f"{arch}-kvm-64bit")
    for version in (opts.qemu_src, opts.qemu_dst, opts.qemu):
        if version is not None and is_version(version):
            needs.append(f"qemu-{opts.arch}-{version}")
    return dict.fromkeys(needs, 1.0)
