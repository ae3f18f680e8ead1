"""`--zero-page-detection`: who finds zero pages, or nobody."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ..models import FeatureEvidence
from ..settings import MigrationSettings
from . import DocRow, Feature, FeatureOptions, Observed, RunFacts

ZeroPageDetection = Literal["none", "legacy", "multifd"]


@dataclass(frozen=True)
class ZeroPages:
    """`zero-page-detection`: who finds zero pages (the migration thread,
    the multifd senders) or nobody (every page is sent whole)."""

    mode: ZeroPageDetection
    name: str = "zero-page-detection"

    def settings(self) -> MigrationSettings:
        return MigrationSettings(parameters={"zero-page-detection": self.mode})

    def trace_events(self) -> tuple[str, ...]:
        return ()

    def evidence(self, seen: Observed) -> FeatureEvidence:
        zero, normal = seen.stats.zero_pages, seen.stats.normal_pages
        figures = {"zero_pages": zero, "normal_pages": normal}
        if self.mode == "none":
            return FeatureEvidence(
                feature=self.name, engaged=zero == 0, figures=figures,
                detail=f"{zero} pages sent as zero pages, {normal} sent whole"
                       + (" (none was asked for)" if zero else ""))
        return FeatureEvidence(
            feature=self.name, engaged=zero > 0, figures=figures,
            detail=f"{self.mode}: {zero} zero pages found, {normal} pages sent whole")


class ZeroPagesOptions(FeatureOptions):
    """zero-page-detection: none, legacy or multifd."""

    zero_page_detection: ZeroPageDetection | None = Field(
        None, description="none, legacy or multifd (QEMU 9.0+)")

    order = 70
    matrix = {"no-zero-page": {"zero_page_detection": "none"}}
    doc = DocRow("`--zero-page-detection none|legacy|multifd` (QEMU 9.0+)",
                 "`zero-page-detection`", "`ram.duplicate` > 0; for `none`, exactly 0")

    def problems(self, run: RunFacts) -> list[str]:
        if self.zero_page_detection == "multifd" and not run.given("multifd"):
            return ["--zero-page-detection multifd needs --multifd N"]
        return []

    def build(self, run: RunFacts) -> Feature | None:
        if self.zero_page_detection is None:
            return None
        return ZeroPages(self.zero_page_detection)
