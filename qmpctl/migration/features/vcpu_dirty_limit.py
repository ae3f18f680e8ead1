"""`--vcpu-dirty-limit`: `set-vcpu-dirty-limit` on the running source.

The scenario sets and cancels the limit itself before migrating (the
runner's `_vcpu_dirty_limit`), so the option is a `MigrateOptions` field of
its own; this module holds its rules and the evidence it must show."""

from __future__ import annotations

from ..models import FeatureEvidence
from . import DocRow, FeatureOptions, RunFacts, outcome
from .dirty_limit import ring_problem


def vcpu_dirty_limit_evidence(mbps: int, limits: list[dict[str, int]], before: float,
                              limited: float, after: float, unit: str) -> FeatureEvidence:
    """`set-vcpu-dirty-limit` on a running guest (QEMU's vcpu_dirty_limit
    case): QEMU must list the limit on every vCPU, and the guest's own write
    rate must fall under it and rise again once it is cancelled (pure)."""
    figures = {"rate_before": round(before, 2), "rate_limited": round(limited, 2),
               "rate_after_cancel": round(after, 2), "vcpus_limited": len(limits)}
    detail = (f"{unit} per second: {before:.2f} before, {limited:.2f} under {mbps} MB/s, "
              f"{after:.2f} after cancel-vcpu-dirty-limit; query-vcpu-dirty-limit listed "
              f"{len(limits)} vCPU(s)")
    problems = []
    if not limits or any(v.get("limit-rate") != mbps for v in limits):
        problems.append(f"query-vcpu-dirty-limit does not show {mbps} MB/s on every vCPU")
    if not limited < 0.5 * before:
        problems.append("the guest's write rate did not fall under the limit")
    if not after > limited:
        problems.append("the guest's write rate did not recover after the cancel")
    return outcome("vcpu-dirty-limit", problems, detail, figures)


class VcpuDirtyLimitOptions(FeatureOptions):
    """A per-vCPU dirty limit set on the running source, then cancelled."""

    order = 90
    matrix = {"vcpu-dirty-limit": {"vcpu_dirty_limit": 50}}
    matrix_needs_ring = True
    doc = DocRow("`--vcpu-dirty-limit MB/s`; KVM dirty ring only",
                 "`set-vcpu-dirty-limit` on the running source before migrating, then "
                 "`cancel-vcpu-dirty-limit`",
                 "`query-vcpu-dirty-limit` lists the limit on every vCPU; the guest's own "
                 "write rate (wave passes/s over 2 s) falls below half and recovers after the "
                 "cancel")

    def problems(self, run: RunFacts) -> list[str]:
        mbps = run.values.get("vcpu_dirty_limit")
        if mbps is None:
            return []
        problems = []
        if problem := ring_problem("--vcpu-dirty-limit", run):
            problems.append(problem)
        if mbps < 1:
            problems.append("--vcpu-dirty-limit must be at least 1 MB/s")
        return problems
