"""The human summary of a run report, printed on the terminal; the JSON report
has everything."""

from __future__ import annotations

from ..verify.compare import MemoryVerdict, MethodChoice
from ..verify.digest import DIGEST_ONLY
from ..verify.kring import summary as kring_summary
from ..verify.ranges import describe_ranges
from .models import Hop, RunConfig, RunReport


def _bytes(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _how(v: MemoryVerdict) -> str:
    """How the bytes were compared, and on what pages (" (map, RAM on 4 KiB pages)")."""
    page = f", RAM on {v.ram_page_kib} KiB pages" if v.ram_page_kib else ""
    return f" ({v.method}{page})" if v.method else ""


def choice_line(ch: MethodChoice) -> str:
    """The method, why and the probe's figures: "map, probed now (map 4.74, read 2.10,
    hash 1.66 GiB/s over 128 MiB of each image in 0.61 s): map was the fastest ..."."""
    figures = ", ".join(f"{m} {g:.2f}" for m, g in ch.figures.items())
    measured = (f"{figures} GiB/s over {ch.probe_mib} MiB of each image"
                + (f" in {ch.probe_s:.2f} s" if ch.probe_s else "")) if figures else ""
    why = {"probed": f"probed now ({measured})",
           "cached": f"cached probe from {ch.probed_at} ({measured})",
           "forced": "forced",
           "verify-hash": "implied"}[ch.why]
    return f"{ch.method}, {why}: {ch.detail}"


def summary_lines(report: RunReport) -> list[str]:
    """A compact human summary; the JSON report has everything."""
    out = [f"verdict: {report.verdict.upper()} (exit {report.exit_code}); "
           f"qmpctl {report.qmpctl_version}"]
    if report.error:
        out.append(f"error: {report.error}")
    if (c := report.config) is not None:
        out.append(f"guest: {c.guest} {c.arch}, {c.ram_mib} MiB, {c.smp} vCPU, "
                   f"accel {c.accel} ({c.accel_reason}), tracking {c.dirty_tracking}"
                   + (f" ring={c.dirty_ring_size}" if c.dirty_ring_size else ""))
        out.append(qemu_line(c))
        if c.netns is not None:
            n = c.netns
            out.append(f"topology: netns, source {n.src_namespace} {n.src_address}, "
                       f"destination {n.dst_namespace} {n.dst_address}; transport {c.transport}")
        if (h := c.destination_host) is not None and h.reached_by == "ssh":
            out.append(f"destination host: {h.host} through ssh (qmpctl {h.qmpctl_version} "
                       f"there), run directory {h.run_dir}, migration to {h.migration_address}")
        if c.verify != "bytes":
            out.append(f"verification: {c.verify} (xxh3-64 per page, digests compared)")
        settings = c.migration_settings
        if settings.capabilities or settings.parameters:
            out.append("migration settings: " + ", ".join(
                [f"{k}={'on' if v else 'off'}" for k, v in settings.capabilities.items()]
                + [f"{k}={v}" for k, v in settings.parameters.items()]))
        for f in c.forced:
            out.append(f"FORCED: {f}")
    if report.boot_s is not None:
        out.append(f"boot to workload running: {report.boot_s:.2f} s")
    if (d := report.dirty_rate) is not None:
        out.append(f"dirty rate ({d.mode}, {d.calc_time_s:g}s): {d.dirty_rate_mib_s} MiB/s"
                   + (f", per vCPU {d.vcpu_dirty_rates_mib_s}" if d.vcpu_dirty_rates_mib_s else ""))
    total = len(report.hops) + 1
    for hop in report.hops:
        out.append(f"migration {hop.number} of {total} ({hop.source} -> {hop.destination}): "
                   + hop_line(hop))
    if report.hops:
        out.append(f"migration {total} of {total} (the last; details below):")
    if (m := report.migration) is not None:
        mode = "" if m.mode == "precopy" else f" postcopy (from pass {m.postcopy_at_pass})"
        out.append(f"migration: {m.status}{mode}, {m.passes} passes "
                   f"({m.throttled_passes} throttled), "
                   f"{m.pages_resent} pages re-sent, {_bytes(m.transferred_bytes)} transferred, "
                   + (f"total {m.total_time_ms} ms, " if m.total_time_ms is not None
                      else f"{m.wall_s:.1f} s (QEMU gave no total), ")
                   + (f"downtime {m.downtime_ms} ms, " if m.downtime_ms is not None else "")
                   + (f"setup {m.setup_time_ms} ms, " if m.setup_time_ms is not None else "")
                   + "during migration the guest did "
                   + (f"{m.workload_progress_during} {m.workload_progress_unit}"
                      if m.workload_progress_during is not None
                      else "work qmpctl cannot see (a foreign guest); QEMU's re-sent "
                           "pages are the evidence"))
        for dec in m.decisions:
            out.append(f"  pass {dec.pass_no} (+{dec.elapsed_s:.2f} s): {dec.action}: "
                       f"{dec.why}")
        if m.workload_stalled:
            out.append("WARNING: the workload made no progress during migration; "
                       "dirty tracking was not exercised")
        if m.error_desc:
            out.append(f"QEMU error: {m.error_desc}")
    if report.kernel_ring is not None:
        out.append(kring_summary(report.kernel_ring))
    if (v := report.memory) is not None:
        out.append(f"memory: {v.pages_compared}/{v.pages_total} pages compared, "
                   f"{v.pages_differing} differ, {v.pages_excluded} excluded, "
                   + (f"{v.pages_explained} differ as the platform explains, "
                      if v.pages_explained else "")
                   + f"{v.gib_per_s:.2f} GiB/s{_how(v)}")
        if (ch := v.choice) is not None:
            out.append(f"  compare method: {choice_line(ch)}")
        if v.digest_proof:
            out.append(f"  digests: {v.digest_proof}")
        for ex in v.explained:
            out.append(f"  explained ({ex.cause}, not lost): {ex.why}")
            out.extend(f"    {d}" for d in ex.details)
            out.append(f"    proof: {ex.proof}")
        if v.location is not None:
            out.append(f"  where: {describe_ranges(v.location)}")
        if v.classes is not None:
            out.append(f"  what:  {v.classes.headline()} "
                       f"(by the {v.classes.classifier} workload's encoding)")
        if v.explanation:
            out.append(f"  when:  {v.explanation}")
        for e in v.exclusions:
            out.append(f"  EXCLUDED 0x{e.effective_start:x}-0x{e.effective_end:x} "
                       f"({e.pages} pages; asked 0x{e.start:x}-0x{e.end:x}): {e.reason}; "
                       f"it hid {e.pages_differing_hidden} differing pages")
        for mm in v.mismatches:
            how = ("differs (digests only)" if mm.src_hex.startswith(DIGEST_ONLY) else
                   f"{mm.differing_bytes} bytes differ from +0x{mm.first_diff:x}")
            out.append(f"  page {mm.page} gpa 0x{mm.gpa:x} ({mm.region}): {how}")
            out.append(f"    src {mm.src_hex}")
            out.append(f"    dst {mm.dst_hex}")
    for b in report.ramblocks:
        where = f" at gpa {', '.join(hex(g) for g in b.gpa)}" if b.gpa else ""
        if not b.compared:
            out.append(f"RAMBlock {b.name} ({b.size} bytes{where}): NOT COMPARED: {b.reason}")
        elif b.pages_differing:
            out.append(f"RAMBlock {b.name} ({b.size} bytes{where}): {b.pages_differing} pages "
                       f"DIFFER, first at offsets {[hex(o) for o in b.first_differing_offsets]}")
        else:
            out.append(f"RAMBlock {b.name} ({b.size} bytes{where}): identical ({b.reason})")
    if (ring := report.dirty_ring) is not None:
        out.append(f"dirty ring during the migration: {ring.pages_reaped} pages reaped in "
                   f"{ring.reaps} non-empty reaps, {ring.full_exits} ring-full exits; "
                   f"{ring.pages_resent} pages re-sent (QEMU trace)")
    if report.its_tables_source:
        out.append(f"ITS tables: {report.its_tables_source}")
    out.extend(f"ITS pending table NOT explained by the restore: {why}"
               for why in report.its_pending_unexplained)
    if report.its_save is not None:
        out.append(f"ITS save: {report.its_save.describe()}")
    elif report.sweep is not None and report.its_tables:
        out.append("ITS save: not shown: this guest's tables are located only once the source "
                   "is paused (its registers), after the save; the whole-RAM compare covers "
                   "their pages")
    if report.sweep is not None:
        out.append(f"final bitmap sweep: {report.sweep.describe()}")
    for t in report.its_tables:
        state = ("identical" if t.identical else
                 f"{t.pages_differing} pages DIFFER" if t.pages_differing else
                 f"{t.pages_explained} pages differ as explained above (not lost)"
                 if t.pages_explained else "not all compared")
        excluded = f", {t.pages_excluded} EXCLUDED" if t.pages_excluded else ""
        out.append(f"ITS table {t.name} 0x{t.base:x}+0x{t.size:x}: {state} "
                   f"({t.pages} pages{excluded}; {t.located_by})")
    if (tp := report.guest_throughput) is not None:
        out.append(f"guest dirtying: {tp.before_mib_s} MiB/s before, {tp.during_mib_s} during, "
                   f"{tp.after_mib_s} after migration; longest stall {tp.max_gap_during_ms} ms")
    for g in report.guest_checks:
        out.append(f"check {g.name} [{g.stage}]: {'PASS' if g.ok else 'FAIL'} - {g.detail}")
    if (res := report.guest_result) is not None:
        out.append(f"guest's own verdict: {res.status} ({res.detail}); {res.passed} passed, "
                   f"{res.failed} failed, {res.skipped} skipped; "
                   f"{res.migrations_requested} migration(s)"
                   + (f"; {res.summary}" if res.summary else "")
                   + (f"; exit status {res.exit_status}" if res.exit_status is not None
                      else ""))
        out += [f"  {line}" for line in res.failures]
    for fault in report.faults:
        out.append(f"FAULT {fault.fault} injected at +{fault.at_s:.2f} s (pass "
                   f"{fault.pass_no}, status {fault.status}): {fault.detail}")
    for why in report.evidence_missing:
        out.append(f"EVIDENCE MISSING: {why}")
    for why in report.inconclusive:
        out.append(f"INCONCLUSIVE: {why}")
    if report.source_state_after:
        out.append(f"source after run: {report.source_state_after}")
    if report.controller_peak_rss_mib is not None:
        out.append(f"qmpctl's own memory: peak {report.controller_peak_rss_mib:.0f} MiB "
                   f"anonymous (VmHWM {report.controller_peak_vmhwm_mib or 0:.0f} MiB, which "
                   "counts the mapped guest RAM files)")
    return out


def qemu_line(c: RunConfig) -> str:
    """Which QEMUs ran, and on which machine type."""
    if c.qemu_src == c.qemu_dst:
        who = f"qemu: {c.qemu_src_version} on both sides ({c.qemu_src})"
    else:
        who = (f"qemu: source {c.qemu_src_version} ({c.qemu_src}) -> destination "
               f"{c.qemu_dst_version} ({c.qemu_dst})")
    if c.machine_type is None:
        return who
    return (who + f"; machine {c.machine_type}"
            + (f" ({c.machine_type_reason})" if c.machine_type_reason else "")
            + (f"; cpu {c.cpu}" if c.cpu else ""))


def hop_line(hop: Hop) -> str:
    """One earlier migration of a multi-migration run, in a line."""
    parts = []
    if (m := hop.migration) is not None:
        parts.append(f"{m.status}, {m.passes} passes, {m.pages_resent} pages re-sent")
    if (v := hop.memory) is not None:
        parts.append(f"memory {v.pages_compared}/{v.pages_total} pages compared, "
                     f"{v.pages_differing} differ")
    if hop.its_tables:
        bad = [t.name for t in hop.its_tables if t.pages_differing or t.pages_excluded]
        explained = [t.name for t in hop.its_tables if t.pages_explained and t.name not in bad]
        parts.append(f"ITS tables: {len(hop.its_tables)} located, "
                     + (f"NOT IDENTICAL: {', '.join(bad)}" if bad else "none lost")
                     + (f" ({', '.join(explained)} differ as explained)" if explained else ""))
    if hop.its_save is not None:
        parts.append(f"ITS save: {hop.its_save.pages_changed} pages changed, "
                     f"{hop.its_save.pages_arrived} arrived")
    if (ring := hop.dirty_ring) is not None:
        parts.append(f"ring: {ring.pages_reaped} pages reaped")
    return "; ".join(parts) or "no evidence recorded"


def one_line(rep: RunReport) -> str:
    """The verdict and its key figures on one line (for --repeat and test output)."""
    m, v = rep.migration, rep.memory
    failed = [c.name for c in rep.failed_checks]
    return (f"{rep.verdict.upper()}"
            + (f", {m.passes} passes" if m else "")
            + (f", downtime {m.downtime_ms} ms" if m and m.downtime_ms is not None else "")
            + (f", {v.pages_differing} pages differ" if v else "")
            + (f", failed checks: {', '.join(failed)}" if failed else "")
            + (f" ({rep.error})" if rep.error else ""))
