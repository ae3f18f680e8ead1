"""WHERE the differing pages are: tallied by region and merged into runs of
contiguous guest-physical pages.

Input is what `compare_images` found (page index = RAM file offset // 4096)
and the run's `RamLayout`, which maps each page to its guest-physical address
(x86 RAM above 3 GiB sits from 4 GiB). Everything is vectorised: the region
of every page comes from one mask per region (regions are few, pages may be
hundreds of thousands) and runs are split where the next page is not the
next guest-physical page or lies in another region, so no range straddles
two regions or a hole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from ..core.model import Model
from ..core.units import PAGE_SIZE
from .ramimage import RamLayout

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:
    from ..core.lazy import numpy as np

OTHER_RAM = "other RAM"  # RamLayout.region_of's name for a page in no region


class DiffRange(Model):
    """Contiguous differing pages of one region, guest-physical [start_gpa, end_gpa)."""

    start_gpa: int
    end_gpa: int = Field(description="exclusive")
    pages: int
    region: str


class DiffLocation(Model):
    """Every differing page, by region and as contiguous guest-physical ranges."""

    pages: int
    by_region: dict[str, int] = Field(description="region name -> differing pages")
    ranges_total: int
    ranges: list[DiffRange] = Field(
        description="in address order; the first max_ranges when the caller limited them")

    @property
    def truncated(self) -> bool:
        return len(self.ranges) < self.ranges_total


def region_index(gpas: npt.NDArray[np.int64], layout: RamLayout) -> npt.NDArray[np.intp]:
    """Index into layout.regions of each address's region, -1 for none.

    Same rule as `RamLayout.region_of`: the last listed region containing the
    address wins (regions are listed from general to specific).
    """
    idx = np.full(len(gpas), -1, dtype=np.intp)
    for i, region in enumerate(layout.regions):
        idx[(gpas >= region.start) & (gpas < region.end)] = i
    return idx


def locate_differences(pages: npt.ArrayLike, layout: RamLayout,
                       max_ranges: int | None = None) -> DiffLocation:
    """Tally differing pages by region and merge them into ranges (pure).

    `pages` are page indices into the RAM file, in any order, duplicates
    ignored. `max_ranges` bounds the list kept in the model (`ranges_total`
    always counts them all).
    """
    idx = np.unique(np.asarray(pages, dtype=np.int64))
    names = [r.name for r in layout.regions] + [OTHER_RAM]
    if idx.size == 0:
        return DiffLocation(pages=0, by_region={}, ranges_total=0, ranges=[])
    gpas = layout.gpas(idx * PAGE_SIZE)
    reg = region_index(gpas, layout)  # -1 selects names[-1], OTHER_RAM

    by_name: dict[str, int] = {}
    bins = np.bincount(reg + 1, minlength=len(names))  # bin 0: no region
    for name, n in zip([OTHER_RAM, *names[:-1]], bins.tolist(), strict=True):
        if n:
            by_name[name] = by_name.get(name, 0) + n
    by_region = dict(sorted(by_name.items(), key=lambda kv: (-kv[1], kv[0])))

    # A run ends where the next page is not the next guest-physical page (a
    # gap in the file, or a hole in guest-physical space) or another region's.
    breaks = np.flatnonzero((np.diff(gpas) != PAGE_SIZE) | (np.diff(reg) != 0)) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [idx.size]))  # exclusive, into idx
    total = len(starts)
    keep = total if max_ranges is None else max(0, min(total, max_ranges))
    start_gpa = gpas[starts[:keep]].tolist()
    lengths = (ends[:keep] - starts[:keep]).tolist()
    region_names = [names[r] for r in reg[starts[:keep]].tolist()]
    ranges = [DiffRange.model_construct(start_gpa=s, end_gpa=s + n * PAGE_SIZE, pages=n,
                                        region=name)
              for s, n, name in zip(start_gpa, lengths, region_names, strict=True)]
    return DiffLocation(pages=int(idx.size), by_region=by_region, ranges_total=total,
                        ranges=ranges)


def describe_ranges(location: DiffLocation, limit: int = 5) -> str:
    """One line for a report: where the differing pages are."""
    if not location.pages:
        return "no differing pages"
    regions = ", ".join(f"{name} {n}" for name, n in location.by_region.items())
    shown = "; ".join(f"0x{r.start_gpa:x}-0x{r.end_gpa:x} ({r.pages} pages, {r.region})"
                      for r in location.ranges[:limit])
    more = location.ranges_total - min(limit, len(location.ranges))
    tail = f"; {more} more" if more > 0 else ""
    total = location.ranges_total
    return (f"{location.pages} pages in {total} range{'s' if total != 1 else ''} ({regions}): "
            f"{shown}{tail}")
