"""Linux guests: boot-to-workload time per architecture, guest write throughput
before, during and after migration, and dirty ring vs bitmap where KVM can run
the guest. Prints figures from real runs; asserts nothing (noisy machines).
"""

from __future__ import annotations

import argparse
import asyncio

from qmpctl.host.kvm import kvm_can_run, probe_kvm
from qmpctl.report.models import RunReport
from qmpctl.scenario.options import MigrateOptions
from qmpctl.scenario.runner import run


async def one(arch: str, workload: str, accel: str = "auto", ring: int | None = None
              ) -> RunReport:
    opts = MigrateOptions.from_kwargs(arch=arch, guest="linux", ram=256, accel=accel,
                                      dirty_ring=ring, workload=workload, workload_size="64M")
    return await run(opts)


def row(label: str, rep: RunReport) -> str:
    m, tp = rep.migration, rep.guest_throughput
    if m is None or tp is None:
        return f"{label:34} {rep.verdict}: {rep.error}"
    return (f"{label:34} {rep.verdict:9} boot {rep.boot_s:5.2f}s  passes {m.passes:2}  "
            f"downtime {m.downtime_ms:4} ms  dirtying MiB/s before {tp.before_mib_s} / "
            f"during {tp.during_mib_s} / after {tp.after_mib_s}  stall {tp.max_gap_during_ms} ms")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="wave")
    args = ap.parse_args()
    kvm = probe_kvm()
    for arch in ("x86_64", "aarch64"):
        rep = await one(arch, args.workload)
        accel = rep.config.accel if rep.config else "?"
        print(row(f"{arch} {args.workload} ({accel})", rep))
        if kvm_can_run(arch) and kvm.accessible and kvm.runs_64bit_guests:  # type: ignore[arg-type]
            for ring in (4096, 0):
                label = f"{arch} kvm {'ring 4096' if ring else 'bitmap'}"
                print(row(label, await one(arch, args.workload, "kvm", ring)))
        else:
            why = ("KVM cannot run aarch64 guests here" if not kvm_can_run(arch)  # type: ignore[arg-type]
                   else f"this host's KVM ({kvm.flavour}) cannot run 64-bit Linux")
            print(f"{arch} ring vs bitmap: skipped, {why}")


if __name__ == "__main__":
    asyncio.run(main())
