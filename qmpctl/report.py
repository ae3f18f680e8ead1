"""The run report: typed models, its JSON schema (a published artifact,
docs/report.schema.json) and the human summary printed on the terminal.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1

Verdict = Literal[
    "verified", "mismatch", "migration-failed", "guest-failed", "environment-error",
    "usage-error", "interrupted",
]


class RunConfig(BaseModel):
    arch: str
    guest: str
    accel: str
    accel_reason: str = Field(description="Why this accelerator was chosen")
    dirty_ring_size: int = Field(description="KVM dirty ring entries per vCPU; 0 = dirty bitmap")
    dirty_tracking: Literal["kvm-dirty-ring", "kvm-dirty-bitmap", "tcg"]
    ram_mib: int
    smp: int
    transport: str
    qemu_src: str
    qemu_dst: str
    qemu_src_version: str
    qemu_dst_version: str
    workload: dict[str, int | str]
    min_passes: int
    throttle_bandwidth: int
    converge_downtime_ms: int
    forced: list[str] = Field(default_factory=list,
                              description="Safety checks the user overrode with --force")


class HostSummary(BaseModel):
    kvm_flavour: str
    kvm_accessible: bool
    kvm_caps: dict[str, int]
    dirty_ring_max_entries: int


class DirtyRateProbe(BaseModel):
    mode: str
    calc_time_s: float
    dirty_rate_mib_s: int | None
    vcpu_dirty_rates_mib_s: list[int] = Field(default_factory=list)


class DirtyRingEvidence(BaseModel):
    """From QEMU's trace events on the source: the ring really carried the pages."""

    reaps: int
    pages_reaped: int
    full_exits: int


class PassStat(BaseModel):
    pass_no: int
    elapsed_s: float
    status: str
    transferred: int
    remaining: int
    total: int
    dirty_pages_rate: int
    mbps: float
    dirty_sync_count: int
    pages_sent: int


class MigrationStats(BaseModel):
    status: str
    mode: Literal["precopy", "postcopy"] = "precopy"
    postcopy_at_pass: int | None = Field(None, description="pass at migrate-start-postcopy")
    postcopy_requests: int = 0
    passes: int = Field(description="dirty-bitmap syncs (ram.dirty-sync-count)")
    throttled_passes: int
    pages_resent: int = Field(description="pages sent beyond one copy of RAM")
    transferred_bytes: int
    total_time_ms: int | None
    downtime_ms: int | None
    setup_time_ms: int | None
    wall_s: float
    samples: list[PassStat]
    workload_progress_during: int | None = Field(
        None, description="what the source's workload did while migrating, in "
                          "workload_progress_unit")
    workload_progress_unit: str = "wave passes"
    error_desc: str | None = None
    workload_stalled: bool = Field(
        False, description="the workload rewrote no memory while convergence was held back: "
                           "dirty tracking was not exercised")


class Exclusion(BaseModel):
    start: int
    end: int
    reason: str


class PageMismatchInfo(BaseModel):
    page: int
    offset: int
    gpa: int
    region: str
    differing_bytes: int
    first_diff: int
    src_hex: str
    dst_hex: str


class MemoryVerdict(BaseModel):
    identical: bool
    bytes_compared: int
    pages_total: int
    pages_compared: int
    pages_excluded: int
    pages_differing: int
    exclusions: list[Exclusion]
    mismatches: list[PageMismatchInfo] = Field(description="the first differing pages")
    seconds: float
    gib_per_s: float


class ItsTableVerdict(BaseModel):
    """One ITS/LPI table the guest announced, compared source vs destination."""

    name: str
    base: int
    size: int
    pages: int
    pages_differing: int
    identical: bool


class ThroughputSample(BaseModel):
    side: Literal["src", "dst"]
    t_s: float = Field(description="host seconds since the migration started")
    written_mib: int = Field(description="guest's cumulative MiB written")


class GuestThroughput(BaseModel):
    """Linux guests: write throughput from guestload's progress records."""

    before_mib_s: float | None
    during_mib_s: float | None
    after_mib_s: float | None
    max_gap_during_ms: int | None = Field(
        description="longest silence between progress records while migrating")
    samples: list[ThroughputSample]


class GuestCheck(BaseModel):
    name: str
    stage: str
    ok: bool
    detail: str


class RunReport(BaseModel):
    schema_version: int = SCHEMA_VERSION
    qmpctl_version: str
    started_at: str
    verdict: Verdict
    exit_code: int
    error: str | None = None
    config: RunConfig | None = None
    host: HostSummary | None = None
    boot_s: float | None = Field(None, description="launch to workload running, source")
    dirty_rate: DirtyRateProbe | None = None
    dirty_ring: DirtyRingEvidence | None = None
    migration: MigrationStats | None = None
    memory: MemoryVerdict | None = None
    its_tables: list[ItsTableVerdict] = Field(
        default_factory=list, description="arm64 ITS guest: each table's pages, source vs "
                                          "destination, after the tables were saved at stop")
    guest_checks: list[GuestCheck] = Field(default_factory=list)
    guest_throughput: GuestThroughput | None = None
    source_state_after: str | None = Field(None, description="source run state at the end")
    timings_s: dict[str, float] = Field(default_factory=dict)


def report_schema() -> str:
    return json.dumps(RunReport.model_json_schema(), indent=2, sort_keys=True) + "\n"


def _bytes(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def summary_lines(report: RunReport) -> list[str]:
    """A compact human summary; the JSON report has everything."""
    out = [f"verdict: {report.verdict.upper()} (exit {report.exit_code})"]
    if report.error:
        out.append(f"error: {report.error}")
    if (c := report.config) is not None:
        out.append(f"guest: {c.guest} {c.arch}, {c.ram_mib} MiB, {c.smp} vCPU, "
                   f"accel {c.accel} ({c.accel_reason}), tracking {c.dirty_tracking}"
                   + (f" ring={c.dirty_ring_size}" if c.dirty_ring_size else ""))
        for f in c.forced:
            out.append(f"FORCED: {f}")
    if report.boot_s is not None:
        out.append(f"boot to workload running: {report.boot_s:.2f} s")
    if (d := report.dirty_rate) is not None:
        out.append(f"dirty rate ({d.mode}, {d.calc_time_s:g}s): {d.dirty_rate_mib_s} MiB/s"
                   + (f", per vCPU {d.vcpu_dirty_rates_mib_s}" if d.vcpu_dirty_rates_mib_s else ""))
    if (m := report.migration) is not None:
        mode = "" if m.mode == "precopy" else f" postcopy (from pass {m.postcopy_at_pass})"
        out.append(f"migration: {m.status}{mode}, {m.passes} passes "
                   f"({m.throttled_passes} throttled), "
                   f"{m.pages_resent} pages re-sent, {_bytes(m.transferred_bytes)} transferred, "
                   f"total {m.total_time_ms} ms, downtime {m.downtime_ms} ms, "
                   f"setup {m.setup_time_ms} ms; during migration the guest did "
                   f"{m.workload_progress_during} {m.workload_progress_unit}")
        if m.workload_stalled:
            out.append("WARNING: the workload made no progress during migration; "
                       "dirty tracking was not exercised")
        if m.error_desc:
            out.append(f"QEMU error: {m.error_desc}")
    if (v := report.memory) is not None:
        out.append(f"memory: {v.pages_compared}/{v.pages_total} pages compared, "
                   f"{v.pages_differing} differ, {v.pages_excluded} excluded, "
                   f"{v.gib_per_s:.2f} GiB/s")
        for e in v.exclusions:
            out.append(f"  EXCLUDED 0x{e.start:x}-0x{e.end:x}: {e.reason}")
        for mm in v.mismatches:
            out.append(f"  page {mm.page} gpa 0x{mm.gpa:x} ({mm.region}): {mm.differing_bytes} "
                       f"bytes differ from +0x{mm.first_diff:x}")
            out.append(f"    src {mm.src_hex}")
            out.append(f"    dst {mm.dst_hex}")
    for t in report.its_tables:
        out.append(f"ITS table {t.name} 0x{t.base:x}+0x{t.size:x}: "
                   f"{'identical' if t.identical else f'{t.pages_differing} pages DIFFER'} "
                   f"({t.pages} pages)")
    if (tp := report.guest_throughput) is not None:
        out.append(f"guest dirtying: {tp.before_mib_s} MiB/s before, {tp.during_mib_s} during, "
                   f"{tp.after_mib_s} after migration; longest stall {tp.max_gap_during_ms} ms")
    for g in report.guest_checks:
        out.append(f"check {g.name} [{g.stage}]: {'PASS' if g.ok else 'FAIL'} - {g.detail}")
    if report.source_state_after:
        out.append(f"source after run: {report.source_state_after}")
    return out
