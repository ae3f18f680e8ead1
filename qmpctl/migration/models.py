"""What a migration did, as measured on the source: one model per concept,
reused as is by the report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..core.model import Model
from ..core.units import PAGE_SIZE


class PassSample(Model):
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
    cpu_throttle_percentage: int | None = Field(None, description="auto-converge's throttle")
    dirty_limit_throttle_time_per_round: int | None = Field(None, description="us, dirty-limit")
    dirty_limit_ring_full_time: int | None = Field(None, description="us, dirty-limit")
    synced_s: float | None = Field(
        None, description="when QEMU synced for this pass (the MIGRATION_PASS event's own "
                          "timestamp), seconds after the migration started; elapsed_s is when "
                          "qmpctl got to it")

    @property
    def pages_resent(self) -> int:
        """Pages sent beyond one copy of RAM so far (4 KiB pages)."""
        return max(0, self.pages_sent - self.total // PAGE_SIZE)


class Decision(Model):
    """One action the migration policy took, and why."""

    pass_no: int
    elapsed_s: float
    action: str
    why: str


class FeatureEvidence(Model):
    """Whether a requested feature engaged, and the figure that says so."""

    feature: str
    engaged: bool
    detail: str = Field(description="the figure(s) QEMU reported, in words")
    figures: dict[str, int | float] = Field(default_factory=dict)


class XbzrleStats(Model):
    """`query-migrate`'s xbzrle-cache, at the end."""

    cache_size: int
    pages: int = Field(description="pages sent XBZRLE-encoded")
    bytes: int
    cache_miss: int
    overflow: int


class RecoveryAttempt(Model):
    """One `migrate resume=true` of the source."""

    attempt: int
    uri: str
    meant_to_fail: bool = Field(description="aimed at a listener that hangs up at once")
    elapsed_s: float = Field(description="seconds since the migration started")
    paused_destination: bool = Field(
        False, description="the destination had not noticed the break: qmpctl paused it")
    error: str | None = Field(None, description="QEMU refused the resume (e.g. no route)")


class MigrationStats(Model):
    status: str
    mode: Literal["precopy", "postcopy"] = Field(
        "precopy", description="postcopy only once the source reported postcopy-active: "
                               "migrate-start-postcopy alone may still end in precopy")
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
    normal_pages: int = 0
    zero_pages: int = Field(0, description="ram.duplicate: pages sent as zero pages")
    page_size: int = PAGE_SIZE
    multifd_bytes: int = 0
    xbzrle: XbzrleStats | None = None
    restore_s: float | None = Field(None, description="migration to a file: seconds the "
                                                       "destination took to load it")
    file_bytes: int | None = Field(None, description="migration to a file: its size")
    file_allocated_bytes: int | None = Field(None, description="... and the blocks it uses")
    statuses: list[str] = Field(default_factory=list,
                                description="the source's MIGRATION statuses, in order")
    recoveries: list[RecoveryAttempt] = Field(
        default_factory=list, description="postcopy recovery: each resume of the source")
    features: list[FeatureEvidence] = Field(
        default_factory=list, description="each requested feature: did it engage, and the "
                                          "figure that shows it")
    workload_stalled: bool = Field(
        False, description="the workload rewrote no memory while convergence was held back: "
                           "dirty tracking was not exercised")


def sample_from(info: dict[str, Any], pass_no: int, elapsed: float,
                synced: float | None = None) -> PassSample:
    ram = info.get("ram", {})
    return PassSample(
        pass_no=pass_no, elapsed_s=round(elapsed, 3), status=str(info.get("status", "?")),
        transferred=int(ram.get("transferred", 0)), remaining=int(ram.get("remaining", 0)),
        total=int(ram.get("total", 0)), dirty_pages_rate=int(ram.get("dirty-pages-rate", 0)),
        mbps=float(ram.get("mbps", 0.0)), dirty_sync_count=int(ram.get("dirty-sync-count", 0)),
        pages_sent=int(ram.get("normal", 0)) + int(ram.get("duplicate", 0)),
        cpu_throttle_percentage=info.get("cpu-throttle-percentage"),
        dirty_limit_throttle_time_per_round=info.get("dirty-limit-throttle-time-per-round"),
        dirty_limit_ring_full_time=info.get("dirty-limit-ring-full-time"),
        synced_s=None if synced is None else round(synced, 3),
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
        stats.normal_pages = int(ram.get("normal", 0))
        stats.zero_pages = int(ram.get("duplicate", 0))
        stats.page_size = int(ram.get("page-size", PAGE_SIZE)) or PAGE_SIZE
        stats.multifd_bytes = int(ram.get("multifd-bytes", 0))
    if (x := info.get("xbzrle-cache")) is not None:
        stats.xbzrle = XbzrleStats(
            cache_size=int(x.get("cache-size", 0)), pages=int(x.get("pages", 0)),
            bytes=int(x.get("bytes", 0)), cache_miss=int(x.get("cache-miss", 0)),
            overflow=int(x.get("overflow", 0)))
    stats.total_time_ms = info.get("total-time")
    stats.downtime_ms = info.get("downtime")
    stats.setup_time_ms = info.get("setup-time")


def absorb_samples(stats: MigrationStats) -> None:
    """A failed migration's totals from its last pass sample: QEMU's
    `query-migrate` drops `ram` once the migration failed, and a dead source
    answers nothing, so the totals would read 0 beside samples that say
    otherwise. The counters only grow: the larger figure is the true one."""
    if not stats.samples:
        return
    last = stats.samples[-1]
    stats.passes = max(stats.passes, last.dirty_sync_count)
    stats.transferred_bytes = max(stats.transferred_bytes, last.transferred)
    stats.pages_resent = max(stats.pages_resent, last.pages_resent)
