"""Migration features a run can ask for, one object each: the settings it
needs on both sides, the QEMU trace events that show it at work, and the
evidence that it really engaged, read from what the run observed.

A QEMU accepts a capability it then never uses (xbzrle with a cache too small
to hit, auto-converge on a migration that converges by itself, a compression
that sees incompressible pages): "the capability was set" proves nothing.
Each feature therefore names the figure QEMU itself reports when the feature
acts, and a feature without that figure makes the run inconclusive (the
report verdict), never verified.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from ..core.units import MiB
from .models import FeatureEvidence, MigrationStats
from .settings import MigrationSettings

Compression = Literal["none", "zlib", "zstd"]
ZeroPageDetection = Literal["none", "legacy", "multifd"]


@dataclass(frozen=True)
class Observed:
    """What evidence is read from: the source's migration statistics and both
    QEMUs' logs (trace events, one per line)."""

    stats: MigrationStats
    src_log: str = ""
    dst_log: str = ""


def trace_args(log: str, event: str) -> list[str]:
    """The argument text of every `event` line in a QEMU log (pure).

    Both timestamp forms of the log trace backend (`pid@sec.usec:event args`
    and `ISO-time event args`) are read, as in `verify.timeline`."""
    pattern = re.compile(rf"(?:^|[:\s]){re.escape(event)}(?: (.*))?$")
    return [m.group(1) or "" for line in log.splitlines()
            if event in line and (m := pattern.search(line)) is not None]


class Feature(Protocol):
    @property
    def name(self) -> str: ...

    def settings(self) -> MigrationSettings: ...
    def trace_events(self) -> tuple[str, ...]: ...
    def evidence(self, seen: Observed) -> FeatureEvidence: ...


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


def _channels(log: str, event: str) -> dict[int, int]:
    """`multifd_*_thread_end channel N packets M` lines: packets per channel."""
    out = {}
    for args in trace_args(log, event):
        if m := re.match(r"channel (\d+) packets (\d+)", args):
            out[int(m.group(1))] = int(m.group(2))
    return out


# Below this ratio of multifd bytes to the page bytes they carried, the pages
# were compressed. The wave's pages (one changed byte) compress a hundredfold.
COMPRESSED_RATIO = 0.9


@dataclass(frozen=True)
class Multifd:
    """`multifd`: pages sent by N threads over N channels, optionally compressed."""

    channels: int
    compression: Compression | None = None
    # mapped-ram: the senders write pages straight into the file, no packets
    to_file: bool = False
    name: str = "multifd"

    def settings(self) -> MigrationSettings:
        params: dict[str, int | str] = {"multifd-channels": self.channels}
        if self.compression is not None:
            params["multifd-compression"] = self.compression
        return MigrationSettings(capabilities={"multifd": True}, parameters=params)

    def trace_events(self) -> tuple[str, ...]:
        return ("multifd_send_thread_end", "multifd_recv_thread_end")

    def evidence(self, seen: Observed) -> FeatureEvidence:
        s = seen.stats
        sent = _channels(seen.src_log, "multifd_send_thread_end")
        received = _channels(seen.dst_log, "multifd_recv_thread_end")
        busy = sorted(c for c, packets in sent.items() if packets or self.to_file)
        figures: dict[str, int | float] = {
            "multifd_bytes": s.multifd_bytes, "channels_used": len(busy),
            "packets_sent": sum(sent.values()), "packets_received": sum(received.values())}
        problems = []
        if not s.multifd_bytes:
            problems.append("ram.multifd-bytes is 0")
        if len(busy) != self.channels:
            problems.append(f"{len(busy)} of {self.channels} channels "
                            + ("ran" if self.to_file else "sent packets")
                            + " (multifd_send_thread_end)")
        words = [f"{s.multifd_bytes} bytes over {len(busy)} channels "
                 f"({figures['packets_sent']} packets sent, "
                 f"{figures['packets_received']} received)"]
        page_bytes = s.normal_pages * s.page_size
        if self.compression not in (None, "none"):
            ratio = s.multifd_bytes / page_bytes if page_bytes else 1.0
            figures["compression_ratio"] = round(ratio, 4)
            words.append(f"{self.compression}: {ratio:.3f} bytes sent per page byte")
            if ratio >= COMPRESSED_RATIO:
                problems.append(f"{self.compression} did not shrink the pages (ratio "
                                f"{ratio:.3f} of multifd bytes to page bytes)")
        detail = "; ".join(words)
        return FeatureEvidence(feature=self.name, engaged=not problems,
                               detail="; ".join(problems) + f" ({detail})" if problems
                               else detail, figures=figures)


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


@dataclass(frozen=True)
class PostcopySwitch:
    """`--postcopy`: the migration must really run in postcopy. QEMU takes
    migrate-start-postcopy and may still complete in precopy when little is
    left to send; then nothing about postcopy was exercised."""

    name: str = "postcopy"

    def settings(self) -> MigrationSettings:
        return MigrationSettings()  # the policy's ending sets postcopy-ram

    def trace_events(self) -> tuple[str, ...]:
        return ()

    def evidence(self, seen: Observed) -> FeatureEvidence:
        s = seen.stats
        figures = {"postcopy_requests": s.postcopy_requests}
        if s.mode != "postcopy":
            return FeatureEvidence(feature=self.name, engaged=False, figures=figures, detail=(
                "the migration completed in precopy: "
                + ("migrate-start-postcopy was issued, but the source never reported "
                   "postcopy-active" if s.postcopy_at_pass is not None else
                   "it converged before the policy issued migrate-start-postcopy")
                + f" ({' -> '.join(s.statuses)})"))
        return FeatureEvidence(feature=self.name, engaged=True, figures=figures, detail=(
            f"postcopy-active from pass {s.postcopy_at_pass}; {s.postcopy_requests} pages "
            "requested by the destination"))


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


@dataclass(frozen=True)
class MappedRam:
    """Migration to a file with `mapped-ram`: each page at its own offset,
    rewritten in place when dirtied again; the destination loads the file."""

    ram_bytes: int
    name: str = "mapped-ram"

    def settings(self) -> MigrationSettings:
        return MigrationSettings(capabilities={"mapped-ram": True})

    def trace_events(self) -> tuple[str, ...]:
        return ()

    def evidence(self, seen: Observed) -> FeatureEvidence:
        s = seen.stats
        size, used = s.file_bytes or 0, s.file_allocated_bytes or 0
        figures = {"file_bytes": size, "file_allocated_bytes": used,
                   "restore_s": s.restore_s or 0.0}
        detail = (f"file of {size} bytes ({used} allocated) for {self.ram_bytes} bytes of "
                  f"guest RAM; the destination loaded it in {s.restore_s} s")
        problems = []
        if size < self.ram_bytes:
            problems.append("the file is smaller than guest RAM: pages are not at fixed offsets")
        if s.restore_s is None:
            problems.append("the destination did not load the file")
        return FeatureEvidence(feature=self.name, engaged=not problems, figures=figures,
                               detail="; ".join(problems) + f" ({detail})" if problems
                               else detail)


@dataclass(frozen=True)
class PostcopyRecover:
    """Recovery of a postcopy migration whose channel broke (see `recovery`)."""

    fail_first: bool = False
    name: str = "postcopy-recover"

    def settings(self) -> MigrationSettings:
        return MigrationSettings()

    def trace_events(self) -> tuple[str, ...]:
        return ("postcopy_pause_incoming", "postcopy_pause_incoming_continued")

    def evidence(self, seen: Observed) -> FeatureEvidence:
        s = seen.stats
        pauses = s.statuses.count("postcopy-paused")
        failed = sum(a.meant_to_fail for a in s.recoveries)
        good = len(s.recoveries) - failed
        dst_pauses = len(trace_args(seen.dst_log, "postcopy_pause_incoming"))
        figures = {"source_pauses": pauses, "destination_pauses": dst_pauses,
                   "attempts": len(s.recoveries), "failed_attempts": failed}
        detail = (f"source paused {pauses} time(s), destination {dst_pauses}; "
                  f"{len(s.recoveries)} resume attempt(s), {failed} aimed to fail")
        problems = []
        if not pauses or not dst_pauses:
            problems.append("the channel never broke on both sides")
        if not good or s.status != "completed":
            problems.append("no recovery completed the migration")
        if self.fail_first and (not failed or pauses < 2):
            problems.append("the failed first recovery did not pause the source again")
        return FeatureEvidence(feature=self.name, engaged=not problems, figures=figures,
                               detail="; ".join(problems) + f" ({detail})" if problems
                               else detail)


def cancel_evidence(requested: str, statuses: list[str], source_after: str,
                    checks_ok: bool, check_detail: str) -> FeatureEvidence:
    """--cancel-at: was the migration cancelled in the status asked for, and
    did the source run on, sound, afterwards (pure)."""
    reached = statuses[statuses.index("cancelling") - 1] if "cancelling" in statuses[1:] \
        else None
    figures = {"cancelled": int(statuses[-1:] == ["cancelled"])}
    problems = []
    if statuses[-1:] != ["cancelled"]:
        problems.append(f"the migration ended {statuses[-1] if statuses else 'nowhere'}, "
                        "not cancelled")
    elif reached != requested:
        problems.append(f"cancelled in {reached}, not in {requested}")
    if source_after != "running":
        problems.append(f"the source is {source_after} after the cancel, not running")
    if not checks_ok:
        problems.append(f"the source's workload check failed after the cancel: {check_detail}")
    detail = (f"statuses {' -> '.join(statuses)}; source {source_after} afterwards; "
              f"{check_detail}")
    return FeatureEvidence(feature=f"cancel-at-{requested}", engaged=not problems,
                           figures=figures,
                           detail="; ".join(problems) + f" ({detail})" if problems else detail)


def vcpu_dirty_limit_evidence(mbps: int, limits: list[dict[str, int]], before: float,
                              limited: float, after: float, unit: str) -> FeatureEvidence:
    """`set-vcpu-dirty-limit` on a running guest (QEMU's vcpu_dirty_limit
    case): QEMU must list the limit on every vCPU, and the guest's own write
    rate must fall under it and rise again once it is cancelled (pure)."""
    figures = {"rate_before": round(before, 2), "rate_limited": round(limited, 2),
               "rate_after_cancel": round(after, 2), "vcpus_limited": len(limits)}
    detail = (f"{unit} per second: {before:.2f} before, {limited:.2f} under {mbps} MB/s, "
              f"{after:.2f} after cancel-vcpu-dirty-limit; query-vcpu-dirty-limit listed "
              f"{len(limits)} vCPU(s)")
    problems = []
    if not limits or any(v.get("limit-rate") != mbps for v in limits):
        problems.append(f"query-vcpu-dirty-limit does not show {mbps} MB/s on every vCPU")
    if not limited < 0.5 * before:
        problems.append("the guest's write rate did not fall under the limit")
    if not after > limited:
        problems.append("the guest's write rate did not recover after the cancel")
    return FeatureEvidence(feature="vcpu-dirty-limit", engaged=not problems, figures=figures,
                           detail="; ".join(problems) + f" ({detail})" if problems else detail)


def evidence(features: Iterable[Feature], seen: Observed) -> list[FeatureEvidence]:
    return [f.evidence(seen) for f in features]


def feature_settings(features: Iterable[Feature]) -> MigrationSettings:
    out = MigrationSettings()
    for f in features:
        out = out.merged(f.settings())
    return out


def feature_trace_events(features: Iterable[Feature]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(e for f in features for e in f.trace_events()))
