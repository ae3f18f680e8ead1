"""`--plot PATH`: one PNG, one panel per topic, for people reading a run.

matplotlib (Agg, no display) is an optional dependency (`qmpctl[plot]`,
installed by set-up); without it `--plot` is refused before the run starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from ..core.units import MiB
from .models import RunReport


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise UsageError("--plot needs matplotlib: pip install 'qmpctl[plot]' "
                         "(the README's set-up installs it)") from exc


def plot_report(report: RunReport, path: Path) -> None:
    """Write the PNG: migration passes, guest throughput, dirty-tracking timeline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [_passes]
    if report.guest_throughput is not None:
        panels.append(_throughput)
    if report.dirty_timeline is not None:
        panels.append(_timeline)
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.2 * len(panels)), squeeze=False)
    for panel, ax in zip(panels, axes[:, 0], strict=True):
        panel(report, ax)
    c = report.config
    title = f"qmpctl: {report.verdict.upper()}"
    if c is not None:
        title += f" - {c.guest} {c.arch}, {c.ram_mib} MiB, {c.accel}, {c.dirty_tracking}"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _passes(report: RunReport, ax: Any) -> None:
    m = report.migration
    ax.set_title("migration passes (source query-migrate at each MIGRATION_PASS)")
    ax.set_xlabel("seconds since migrate")
    if m is None or not m.samples:
        ax.text(0.5, 0.5, "no pass was sampled", ha="center", transform=ax.transAxes)
        return
    t = [s.elapsed_s for s in m.samples]
    ax.plot(t, [s.transferred / MiB for s in m.samples], "o-", label="transferred MiB")
    ax.plot(t, [s.remaining / MiB for s in m.samples], "s-", label="remaining MiB")
    ax.set_ylabel("MiB")
    rate = ax.twinx()
    rate.plot(t, [s.dirty_pages_rate for s in m.samples], "^--", color="tab:red",
              label="dirty pages/s")
    rate.set_ylabel("dirty pages/s")
    for d in m.decisions:
        ax.axvline(d.elapsed_s, color="grey", linestyle=":")
        ax.annotate(d.action, (d.elapsed_s, 0), rotation=90, fontsize=7, va="bottom")
    ax.legend(loc="upper left", fontsize=8)
    rate.legend(loc="upper right", fontsize=8)


def _throughput(report: RunReport, ax: Any) -> None:
    tp = report.guest_throughput
    assert tp is not None
    ax.set_title("guest writes (guestload progress records, host arrival time)")
    for side in ("src", "dst"):
        pts = [s for s in tp.samples if s.side == side]
        ax.plot([s.t_s for s in pts], [s.written_mib for s in pts], ".-",
                label=f"{side} MiB written")
    if (m := report.migration) is not None and m.wall_s:
        ax.axvspan(0, m.wall_s, color="tab:orange", alpha=0.15, label="migrating")
        if m.downtime_ms:
            ax.axvline(m.wall_s, color="tab:red", label=f"downtime {m.downtime_ms} ms")
    ax.set_xlabel("seconds since migrate")
    ax.set_ylabel("MiB")
    ax.legend(fontsize=8)


def _timeline(report: RunReport, ax: Any) -> None:
    from ..verify.timeline import plot_timeline

    assert report.dirty_timeline is not None
    plot_timeline(report.dirty_timeline, ax)
