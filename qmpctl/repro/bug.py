"""BUG.md: the bug report a kernel or QEMU maintainer reads first, written
from the run reports alone (pure): how to reproduce, versions, the loss rate
with its interval, the differing pages and their classes, the timeline and
the kernel's own evidence."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from ..core.model import Model
from ..host.kvm import cap_text, ring_size_text
from ..matrix.stats import LOSS_RATE_DEFINITION, cell_stats, rate_text
from ..report.models import RunReport
from ..report.text import summary_lines
from ..verify.kring import summary as kring_summary
from .plan import ReproPlan

FIRST_PAGES = 10  # differing pages listed in full
TIMELINE_EVENTS = 40  # timeline events listed


class GuestImage(Model):
    """The guest image copied into the reproducer."""

    path: str  # relative to the reproducer
    source: str  # where the run booted it from
    size: int
    sha256: str


def command_text(argv: Sequence[str]) -> str:
    """A command line as sh reads it, one option per line (pure)."""
    parts, line = [], [shlex.quote(argv[0])]
    for arg in argv[1:]:
        if arg.startswith("-") and line:
            parts.append(" ".join(line))
            line = []
        line.append(shlex.quote(arg))
    parts.append(" ".join(line))
    return " \\\n    ".join(parts)


def _title(r: RunReport) -> str:
    c, h = r.config, r.host_facts
    assert c is not None
    kernel = f"Linux {h.kernel_release}" if h is not None else "an unrecorded kernel"
    kvm = f" (KVM: {r.host.flavour})" if r.host is not None and c.accel == "kvm" else ""
    tracking = {"kvm-dirty-ring": f"the KVM dirty ring ({c.dirty_ring_size} entries)",
                "kvm-dirty-bitmap": "the KVM dirty bitmap",
                "tcg": "TCG's own dirty tracking"}[c.dirty_tracking]
    return (f"Live migration loses dirty pages: QEMU {c.qemu_src_version} -> "
            f"{c.qemu_dst_version}, {c.accel.upper()} on {kernel}{kvm}, {tracking}")


def _versions(r: RunReport) -> list[str]:
    c, h, k = r.config, r.host_facts, r.host
    assert c is not None
    out = ["## Versions", ""]
    if h is not None:
        out += [f"- host kernel: {h.kernel_release} ({h.machine}); `{h.kernel_version}`",
                f"- host CPU: {h.cpu_model or 'unknown model'}, {h.cpus} logical CPUs; "
                f"virtualisation flags: {', '.join(h.virt_flags) or 'none'}"
                + ("" if {"vmx", "svm"} & set(h.cpu_flags) else " (neither vmx nor svm)")]
    else:
        out.append("- host kernel and CPU: not recorded (a report from an older qmpctl)")
    if k is not None:
        caps = ", ".join(f"{n} = {cap_text(n, v)}" for n, v in k.caps.items()) or "none read"
        out.append(f"- KVM: {k.flavour} ({k.device}, API {k.api_version}); capabilities: {caps}")
    out += [f"- QEMU source: {c.qemu_src_version} (`{c.qemu_src}`)",
            f"- QEMU destination: {c.qemu_dst_version} (`{c.qemu_dst}`)",
            f"- machine type: {c.machine_type} ({c.machine_type_reason})",
            f"- accelerator: {c.accel} ({c.accel_reason}); dirty tracking {c.dirty_tracking}"
            + (f", {ring_size_text(c.dirty_ring_size)}" if c.dirty_ring_size else ""),
            f"- CPU model: `{_cpu(c.qemu_argv_src)}`",
            f"- recorded by qmpctl {r.qmpctl_version} at {r.started_at}"]
    if h is not None:
        out += ["", "<details><summary>all CPU flags</summary>", "",
                " ".join(h.cpu_flags) or "(none read)", "", "</details>"]
    return out


def _cpu(argv: Sequence[str]) -> str:
    return argv[argv.index("-cpu") + 1] if "-cpu" in argv else "QEMU's default"


def _guest(r: RunReport, image: GuestImage) -> list[str]:
    c = r.config
    assert c is not None
    params = ", ".join(f"{k}={hex(v) if isinstance(v, int) and v > 255 else v}"
                       for k, v in c.workload.items())
    return ["## Guest", "",
            f"- image: `{image.path}` ({image.size} bytes, sha256 `{image.sha256}`), copied "
            f"from `{image.source}`",
            f"- {c.ram_mib} MiB RAM (memory-backend-file, share=on), {c.smp} vCPU",
            f"- workload: {params} (parameters over fw_cfg `opt/qmpctl/params`, in the "
            "command lines below): the guest adds `delta` to one byte of every page of "
            "[start, end) per pass, and prints `B` after each pass"]


def _migration(r: RunReport, plan: ReproPlan) -> list[str]:
    m = r.migration
    assert m is not None
    caps = ", ".join(f"{k}={'on' if v else 'off'}" for k, v in plan.capabilities.items())
    params = ", ".join(f"{k}={v}" for k, v in plan.parameters.items())
    release = ", ".join(f"{k}={v}" for k, v in plan.release.items())
    out = ["## Migration", "",
           f"- capabilities (both sides): {caps or 'none'}",
           f"- parameters (both sides): {params or 'none'}",
           f"- hold-back: convergence held back (the parameters above) until more than "
           f"{plan.min_passes} dirty syncs and a wave pass since `migrate` (or "
           f"{plan.hold_timeout_s:g} s), then `migrate-set-parameters` {release}",
           f"- migration: {m.status}, {m.passes} dirty syncs, downtime {m.downtime_ms} ms, "
           f"total {m.total_time_ms} ms, {m.transferred_bytes} bytes; the guest made "
           f"{m.workload_progress_during} {m.workload_progress_unit} meanwhile",
           "", "qmpctl's decisions:", ""]
    out += [f"- pass {d.pass_no} (+{d.elapsed_s:.2f} s): {d.action}: {d.why}"
            for d in m.decisions] or ["- none"]
    return out


def _rate(reports: Sequence[RunReport], sources: Sequence[str]) -> list[str]:
    stats = cell_stats(r.verdict for r in reports)
    tally = ", ".join(f"{n} {v}" for v, n in sorted(stats.verdicts.items()))
    return ["## Loss rate", "",
            f"Over the {stats.runs} run(s) given to `qmpctl repro` ({tally}): loss rate "
            f"**{rate_text(stats)}**.", "", f"({LOSS_RATE_DEFINITION}.)", "",
            "Runs read: " + ", ".join(f"`{s}`" for s in sources)]


def _pages(r: RunReport) -> list[str]:
    v = r.memory
    assert v is not None
    out = ["## What differed", "",
           f"{v.pages_differing} of {v.pages_compared} pages differ between the source "
           f"(postmigrate) and the destination (paused, never resumed)."]
    if v.location is not None:
        out.append(f"- where: {', '.join(f'{n} pages in {g}' for g, n in _where(r))}")
    if v.classes is not None:
        out.append(f"- what: {v.classes.headline()} (by the {v.classes.classifier} "
                   "workload's encoding: stale = the destination holds an older pass's value)")
    if v.explanation:
        out.append(f"- when: {v.explanation}")
    out += ["", f"The first {min(FIRST_PAGES, len(v.mismatches))} pages:", "",
            "| page | gpa | region | bytes differing | src (16 bytes) | dst (16 bytes) |",
            "| --- | --- | --- | --- | --- | --- |"]
    out += [f"| {m.page} | 0x{m.gpa:x} | {m.region} | {m.differing_bytes} from +0x"
            f"{m.first_diff:x} | `{m.src_hex}` | `{m.dst_hex}` |"
            for m in v.mismatches[:FIRST_PAGES]]
    for f in r.faults:
        out += ["", f"**Injected on purpose** (qmpctl `--fault`): {f.fault} at +{f.at_s:.2f} s: "
                f"{f.detail}. The reproducer replays it."]
    return out


def _where(r: RunReport) -> list[tuple[str, int]]:
    v = r.memory
    assert v is not None and v.location is not None
    where = [(f"0x{g.start_gpa:x}-0x{g.end_gpa:x} ({g.region})", g.pages)
             for g in v.location.ranges[:FIRST_PAGES]]
    if (more := v.location.ranges_total - len(where)) > 0:
        where.append((f"{more} more ranges", v.location.pages - sum(n for _, n in where)))
    return where


def _timeline(r: RunReport) -> list[str]:
    t = r.dirty_timeline
    out = ["## Timeline (source QEMU's trace, seconds after `migrate`)", ""]
    if t is None:
        return [*out, "Not recorded."]
    s = t.summary
    facts = [f"{s.bitmap_syncs} bitmap syncs"]
    if s.reaps or s.ring_full_exits:
        facts += [f"{s.reaps} non-empty ring reaps ({s.pages_reaped} pages)"
                  + (f", the last at {s.last_reap_s:+.3f} s ({s.last_reap_pages} pages)"
                     if s.last_reap_s is not None else ""),
                  f"{s.ring_full_exits} ring-full exits ({s.ring_full_after_last_reap} after "
                  "the last reap)"]
    if s.final_flush_s is not None:
        facts.append(f"the final ring flush at {s.final_flush_s:+.3f} s "
                     f"({s.final_flush_pages} pages)")
    facts += [f"VM stopped at {s.vm_stop_s:+.3f} s" if s.vm_stop_s is not None
              else "no VM stop in the trace",
              f"completed at {s.completed_s:+.3f} s" if s.completed_s is not None
              else "no completion in the trace"]
    out.append("; ".join(facts) + ".")
    out += ["", "```"]
    for e in t.events[:TIMELINE_EVENTS]:
        what = " ".join(str(x) for x in (
            f"vcpu {e.vcpu}" if e.vcpu is not None else None,
            f"{e.pages} pages" if e.pages is not None else None,
            f"by {e.by}" if e.by is not None else None, e.detail) if x)
        out.append(f"{e.t_s:+9.3f} {e.kind} {what}".rstrip())
    if len(t.events) > TIMELINE_EVENTS:
        out.append(f"... {len(t.events) - TIMELINE_EVENTS} more events in the report")
    return [*out, "```"]


def _kernel(r: RunReport) -> list[str]:
    out = ["## Kernel evidence (KVM's dirty-ring tracepoints)", ""]
    if r.kernel_ring is None:
        return [*out, "Not recorded."]
    k = r.kernel_ring
    out.append(kring_summary(k))
    if k.vcpus:
        out += ["", "| vCPU | pushed | harvested | over-full pushes | most in use | "
                "overwritten | never harvested | resets (freed, empty) | ring-full exits |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        out += [f"| {v.vcpu} | {v.pushed} | {v.harvested} | {v.over_full_pushes} | "
                f"{v.most_in_use} | {v.overwritten} | {v.unharvested} | {v.resets} "
                f"({v.reset_freed}, {v.empty_resets}) | {v.full_exits} |" for v in k.vcpus]
    return out


def _ram_dir(r: RunReport) -> list[str]:
    """A run whose RAM was on a --ram-dir: the reproducer puts it where --dir says."""
    c = r.config
    if c is None or c.run_ram_dir is None:
        return []
    return [f"qmpctl kept this run's guest RAM under `{c.ram_dir}` (`--ram-dir`); "
            f"`python3 repro.py --dir {c.ram_dir}` does the same (its default is /dev/shm).",
            ""]


def bug_report(chosen: RunReport, reports: Sequence[RunReport], sources: Sequence[str],
               plan: ReproPlan, image: GuestImage) -> str:
    """BUG.md for `chosen` (the run reproduced), with the rate over `reports` (pure)."""
    lines = [f"# {_title(chosen)}", "",
             "Written by `qmpctl repro` from a qmpctl run that found lost pages. Everything "
             "here reproduces without qmpctl: QEMU, Python 3 and `qemu.qmp` "
             "(`pip install qemu.qmp`).", "",
             "## Reproduce", "", "```sh",
             "python3 repro.py --runs 10     # exit 1: a run lost pages; 0: none did",
             "python3 compare.py SRC.ram DST.ram plan.json   # the comparison on its own",
             "```", "",
             "`repro.py` starts both QEMUs with the command lines below ({run}: a fresh "
             "directory on /dev/shm; {repro}: this directory), sets the same capabilities "
             "and parameters, migrates with the same hold-back, then compares both RAM "
             "files page by page. KVM runs need read-write /dev/kvm. `QEMU_SRC`/`QEMU_DST` "
             "run other binaries. qmpctl also traced the run (QEMU trace events in the "
             "command lines; the kernel's tracepoints when root): the reproducer keeps "
             "QEMU's but records no kernel trace.", "",
             *_ram_dir(chosen), *_versions(chosen), "", *_guest(chosen, image), "",
             *_migration(chosen, plan), "", *_rate(reports, sources), "",
             *_pages(chosen), "", *_timeline(chosen), "", *_kernel(chosen), "",
             "## QEMU command lines", "", "Source:", "", "```sh",
             command_text(plan.argv["src"]), "```", "", "Destination:", "", "```sh",
             command_text(plan.argv["dst"]), "```", "",
             f"Migration URI: `{plan.uri}`.", "",
             "## qmpctl's summary of the run", "", "```",
             *summary_lines(chosen), "```", ""]
    return "\n".join(lines)
