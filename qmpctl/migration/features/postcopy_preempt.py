"""`--postcopy-preempt`: faulted pages over a channel of their own."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from ..models import FeatureEvidence
from ..settings import MigrationSettings
from . import DocRow, Feature, FeatureOptions, Observed, RunFacts, trace_args


@dataclass(frozen=True)
class PostcopyPreempt:
    """`postcopy-preempt`: urgent (faulted) pages go over a channel of their own."""

    name: str = "postcopy-preempt"

    def settings(self) -> MigrationSettings:
        return MigrationSettings(capabilities={"postcopy-preempt": True})

    def trace_events(self) -> tuple[str, ...]:
        return ("postcopy_preempt_new_channel", "postcopy_preempt_send_host_page")

    def evidence(self, seen: Observed) -> FeatureEvidence:
        channels = len(trace_args(seen.dst_log, "postcopy_preempt_new_channel"))
        urgent = len(trace_args(seen.src_log, "postcopy_preempt_send_host_page"))
        figures = {"preempt_channels": channels, "pages_on_preempt_channel": urgent}
        if seen.stats.mode != "postcopy" or not channels:
            return FeatureEvidence(feature=self.name, engaged=False, figures=figures, detail=(
                "the migration never switched to postcopy" if seen.stats.mode != "postcopy"
                else "the destination never accepted a preempt channel "
                     "(postcopy_preempt_new_channel)"))
        return FeatureEvidence(feature=self.name, engaged=True, figures=figures, detail=(
            f"the destination accepted {channels} preempt channel(s); {urgent} faulted "
            f"pages went over it ({seen.stats.postcopy_requests} postcopy requests)"))


class PostcopyPreemptOptions(FeatureOptions):
    """Postcopy with a preempt channel for faulted pages."""

    postcopy_preempt: bool = Field(False, description="With --postcopy: faulted pages on a "
                                   "channel of their own (postcopy-preempt)")

    order = 20
    matrix = {"postcopy-preempt": {"postcopy": True, "postcopy_preempt": True}}
    doc = DocRow("`--postcopy-preempt`", "`postcopy-preempt`",
                 "the destination accepted a preempt channel (`postcopy_preempt_new_channel`); "
                 "pages sent on it are counted")

    def problems(self, run: RunFacts) -> list[str]:
        return (["--postcopy-preempt needs --postcopy"]
                if self.postcopy_preempt and not run.postcopy else [])

    def build(self, run: RunFacts) -> Feature | None:
        return PostcopyPreempt() if self.postcopy_preempt else None
