"""What a migration did, as measured on the source: one model per concept,
reused as is by the report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ..core.units import PAGE_SIZE


class PassSample(BaseModel):
    """`query-migrate` as seen when a MIGRATION_PASS event arrives."""

    pass_no: int
    elapsed_s: float
    status: str
    transferred: int
    remaining: int
    total: int
    dirty_pages_rate: int
    mbps: float
    dirty_sync_count: int
    pages_sent: int = Field(description="normal + zero pages sent so far")

    @property
    def pages_resent(self) -> int:
        """Pages sent beyond one copy of RAM so far (4 KiB pages)."""
        return max(0, self.pages_sent - self.total // PAGE_SIZE)


class Decision(BaseModel):
    """One action the migration policy took, and why."""

    pass_no: int
    elapsed_s: float
    action: str
    why: str


class MigrationStats(BaseModel):
    status: str
    mode: Literal["precopy", "postcopy"] = "precopy"
    postcopy_at_pass: int | None = Field(None, description="pass at migrate-start-postcopy")
    postcopy_requests: int = 0
    passes: int = Field(0, description="dirty-bitmap syncs (ram.dirty-sync-count)")
    throttled_passes: int = 0
    pages_resent: int = Field(0, description="pages sent beyond one copy of RAM")
    transferred_bytes: int = 0
    total_time_ms: int | None = None
    downtime_ms: int | None = None
    setup_time_ms: int | None = None
    wall_s: float = 0.0
    samples: list[PassSample] = Field(default_factory=list)
    decisions: list[Decision] = Field(
        default_factory=list, description="what the migration policy did, pass by pass")
    workload_progress_during: int | None = Field(
        None, description="what the source's workload did while migrating, in "
                          "workload_progress_unit")
    workload_progress_unit: str = "wave passes"
    error_desc: str | None = None
    workload_stalled: bool = Field(
        False, description="the workload rewrote no memory while convergence was held back: "
                           "dirty tracking was not exercised")


def sample_from(info: dict[str, Any], pass_no: int, elapsed: float) -> PassSample:
    ram = info.get("ram", {})
    return PassSample(
        pass_no=pass_no, elapsed_s=round(elapsed, 3), status=str(info.get("status", "?")),
        transferred=int(ram.get("transferred", 0)), remaining=int(ram.get("remaining", 0)),
        total=int(ram.get("total", 0)), dirty_pages_rate=int(ram.get("dirty-pages-rate", 0)),
        mbps=float(ram.get("mbps", 0.0)), dirty_sync_count=int(ram.get("dirty-sync-count", 0)),
        pages_sent=int(ram.get("normal", 0)) + int(ram.get("duplicate", 0)),
    )


def pages_resent(info: dict[str, Any]) -> int:
    """Pages sent beyond one copy of RAM: what the dirty tracking made us resend."""
    ram = info.get("ram", {})
    page_size = int(ram.get("page-size", 4096)) or 4096
    sent = int(ram.get("normal", 0)) + int(ram.get("duplicate", 0))
    return max(0, sent - int(ram.get("total", 0)) // page_size)


def absorb_final(stats: MigrationStats, info: dict[str, Any]) -> None:
    """Fill the totals from the source's last `query-migrate` (any final status)."""
    ram = info.get("ram", {})
    if ram:
        stats.passes = int(ram.get("dirty-sync-count", stats.passes))
        stats.pages_resent = pages_resent(info)
        stats.transferred_bytes = int(ram.get("transferred", 0))
        stats.postcopy_requests = int(ram.get("postcopy-requests", 0))
    stats.total_time_ms = info.get("total-time")
    stats.downtime_ms = info.get("downtime")
    stats.setup_time_ms = info.get("setup-time")
