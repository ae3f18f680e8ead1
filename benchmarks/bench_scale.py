"""Time to verdict by guest size: boot, migration, verification and the rest
(resume checks, cleanup), and qmpctl's own peak memory, for x86 bare-metal
wave guests of growing RAM under TCG and, where this host's KVM runs them,
KVM. Prints a table and writes a PNG; asserts nothing (shared, noisy
machines). A size that does not fit where the RAM files live is skipped with
qmpctl's own reason.

    nox -s bench_scale -- --sizes 256,1024,4096 --plot reports/bench_scale.png
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from qmpctl.report.models import RunReport
from qmpctl.scenario.options import MigrateOptions
from qmpctl.scenario.runner import run

PHASES = ("boot", "migrate", "compare", "other")


def phases(rep: RunReport) -> dict[str, float]:
    """Seconds per phase; `other` is the rest of the run (checks, cleanup)."""
    t = rep.timings_s
    out = {"boot": rep.boot_s or 0.0, "migrate": t.get("migrate", 0.0),
           "compare": t.get("compare", 0.0)}
    out["other"] = max(0.0, t.get("total", 0.0) - sum(out.values()))
    return out


def row(accel: str, mib: int, rep: RunReport) -> str:
    if rep.migration is None or rep.memory is None:
        return f"{accel:4} {mib:6} MiB  {rep.verdict}: {rep.error}"
    p = phases(rep)
    return (f"{accel:4} {mib:6} MiB  {rep.verdict:12} total {rep.timings_s['total']:7.1f}s  "
            + "  ".join(f"{k} {v:6.1f}s" for k, v in p.items())
            + f"  passes {rep.migration.passes:3}  pages {rep.memory.pages_compared:8}  "
              f"peak RSS {rep.controller_peak_rss_mib} MiB")


def plot(results: dict[str, list[tuple[int, RunReport]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    for accel, runs in results.items():
        done = [(mib, rep) for mib, rep in runs if rep.memory is not None]
        if not done:
            continue
        x = [mib / 1024 for mib, _ in done]
        bottom = [0.0] * len(done)
        for phase in PHASES:
            values = [phases(rep)[phase] for _, rep in done]
            ax_t.bar([f"{accel}\n{v:g} GiB" for v in x], values, bottom=bottom, label=phase
                     if accel == next(iter(results)) else None)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax_m.plot(x, [rep.controller_peak_rss_mib or 0 for _, rep in done], "o-", label=accel)
    ax_t.set_ylabel("seconds to verdict")
    ax_t.legend()
    ax_m.set_xlabel("guest RAM, GiB")
    ax_m.set_ylabel("qmpctl peak anonymous RSS, MiB")
    ax_m.axhline(200, linestyle=":", color="grey")
    ax_m.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256,1024,4096,8192,16384",
                    help="guest RAM sizes in MiB, comma-separated")
    ap.add_argument("--accels", default="tcg,kvm")
    ap.add_argument("--plot", type=Path, default=Path("reports/bench_scale.png"))
    args = ap.parse_args()
    results: dict[str, list[tuple[int, RunReport]]] = {}
    for accel in args.accels.split(","):
        for mib in (int(s) for s in args.sizes.split(",")):
            rep = await run(MigrateOptions.from_kwargs(accel=accel, ram=mib, timeout=1800.0))
            print(row(accel, mib, rep), flush=True)
            results.setdefault(accel, []).append((mib, rep))
    plot(results, args.plot)


if __name__ == "__main__":
    asyncio.run(main())
