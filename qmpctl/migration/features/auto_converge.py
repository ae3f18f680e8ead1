"""`--auto-converge`: QEMU throttles the vCPUs when dirtying outruns sending."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from ..models import FeatureEvidence
from ..settings import MigrationSettings
from . import DocRow, Feature, FeatureOptions, Observed, RunFacts


@dataclass(frozen=True)
class AutoConverge:
    """`auto-converge`: QEMU throttles the vCPUs when dirtying outruns sending."""

    initial: int | None = None
    increment: int | None = None
    name: str = "auto-converge"

    def settings(self) -> MigrationSettings:
        params = {"cpu-throttle-initial": self.initial, "cpu-throttle-increment": self.increment}
        return MigrationSettings(capabilities={"auto-converge": True},
                                 parameters={k: v for k, v in params.items() if v is not None})

    def trace_events(self) -> tuple[str, ...]:
        return ()

    def evidence(self, seen: Observed) -> FeatureEvidence:
        pcts = [s.cpu_throttle_percentage or 0 for s in seen.stats.samples]
        top = max(pcts, default=0)
        throttled = sum(1 for p in pcts if p)
        if not top:
            return FeatureEvidence(feature=self.name, engaged=False, detail=(
                f"cpu-throttle-percentage stayed 0 in all {len(pcts)} passes: QEMU never "
                "throttled the vCPUs"))
        return FeatureEvidence(
            feature=self.name, engaged=True,
            detail=f"vCPUs throttled in {throttled} of {len(pcts)} passes, up to {top} % "
                   "(cpu-throttle-percentage)",
            figures={"max_cpu_throttle_percentage": top, "throttled_passes": throttled})


class AutoConvergeOptions(FeatureOptions):
    """auto-converge, with its first throttle and its step."""

    auto_converge: bool = Field(False, description="auto-converge: QEMU throttles the vCPUs; "
                                "the report shows the throttle")
    cpu_throttle_initial: int | None = Field(None, description="--auto-converge: first "
                                             "throttle, %")
    cpu_throttle_increment: int | None = Field(None, description="--auto-converge: throttle "
                                               "step, %")

    order = 40
    # 8 MiB/s held back: the guest outruns it, which is what makes QEMU throttle
    matrix = {"auto-converge": {"auto_converge": True, "throttle": 8}}
    doc = DocRow("`--auto-converge` (`--cpu-throttle-initial/-increment %`)",
                 "`auto-converge`, `cpu-throttle-*`",
                 "`cpu-throttle-percentage` > 0 in a pass sample")

    def problems(self, run: RunFacts) -> list[str]:
        if not self.auto_converge and (self.cpu_throttle_initial is not None
                                       or self.cpu_throttle_increment is not None):
            return ["--cpu-throttle-initial/--cpu-throttle-increment need --auto-converge"]
        return []

    def build(self, run: RunFacts) -> Feature | None:
        if not self.auto_converge:
            return None
        return AutoConverge(self.cpu_throttle_initial, self.cpu_throttle_increment)
