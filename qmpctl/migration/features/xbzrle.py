"""`--xbzrle-cache`: pages re-sent as deltas against a cache of what was sent."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from ...core.units import MiB
from ..models import FeatureEvidence
from ..settings import MigrationSettings
from . import DocRow, Feature, FeatureOptions, Observed, RunFacts


@dataclass(frozen=True)
class Xbzrle:
    """`xbzrle`: pages re-sent as deltas against a cache of what was sent."""

    cache_mib: int
    name: str = "xbzrle"

    def settings(self) -> MigrationSettings:
        return MigrationSettings(capabilities={"xbzrle": True},
                                 parameters={"xbzrle-cache-size": self.cache_mib * MiB})

    def trace_events(self) -> tuple[str, ...]:
        return ()

    def evidence(self, seen: Observed) -> FeatureEvidence:
        x = seen.stats.xbzrle
        if x is None or not x.pages:
            return FeatureEvidence(feature=self.name, engaged=False, detail=(
                "no page was sent XBZRLE-encoded (xbzrle-cache.pages is "
                f"{'absent' if x is None else 0}"
                + (f"; {x.cache_miss} cache misses" if x is not None else "") + ")"))
        return FeatureEvidence(
            feature=self.name, engaged=True,
            detail=f"{x.pages} pages sent XBZRLE-encoded in {x.bytes} bytes; "
                   f"{x.cache_miss} cache misses, {x.overflow} overflows",
            figures={"pages": x.pages, "bytes": x.bytes, "cache_miss": x.cache_miss,
                     "overflow": x.overflow})


class XbzrleOptions(FeatureOptions):
    """xbzrle with a cache of its own size."""

    xbzrle_cache: int | None = Field(None, description="xbzrle with a cache of MiB; the "
                                     "report shows the pages it encoded")

    order = 50
    matrix = {"xbzrle": {"xbzrle_cache": 16}}
    doc = DocRow("`--xbzrle-cache MiB`", "`xbzrle`, `xbzrle-cache-size`",
                 "`xbzrle-cache.pages` > 0 (pages sent encoded)")

    def problems(self, run: RunFacts) -> list[str]:
        if self.xbzrle_cache is None:
            return []
        problems = []
        if self.xbzrle_cache < 1:
            problems.append(f"--xbzrle-cache {self.xbzrle_cache}: must be at least 1 MiB")
        if run.given("multifd"):
            problems.append("--xbzrle-cache with --multifd: QEMU does not combine xbzrle and "
                            "multifd")
        if run.transport == "file":
            problems.append("--transport file with --xbzrle-cache: QEMU does not combine "
                            "mapped-ram and xbzrle")
        return problems

    def build(self, run: RunFacts) -> Feature | None:
        return None if self.xbzrle_cache is None else Xbzrle(self.xbzrle_cache)
