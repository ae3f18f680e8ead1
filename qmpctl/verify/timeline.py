"""WHEN: the source's dirty-tracking timeline around a migration, from QEMU's
trace events, so lost pages can be set against the last ring harvest.

QEMU's "log" trace backend writes one line per event to stderr. With
`-msg timestamp=on`, QEMU 10.0 (scripts/tracetool/backend/log.py) prefixes
each line with the thread id and gettimeofday() wall time::

    12436@1795460965.727101:migration_bitmap_sync_start
    12431@1795460964.439760:kvm_dirty_ring_reap reaped 4096 pages (took 300 us)

Newer QEMUs moved the timestamp into qemu_log() itself, as glib's ISO 8601
UTC time and no thread id (`2026-11-23T19:09:20.319993Z kvm_dirty_ring_full
vcpu 0`); both forms are read. Without `-msg timestamp=on` the lines carry no
time at all; they are only counted (`untimed_lines`).

The events (`TIMELINE_TRACE_EVENTS`; accel/kvm/trace-events, migration/
trace-events, system/trace-events):

* `kvm_dirty_ring_reap` "reaped N pages (took T us)", only when N > 0;
* `kvm_dirty_ring_full` "vcpu N": a vCPU exited because its ring was full.
  It can fire hundreds of thousands of times a second on kvm_pvm, so it is
  aggregated per vCPU and per pass window, never stored one by one;
* `kvm_dirty_ring_reaper` "init|wait|wakeup", `kvm_dirty_ring_reaper_kick`;
* `kvm_dirty_ring_flush` 0 (start) / 1 (done): every migration bitmap sync
  flushes the rings (kvm_log_sync_global); the last one in the migration is
  "the final flush", after the VM stopped;
* `migration_bitmap_sync_start` / `migration_bitmap_sync_end` "dirty_pages N";
* `migrate_set_state` "new state S" (setup, active, device, completed...);
* `runstate_set` "... new_state N (S)": running -> finish-migrate is the stop.

`kvm_dirty_ring_page` (one line per page) and `kvm_dirty_ring_reap_vcpu` (one
per vCPU per reap attempt, as often as ring-full exits) are deliberately not
enabled.

Times are seconds relative to the migration start, a wall-clock time
(`time.time()`, the same clock as the trace) the caller recorded just before
issuing `migrate`; without one, the trace's own `migrate_set_state setup`
is used. The end is the caller's wall time of completion, else the trace's
`completed`/`failed`/`cancelled` state.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..core.model import Model
from .classify import MismatchClasses, MismatchKind, plural, steps_phrase

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:
    from ..core.lazy import numpy as np

TIMELINE_TRACE_EVENTS: tuple[str, ...] = (
    "kvm_dirty_ring_reap",
    "kvm_dirty_ring_full",
    "kvm_dirty_ring_reaper",
    "kvm_dirty_ring_reaper_kick",
    "kvm_dirty_ring_flush",
    "migration_bitmap_sync_start",
    "migration_bitmap_sync_end",
    "migrate_set_state",
    "runstate_set",
)


def timeline_qemu_args() -> list[str]:
    """Source QEMU arguments that produce a parseable timeline on stderr."""
    args = ["-msg", "timestamp=on"]
    for event in TIMELINE_TRACE_EVENTS:
        args += ["-trace", event]
    return args


EventKind = Literal["reap", "reaper", "reaper_kick", "flush_begin", "flush_end",
                    "sync_start", "sync_end", "migration_state", "runstate"]
ReapBy = Literal["vcpu", "reaper", "flush", "other"]


class TimelineEvent(Model):
    """One trace event, `t_s` seconds after the migration started."""

    kind: EventKind
    t_s: float
    vcpu: int | None = None
    pages: int | None = Field(default=None,
                              description="reap: pages reaped; sync_end: dirty pages found")
    took_us: int | None = None
    by: ReapBy | None = Field(default=None, description="reap: which thread reaped")
    detail: str | None = Field(default=None,
                               description="reaper step, migration state, new run state")


class PassWindow(Model):
    """Ring activity between two migration bitmap syncs (or before / after)."""

    label: str = Field(description="'before migration', 'pass N' (N syncs done), "
                                   "'after migration'")
    start_s: float | None
    end_s: float | None
    ring_full_exits: dict[int, int] = Field(description="vCPU index -> ring-full exits")
    reaps: int
    pages_reaped: int
    closing_sync_dirty_pages: int | None = Field(
        description="dirty pages reported by the bitmap sync that ended the window")


class TimelineSummary(Model):
    """The figures that place lost pages in time (inside the migration unless named)."""

    reaps: int = Field(description="non-empty ring reaps during the migration")
    pages_reaped: int
    reaps_before: int = Field(description="non-empty reaps before the migration (boot)")
    pages_reaped_before: int
    last_reap_s: float | None = Field(description="last non-empty reap during the migration")
    last_reap_pages: int | None
    ring_full_exits: int
    ring_full_by_vcpu: dict[int, int]
    ring_full_after_last_reap: int = Field(
        description="ring-full exits after the last non-empty reap, up to the VM stop")
    bitmap_syncs: int
    final_flush_s: float | None = Field(description="start of the last ring flush")
    final_flush_pages: int | None = Field(description="pages reaped by the final flush")
    pages_reaped_after_final_flush: int
    vm_stop_s: float | None
    completed_s: float | None
    final_state: str | None = Field(description="last migration state in the trace")


class DirtyTimeline(Model):
    """The source's dirty-ring and migration events around one migration."""

    start_wall: float = Field(description="migration start, Unix time (s)")
    end_wall: float | None
    start_from: Literal["caller", "trace"]
    events: list[TimelineEvent] = Field(description="in time order; ring-full exits and the "
                                                    "reaper's 'wait' steps are not listed")
    events_outside: int = Field(description="events left out of the list: more than lead_s "
                                            "before the start or tail_s after the end")
    windows: list[PassWindow]
    summary: TimelineSummary
    untimed_lines: int = Field(description="trace lines without a timestamp (QEMU run "
                                           "without -msg timestamp=on)")


# ---- parsing ----------------------------------------------------------------

_EPOCH = r"(?P<tid>\d+)@(?P<epoch>\d+\.\d+):"
_ISO = r"(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) "
_NAMES = (r"kvm_dirty_ring_reaper_kick|kvm_dirty_ring_reaper|kvm_dirty_ring_reap"
          r"|kvm_dirty_ring_flush|migration_bitmap_sync_start|migration_bitmap_sync_end"
          r"|migrate_set_state|runstate_set")
_EVENT_RE = re.compile(
    rf"^(?:{_EPOCH}|{_ISO})(?P<event>{_NAMES})(?:[ \t](?P<args>[^\n]*))?$", re.M)
_FULL_EPOCH_RE = re.compile(r"^(\d+)@(\d+\.\d+):kvm_dirty_ring_full vcpu (-?\d+)", re.M)
_FULL_ISO_RE = re.compile(rf"^{_ISO.replace('?P<iso>', '')}kvm_dirty_ring_full vcpu (-?\d+)",
                          re.M)
_UNTIMED_RE = re.compile(rf"^(?:{_NAMES}|kvm_dirty_ring_full)\b", re.M)
_REAP_RE = re.compile(r"reaped (\d+) pages \(took (-?\d+) us\)")
_DIRTY_RE = re.compile(r"dirty_pages (\d+)")
_RUNSTATE_RE = re.compile(r"new_state -?\d+ \(([^)]*)\)")
_STATE_RE = re.compile(r"new state (\S+)")
_END_STATES = ("completed", "failed", "cancelled")


def _iso_wall(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class _Raw:
    wall: float
    tid: int | None
    event: str
    args: str


@dataclass
class _Full:
    wall: npt.NDArray[np.float64]
    vcpu: npt.NDArray[np.int64]
    tid_vcpu: dict[int, int]


def _parse_full(log: str) -> _Full:
    epoch = _FULL_EPOCH_RE.findall(log)
    iso = _FULL_ISO_RE.findall(log) if not epoch else []
    if epoch:
        wall = np.array([t for _, t, _ in epoch], dtype=np.float64)
        vcpu = np.array([v for _, _, v in epoch], dtype=np.int64)
        tid_vcpu = {int(tid): int(v) for tid, _, v in epoch}  # a vCPU thread keeps its vCPU
    else:
        wall = np.array([_iso_wall(t) for t, _ in iso], dtype=np.float64)
        vcpu = np.array([v for _, v in iso], dtype=np.int64)
        tid_vcpu = {}
    order = np.argsort(wall, kind="stable")
    return _Full(wall[order], vcpu[order], tid_vcpu)


def trace_lines(log: str, names: tuple[str, ...]) -> list[tuple[float, str, str]]:
    """(Unix time, event, arguments) of each timestamped trace line of the
    events `names` in a QEMU log, in log order (pure): for other readers of
    the same log (the ITS save and the final sweep, verify.sweep)."""
    line = re.compile(rf"^(?:{_EPOCH}|{_ISO})(?P<event>{'|'.join(map(re.escape, names))})"
                      r"(?:[ \t](?P<args>[^\n]*))?$", re.M)
    return [(float(m["epoch"]) if m["epoch"] is not None else _iso_wall(m["iso"]),
             m["event"], (m["args"] or "").strip()) for m in line.finditer(log)]


def _parse_events(log: str) -> list[_Raw]:
    out = []
    for m in _EVENT_RE.finditer(log):
        if m["epoch"] is not None:
            wall, tid = float(m["epoch"]), int(m["tid"])
        else:
            wall, tid = _iso_wall(m["iso"]), None
        out.append(_Raw(wall, tid, m["event"], (m["args"] or "").strip()))
    out.sort(key=lambda r: r.wall)
    return out


# ---- building ---------------------------------------------------------------


def build_timeline(log: str, start_wall: float | None = None, end_wall: float | None = None,
                   lead_s: float = 1.0, tail_s: float = 1.0) -> DirtyTimeline:
    """The dirty-ring timeline of one source QEMU's stderr (pure).

    `start_wall`/`end_wall`: Unix times the caller recorded around the
    migration (just before `migrate`, at `completed`). Without them the
    trace's own migration states are used; no start at all is a ValueError.
    """
    raw = _parse_events(log)
    full = _parse_full(log)
    untimed = len(_UNTIMED_RE.findall(log))
    start_from: Literal["caller", "trace"] = "caller"
    if start_wall is None:
        start_from = "trace"
        start_wall = next((r.wall for r in raw if r.event == "migrate_set_state"
                           and r.args.endswith(" setup")), None)
        if start_wall is None:
            hint = (f" ({untimed} trace lines have no timestamp: run QEMU with "
                    "-msg timestamp=on)" if untimed else "")
            raise ValueError("no migration start: pass start_wall or trace "
                             f"migrate_set_state{hint}")
    if end_wall is None:
        end_wall = next((r.wall for r in raw if r.event == "migrate_set_state"
                         and r.wall >= start_wall
                         and r.args.removeprefix("new state ") in _END_STATES), None)
    start = start_wall
    end = end_wall if end_wall is not None else np.inf

    def rel(wall: float) -> float:
        return round(wall - start, 6)

    reaper_tids = {r.tid for r in raw if r.event == "kvm_dirty_ring_reaper" and r.tid is not None}
    events: list[TimelineEvent] = []
    reaps: list[tuple[float, int, bool]] = []  # (wall, pages, during a flush)
    flushes: list[list[float]] = []  # [begin, end] walls
    syncs: list[tuple[float, int | None]] = []  # sync_end walls, dirty pages
    in_flush: dict[int | None, bool] = {}
    outside = 0
    vm_stop: float | None = None
    completed: float | None = None
    final_state: str | None = None
    for r in raw:
        ev: TimelineEvent | None = None
        t = rel(r.wall)
        if r.event == "kvm_dirty_ring_reap":
            m = _REAP_RE.search(r.args)
            pages, took = (int(m[1]), int(m[2])) if m else (0, None)
            flushing = in_flush.get(r.tid, False) or (r.tid is None and any(in_flush.values()))
            by: ReapBy = "other"
            vcpu = full.tid_vcpu.get(r.tid) if r.tid is not None else None
            if flushing:
                by = "flush"
            elif r.tid in reaper_tids:
                by = "reaper"
            elif vcpu is not None:
                by = "vcpu"
            ev = TimelineEvent(kind="reap", t_s=t, pages=pages, took_us=took, by=by,
                               vcpu=vcpu if by == "vcpu" else None)
            reaps.append((r.wall, pages, flushing))
        elif r.event == "kvm_dirty_ring_reaper":
            if r.args != "wait":
                ev = TimelineEvent(kind="reaper", t_s=t, detail=r.args)
        elif r.event == "kvm_dirty_ring_reaper_kick":
            ev = TimelineEvent(kind="reaper_kick", t_s=t, detail=r.args)
        elif r.event == "kvm_dirty_ring_flush":
            if r.args == "0":
                in_flush[r.tid] = True
                flushes.append([r.wall, np.inf])
                ev = TimelineEvent(kind="flush_begin", t_s=t)
            else:
                in_flush[r.tid] = False
                open_ = [f for f in flushes if f[1] == np.inf]
                if open_:
                    open_[-1][1] = r.wall
                ev = TimelineEvent(kind="flush_end", t_s=t)
        elif r.event == "migration_bitmap_sync_start":
            ev = TimelineEvent(kind="sync_start", t_s=t)
        elif r.event == "migration_bitmap_sync_end":
            m = _DIRTY_RE.search(r.args)
            dirty = int(m[1]) if m else None
            syncs.append((r.wall, dirty))
            ev = TimelineEvent(kind="sync_end", t_s=t, pages=dirty)
        elif r.event == "migrate_set_state":
            m = _STATE_RE.search(r.args)
            state = m[1] if m else r.args
            if start <= r.wall <= end + tail_s:
                final_state = state
                if state in _END_STATES and completed is None:
                    completed = r.wall
            ev = TimelineEvent(kind="migration_state", t_s=t, detail=state)
        elif r.event == "runstate_set":
            m = _RUNSTATE_RE.search(r.args)
            new = m[1] if m else r.args
            if new == "finish-migrate" and vm_stop is None and start <= r.wall <= end:
                vm_stop = r.wall
            ev = TimelineEvent(kind="runstate", t_s=t, detail=new)
        if ev is None:
            continue
        if r.wall < start - lead_s or r.wall > end + tail_s:
            outside += 1
        else:
            events.append(ev)

    inside = [(w, p, f) for w, p, f in reaps if start <= w <= end]
    before = [(w, p) for w, p, _ in reaps if w < start]
    last = inside[-1] if inside else None
    flush_in = [f for f in flushes if start <= f[0] <= end]
    final = flush_in[-1] if flush_in else None
    final_pages = None if final is None else sum(
        p for w, p, f in reaps if final[0] <= w <= final[1] and f)
    after_final = 0 if final is None else sum(p for w, p, _ in reaps if w > final[1])

    fw = full.wall
    in_window = (fw >= start) & (fw <= end)
    by_vcpu = _count_by(full.vcpu[in_window])
    stop_or_end = vm_stop if vm_stop is not None else end
    after_last = 0
    if last is not None:
        after_last = int(((fw > last[0]) & (fw <= stop_or_end)).sum())

    summary = TimelineSummary(
        reaps=len(inside), pages_reaped=sum(p for _, p, _ in inside),
        reaps_before=len(before), pages_reaped_before=sum(p for _, p in before),
        last_reap_s=None if last is None else rel(last[0]),
        last_reap_pages=None if last is None else last[1],
        ring_full_exits=int(in_window.sum()), ring_full_by_vcpu=by_vcpu,
        ring_full_after_last_reap=after_last,
        bitmap_syncs=sum(1 for w, _ in syncs if start <= w <= end),
        final_flush_s=None if final is None else rel(final[0]),
        final_flush_pages=final_pages,
        pages_reaped_after_final_flush=after_final,
        vm_stop_s=None if vm_stop is None else rel(vm_stop),
        completed_s=None if completed is None else rel(completed),
        final_state=final_state,
    )
    return DirtyTimeline(
        start_wall=start, end_wall=end_wall, start_from=start_from, events=events,
        events_outside=outside, windows=_windows(start, end, syncs, reaps, full, rel),
        summary=summary, untimed_lines=untimed,
    )


def _count_by(vcpus: npt.NDArray[np.int64]) -> dict[int, int]:
    values, counts = np.unique(vcpus, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def _windows(start: float, end: float, syncs: list[tuple[float, int | None]],
             reaps: list[tuple[float, int, bool]], full: _Full,
             rel: Callable[[float], float]) -> list[PassWindow]:
    """Before the migration, one window per pass (bounded by the end of the
    bitmap syncs: pass N = after N syncs), after the migration."""
    inside = [(w, d) for w, d in syncs if start <= w <= end]
    edges = np.array([start, *(w for w, _ in inside), end], dtype=np.float64)
    # bin 0: before start; bin k (1..len(inside)+1): pass k-1; last bin: after end
    full_bin = np.searchsorted(edges, full.wall, side="right")
    reap_walls = np.array([w for w, _, _ in reaps], dtype=np.float64)
    reap_pages = np.array([p for _, p, _ in reaps], dtype=np.int64)
    reap_bin = np.searchsorted(edges, reap_walls, side="right")
    out = []
    for b in range(len(edges) + 1):
        in_bin = full_bin == b
        rsel = reap_bin == b
        if b == 0:
            label, lo, hi, closing = "before migration", None, rel(start), None
        elif b == len(edges):
            if not np.isfinite(end):
                break
            label, lo, hi, closing = "after migration", rel(end), None, None
        else:
            label = f"pass {b - 1}"
            lo = rel(float(edges[b - 1]))
            hi = rel(float(edges[b])) if np.isfinite(edges[b]) else None
            closing = inside[b - 1][1] if b - 1 < len(inside) else None
        exits = _count_by(full.vcpu[in_bin])
        n_reaps = int(rsel.sum())
        if b in (0, len(edges)) and not exits and not n_reaps:
            continue
        out.append(PassWindow(label=label, start_s=lo, end_s=hi, ring_full_exits=exits,
                              reaps=n_reaps, pages_reaped=int(reap_pages[rsel].sum()),
                              closing_sync_dirty_pages=closing))
    return out


# ---- relating to the classified pages -------------------------------------------


def _at(t: float | None) -> str:
    return "?" if t is None else f"{t:+.2f} s"


def relate(timeline: DirtyTimeline, classes: MismatchClasses) -> str:
    """One sentence setting the stale pages against the ring timeline, e.g.
    '1218 stale pages (1 pass behind); last non-empty reap at +2.71 s,
    the final flush reaped 0 pages, VM stopped at +2.80 s'."""
    s = timeline.summary
    stale = classes.stale
    if stale.pages:
        head = f"{stale.pages} stale {plural(stale.pages, 'page')}"
        if stale.steps:
            head += f" ({steps_phrase(stale.steps, classes.unit, MismatchKind.STALE)})"
    else:
        head = "no stale pages"
    others = [f"{classes.of(k).pages} {k.value}" for k in MismatchKind
              if k is not MismatchKind.STALE and classes.of(k).pages]
    if others:
        head += " and " + ", ".join(others)
    if s.last_reap_s is None:
        reap = "no non-empty reap during the migration"
    else:
        reap = f"last non-empty reap at {_at(s.last_reap_s)}"
        if s.ring_full_after_last_reap:
            reap += f" ({s.ring_full_after_last_reap} ring-full exits after it)"
    if s.final_flush_pages is None:
        flush = "no ring flush traced"
    else:
        flush = (f"the final flush reaped {s.final_flush_pages} "
                 f"{plural(s.final_flush_pages, 'page')}")
        if s.pages_reaped_after_final_flush:
            flush += f" ({s.pages_reaped_after_final_flush} reaped after it)"
    stop = "no VM stop traced" if s.vm_stop_s is None else f"VM stopped at {_at(s.vm_stop_s)}"
    return f"{head}; {reap}, {flush}, {stop}"


# ---- drawing ------------------------------------------------------------------


def plot_timeline(timeline: DirtyTimeline, ax: Any) -> None:
    """Draw the timeline on a matplotlib Axes (the caller owns matplotlib):
    non-empty reaps as stems (pages, left axis), ring-full exits per second
    in each pass window as steps (right axis), bitmap syncs, the final flush,
    the VM stop and completion as vertical lines."""
    s = timeline.summary
    ax.set_title("dirty ring on the source (QEMU trace)")
    ax.set_xlabel("seconds since migrate")
    ax.set_ylabel("pages reaped")
    reaps = [e for e in timeline.events if e.kind == "reap"]
    if reaps:
        ax.stem([e.t_s for e in reaps], [e.pages or 0 for e in reaps], basefmt=" ",
                label=f"non-empty reaps ({s.reaps} in migration)")
    rate = ax.twinx()
    rate.set_ylabel("ring-full exits/s")
    xs: list[float] = []
    ys: list[float] = []
    for w in timeline.windows:
        if w.start_s is None or w.end_s is None or w.end_s <= w.start_s:
            continue
        per_s = sum(w.ring_full_exits.values()) / (w.end_s - w.start_s)
        xs += [w.start_s, w.end_s]
        ys += [per_s, per_s]
    if xs:
        rate.plot(xs, ys, color="tab:red", linewidth=1,
                  label=f"ring-full exits/s ({s.ring_full_exits} in migration)")
    for e in timeline.events:
        if e.kind == "sync_end":
            ax.axvline(e.t_s, color="grey", linestyle=":", linewidth=0.8)
    marks = [(s.final_flush_s, "tab:blue", f"final flush ({s.final_flush_pages} pages)"),
             (s.vm_stop_s, "black", "VM stop"), (s.completed_s, "tab:green", "completed")]
    for t, color, label in marks:
        if t is not None:
            ax.axvline(t, color=color, linestyle="--", linewidth=1, label=label)
    ax.legend(loc="upper left", fontsize=8)
    if xs:
        rate.legend(loc="upper right", fontsize=8)
