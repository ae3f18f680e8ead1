"""The run report: composed from the models each layer computes, plus the
run's configuration. Its JSON schema is a published artifact
(docs/report.schema.json, `qmpctl schema`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..core.errors import Verdict
from ..core.model import Model
from ..faults.injector import FaultRecord
from ..guests.base import GuestCheck, GuestResult
from ..guests.its import ItsSaveEvidence, ItsTableVerdict
from ..guests.linux import GuestThroughput
from ..host.facts import HostFacts
from ..host.kvm import KvmInfo
from ..migration.dirtyrate import DirtyRateProbe
from ..migration.models import MigrationStats
from ..migration.settings import MigrationSettings
from ..verify.compare import MemoryVerdict
from ..verify.kring import KernelRing
from ..verify.ramblocks import RamBlockVerdict
from ..verify.ring import DirtyRingEvidence
from ..verify.sweep import SweepEvidence
from ..verify.timeline import DirtyTimeline

SCHEMA_VERSION = 3  # 3: verdict report-unwritten; memory.explained (platform-explained pages)
# 2: one model per concept (host = KvmInfo), verdicts inconclusive/error


class NetnsConfig(Model):
    """--topology netns: the two network namespaces the run made, and the veth's addresses."""

    src_namespace: str
    dst_namespace: str
    src_address: str
    dst_address: str
    prefix_len: int
    management_src_address: str | None = Field(
        None, description="the second veth (QMP, serial, qmpctl agent); faults spare it")
    management_dst_address: str | None = None


class DestinationHostConfig(Model):
    """Where the destination QEMU ran when it was another host, and how it was driven."""

    reached_by: Literal["ip netns exec", "ssh"]
    host: str = Field(description="ssh's [USER@]HOST, or the destination's namespace")
    run_dir: str = Field(description="the run's directory on that host (removed at the end)")
    migration_address: str = Field(description="the address the migration stream went to")
    qmpctl_version: str | None = Field(None, description="qmpctl on that host (ssh)")


class RunConfig(Model):
    arch: str
    guest: str
    accel: str
    accel_reason: str = Field(description="Why this accelerator was chosen")
    dirty_ring_size: int = Field(description="KVM dirty ring entries per vCPU; 0 = dirty bitmap")
    dirty_tracking: Literal["kvm-dirty-ring", "kvm-dirty-bitmap", "tcg"]
    ram_mib: int
    smp: int
    transport: str
    topology: Literal["local", "netns"] = Field(
        "local", description="local: both QEMUs in qmpctl's network namespace; netns: each in "
                             "its own, joined by a veth pair (see `netns`)")
    netns: NetnsConfig | None = None
    destination_host: DestinationHostConfig | None = Field(
        None, description="--topology netns or --dst-host: the destination as another host")
    qemu_src: str
    qemu_dst: str
    qemu_src_version: str
    qemu_dst_version: str
    machine_type: str | None = Field(
        None, description="the machine type both sides ran: the unversioned pc/virt when "
                          "both QEMUs are one release, else the older one's versioned type "
                          "(pc-i440fx-7.2, virt-7.2)")
    machine_type_reason: str | None = Field(None, description="why this machine type")
    cpu: str | None = Field(None, description="-cpu model qmpctl pinned for a cross-version "
                                              "run (arm64 TCG: max changes per release)")
    workload: dict[str, int | str]
    min_passes: int
    throttle_bandwidth: int
    converge_downtime_ms: int
    migration_settings: MigrationSettings = Field(
        default_factory=MigrationSettings,
        description="capabilities and parameters set on both sides before migrating")
    verify: Literal["bytes", "hash"] = Field(
        "bytes", description="how the RAM images were compared (hash: xxh3-64 per page)")
    forced: list[str] = Field(default_factory=list,
                              description="Safety checks the user overrode with --force")
    ram_dir: str | None = Field(None, description="the tmpfs directory under which this "
                                                  "host's guest RAM files lived (--ram-dir, "
                                                  "or /dev/shm)")
    hold_timeout_s: float | None = Field(
        None, description="--hold-timeout: how long convergence waited for the guest to "
                          "rewrite sent memory")
    run_dir: str | None = Field(None, description="the run's directory (removed at the end): "
                                                  "the sockets, logs and RAM files the "
                                                  "command lines name")
    run_ram_dir: str | None = Field(None, description="--ram-dir: the run's directory for "
                                                      "the RAM files, when not run_dir")
    migration_uri: str | None = Field(None, description="where the first migration went")
    qemu_argv_src: list[str] = Field(default_factory=list,
                                     description="the source QEMU's command line, as launched")
    qemu_argv_dst: list[str] = Field(
        default_factory=list, description="the first destination QEMU's command line, as "
                                          "launched (`qmpctl repro` makes both runnable)")


FIRST_SHOWN = 3  # differing pages named where a loss is summed up (one line, assert, matrix)


class Loss(Model):
    """One place where the destination differs from the source and the
    platform does not explain it: the one decision of "lost" that the
    verdict, `testing.assert_verified` and the matrix's summary all use."""

    where: str = Field(description="guest RAM, RAMBlock NAME or ITS table NAME at 0xADDR")
    migration: int | None = Field(None, description="which migration, when there were several")
    last: bool = Field(description="the last migration's: the report's top-level evidence")
    pages: int
    of: int | None = None
    first: list[str] = Field(default_factory=list, description="the first differing pages")

    @property
    def in_guest_ram(self) -> bool:
        return self.where == "guest RAM"

    def text(self) -> str:
        """One line: '3 of 16384 pages of guest RAM differ, first at ...'."""
        hop = f"migration {self.migration}: " if self.migration is not None else ""
        of = f" of {self.of}" if self.of is not None else ""
        first = f", first at {', '.join(self.first)}" if self.first else ""
        return f"{hop}{self.pages}{of} pages of {self.where} differ{first}"


def evidence_losses(memory: MemoryVerdict | None, ramblocks: list[RamBlockVerdict],
                    its_tables: list[ItsTableVerdict], migration: int | None = None,
                    last: bool = True) -> list[Loss]:
    """The losses one migration's compared evidence shows (pure)."""
    out = []
    if memory is not None and memory.pages_differing:
        out.append(Loss(where="guest RAM", pages=memory.pages_differing,
                        of=memory.pages_compared, migration=migration, last=last,
                        first=[f"gpa 0x{p.gpa:x} ({p.region})"
                               for p in memory.mismatches[:FIRST_SHOWN]]))
    out += [Loss(where=f"RAMBlock {b.name}", pages=b.pages_differing, migration=migration,
                 last=last,
                 first=[f"offset 0x{o:x}" for o in b.first_differing_offsets[:FIRST_SHOWN]])
            for b in ramblocks if b.pages_differing]
    out += [Loss(where=f"ITS table {t.name} at 0x{t.base:x}", pages=t.pages_differing,
                 of=t.pages, migration=migration, last=last)
            for t in its_tables if t.pages_differing]
    return out


class Hop(Model):
    """One migration of a guest that asked to be migrated more than once, with
    the same evidence the report's top level carries for the last one."""

    number: int = Field(description="1 for the first migration")
    source: str
    destination: str
    dirty_ring: DirtyRingEvidence | None = None
    dirty_timeline: DirtyTimeline | None = None
    migration: MigrationStats | None = None
    memory: MemoryVerdict | None = None
    ramblocks: list[RamBlockVerdict] = Field(default_factory=list)
    its_tables: list[ItsTableVerdict] = Field(default_factory=list)
    its_tables_source: str | None = None
    its_save: ItsSaveEvidence | None = None
    sweep: SweepEvidence | None = None
    its_pending_unexplained: list[str] = Field(default_factory=list)

    def losses(self) -> list[Loss]:
        return evidence_losses(self.memory, self.ramblocks, self.its_tables, self.number,
                               last=False)

    @property
    def found_difference(self) -> bool:
        return bool(self.losses())


class RunReport(Model):
    schema_version: int = SCHEMA_VERSION
    qmpctl_version: str
    started_at: str
    verdict: Verdict
    exit_code: int
    error: str | None = None
    config: RunConfig | None = None
    host: KvmInfo | None = None
    host_facts: HostFacts | None = Field(
        None, description="the host's kernel and CPU (model, flags), as a bug report needs")
    boot_s: float | None = Field(None, description="launch to workload running, source")
    dirty_rate: DirtyRateProbe | None = None
    dirty_ring: DirtyRingEvidence | None = None
    kernel_ring: KernelRing | None = Field(
        None, description="--trace-kernel: KVM's own ring tracepoints against QEMU's harvests, "
                          "per vCPU (the first migration's), or why they were not recorded")
    dirty_timeline: DirtyTimeline | None = Field(
        None, description="the source's dirty-tracking timeline from QEMU's trace events")
    cancelled_migration: MigrationStats | None = Field(
        None, description="--cancel-at: the first migration, cancelled on purpose")
    migration: MigrationStats | None = None
    memory: MemoryVerdict | None = None
    ramblocks: list[RamBlockVerdict] = Field(
        default_factory=list, description="every RAMBlock QEMU migrated: compared, or why not")
    its_tables: list[ItsTableVerdict] = Field(
        default_factory=list, description="arm64 ITS guest: each table's pages, source vs "
                                          "destination, after the tables were saved at stop")
    its_tables_source: str | None = Field(
        None, description="how the ITS tables were located, or why they were not")
    skipped_migration: str | None = Field(
        None, description="the guest asked for no migration (kvm-unit-tests' migrate_skip()): "
                          "none ran; guest_result is its own verdict")
    its_save: ItsSaveEvidence | None = Field(
        None, description="arm64 KVM: the pages the ITS save at the source's stop changed, "
                          "and how many arrived")
    sweep: SweepEvidence | None = Field(
        None, description="arm64 KVM: the saves and the backup bitmap's final sweep in the "
                          "source's trace")
    its_pending_unexplained: list[str] = Field(
        default_factory=list, description="KVM's in-kernel ITS: why a differing LPI pending "
                                          "table page is not the restore's consumption (lost)")
    hops: list[Hop] = Field(
        default_factory=list,
        description="every migration before the last, for a guest that asked to be migrated "
                    "more than once; the top-level migration, memory, ramblocks, its_tables "
                    "and dirty_ring are the last one's")
    guest_result: GuestResult | None = Field(
        None, description="a foreign guest's own verdict (--guest kernel)")
    guest_checks: list[GuestCheck] = Field(default_factory=list)
    guest_throughput: GuestThroughput | None = None
    faults: list[FaultRecord] = Field(
        default_factory=list, description="faults qmpctl injected (--fault), and when")
    evidence_missing: list[str] = Field(
        default_factory=list,
        description="evidence the run needed and did not get (verdict environment-error "
                    "unless something differs)")
    inconclusive: list[str] = Field(
        default_factory=list,
        description="why this run proved nothing about dirty tracking (verdict inconclusive)")
    source_state_after: str | None = Field(None, description="source run state at the end")
    timings_s: dict[str, float] = Field(default_factory=dict)
    controller_peak_rss_mib: float | None = Field(
        None, description="qmpctl's peak anonymous memory (RssAnon, sampled during the run): "
                          "what the controller itself holds; guest RAM is never copied")
    controller_peak_vmhwm_mib: float | None = Field(
        None, description="the process's peak RSS (VmHWM), which also counts the guest RAM "
                          "file pages the comparison maps (page cache, shared with QEMU); in "
                          "pytest, the test process's")

    @property
    def failed_checks(self) -> list[GuestCheck]:
        return [c for c in self.guest_checks if not c.ok]

    def losses(self) -> list[Loss]:
        """Every unexplained difference, of every migration (named by number
        when there were several)."""
        out = [loss for h in self.hops for loss in h.losses()]
        last = len(self.hops) + 1 if self.hops else None
        return out + evidence_losses(self.memory, self.ramblocks, self.its_tables, last)

    @property
    def found_difference(self) -> bool:
        """Memory, an ITS table or a guest check says something was lost."""
        return bool(self.losses()) or bool(self.failed_checks)
