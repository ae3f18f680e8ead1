"""`--dirty-limit`: vCPUs that dirty too fast are made to sleep (KVM dirty ring)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from ..models import FeatureEvidence
from ..settings import MigrationSettings
from . import DocRow, Feature, FeatureOptions, Observed, RunFacts, trace_args


def ring_problem(option: str, run: RunFacts) -> str | None:
    """dirty-limit meters KVM's dirty ring: not on the bitmap nor TCG (pure)."""
    if run.accel == "kvm" and run.ring:
        return None
    return (f"{option}: dirty-limit meters the KVM dirty ring, and this run uses "
            + ("the KVM dirty bitmap" if run.accel == "kvm" else "TCG")
            + "; use --accel kvm with --dirty-ring N")


@dataclass(frozen=True)
class DirtyLimit:
    """`dirty-limit`: vCPUs that dirty faster than `mbps` are made to sleep
    (needs the KVM dirty ring, whose ring-full exits it meters)."""

    mbps: int
    period_ms: int | None = None
    name: str = "dirty-limit"

    def settings(self) -> MigrationSettings:
        params = {"vcpu-dirty-limit": self.mbps}
        if self.period_ms is not None:
            params["x-vcpu-dirty-limit-period"] = self.period_ms
        return MigrationSettings(capabilities={"dirty-limit": True}, parameters=params)

    def trace_events(self) -> tuple[str, ...]:
        return ("dirtylimit_vcpu_execute",)

    def evidence(self, seen: Observed) -> FeatureEvidence:
        samples = seen.stats.samples
        per_round = max((s.dirty_limit_throttle_time_per_round or 0 for s in samples),
                        default=0)
        ring_full = max((s.dirty_limit_ring_full_time or 0 for s in samples), default=0)
        sleeps = trace_args(seen.src_log, "dirtylimit_vcpu_execute")
        figures = {"max_throttle_time_per_round_us": per_round,
                   "max_ring_full_time_us": ring_full, "vcpu_sleeps": len(sleeps)}
        detail = (f"dirty-limit-throttle-time-per-round up to {per_round} us, "
                  f"dirty-limit-ring-full-time up to {ring_full} us, {len(sleeps)} vCPU "
                  "sleeps (dirtylimit_vcpu_execute)")
        engaged = bool(per_round or sleeps)
        return FeatureEvidence(feature=self.name, engaged=engaged, figures=figures,
                               detail=detail if engaged else "no vCPU was ever limited: "
                               + detail)


class DirtyLimitOptions(FeatureOptions):
    """The dirty-limit capability, MB/s per vCPU."""

    dirty_limit: int | None = Field(None, description="dirty-limit capability, MB/s per vCPU "
                                    "(KVM dirty ring only)")
    dirty_limit_period: int | None = Field(None, description="--dirty-limit: "
                                           "x-vcpu-dirty-limit-period, ms")

    order = 80
    matrix = {"dirty-limit": {"dirty_limit": 50}}
    matrix_needs_ring = True
    doc = DocRow("`--dirty-limit MB/s` (`--dirty-limit-period ms`); KVM dirty ring only",
                 "`dirty-limit`, `vcpu-dirty-limit`, `x-vcpu-dirty-limit-period`",
                 "`dirty-limit-throttle-time-per-round` > 0 or `dirtylimit_vcpu_execute` "
                 "sleeps")

    def problems(self, run: RunFacts) -> list[str]:
        problems = []
        if self.dirty_limit_period is not None and self.dirty_limit is None:
            problems.append("--dirty-limit-period needs --dirty-limit")
        if self.dirty_limit is None:
            return problems
        if problem := ring_problem("--dirty-limit", run):
            problems.append(problem)
        if self.dirty_limit < 1:
            problems.append("--dirty-limit must be at least 1 MB/s")
        if run.given("auto_converge"):
            problems.append("--dirty-limit with --auto-converge: QEMU runs one throttle or "
                            "the other")
        return problems

    def build(self, run: RunFacts) -> Feature | None:
        if self.dirty_limit is None:
            return None
        return DirtyLimit(self.dirty_limit, self.dirty_limit_period)
