"""The `qmpctl` command line (typer). Exit codes: see errors.ExitCode."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from . import __version__
from .errors import ExitCode, QmpctlError, UsageError
from .guests import LinuxWorkload
from .options import MigrateOptions, resolve
from .report import RunReport, report_schema, summary_lines
from .scenario import Hooks, error_report, run_migrate

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Drive QEMU live migration over QMP and prove no dirty page was lost.")
err = Console(stderr=True)
out = Console()


def parse_exclusion(text: str) -> tuple[int, int, str]:
    """`START-END[:REASON]`, guest-physical, hex or decimal."""
    rng, _, reason = text.partition(":")
    lo, sep, hi = rng.partition("-")
    try:
        if not sep:
            raise ValueError
        start, end = int(lo, 0), int(hi, 0)
    except ValueError:
        raise UsageError(f"--exclude {text!r}: expected START-END[:REASON], e.g. "
                         "0xa0000-0x100000:vga") from None
    return start, end, reason or "excluded by --exclude"


def check_writable(path: Path, what: str) -> None:
    if path.is_dir():
        raise UsageError(f"{what} {path}: is a directory")
    target = path if path.exists() else path.parent
    if not target.exists():
        raise UsageError(f"{what} {path}: directory {path.parent} does not exist")
    if not os.access(target, os.W_OK):
        raise UsageError(f"{what} {path}: not writable")


def _progress_table(info: dict[str, Any], passes: int) -> Table:
    ram = info.get("ram", {})
    table = Table.grid(padding=(0, 2))
    table.add_row(
        f"[bold]{info.get('status', '?')}[/]", f"pass {ram.get('dirty-sync-count', passes)}",
        f"sent {int(ram.get('transferred', 0)) >> 20} MiB",
        f"remaining {int(ram.get('remaining', 0)) >> 20} MiB",
        f"dirty {ram.get('dirty-pages-rate', 0)} pages/s", f"{ram.get('mbps', 0):.0f} Mbps",
    )
    return table


async def _run(opts: MigrateOptions, live: bool, repeat: int) -> list[RunReport]:
    """Run the migration `repeat` times (intermittent losses need repetition)."""
    resolved = resolve(opts)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    reports: list[RunReport] = []
    for i in range(1, repeat + 1):
        r = resolved
        if repeat > 1 and opts.artifacts is not None:
            r = replace(resolved, options=replace(opts, artifacts=opts.artifacts / f"run-{i}"))
        if live:
            with Live(console=err, transient=True, refresh_per_second=4) as view:
                rep = await run_migrate(r, Hooks(),
                                        lambda info, n: view.update(_progress_table(info, n)))
        else:
            rep = await run_migrate(r, Hooks())
        reports.append(rep)
        if repeat > 1:
            err.print(f"run {i}/{repeat}: {one_line(rep)}", highlight=False, markup=False,
                      soft_wrap=True)
        if rep.exit_code == ExitCode.INTERRUPTED:
            break
    return reports


def one_line(rep: RunReport) -> str:
    m, v = rep.migration, rep.memory
    failed = [c.name for c in rep.guest_checks if not c.ok]
    return (f"{rep.verdict.upper()}"
            + (f", {m.passes} passes, downtime {m.downtime_ms} ms" if m else "")
            + (f", {v.pages_differing} pages differ" if v else "")
            + (f", failed checks: {', '.join(failed)}" if failed else "")
            + (f" ({rep.error})" if rep.error else ""))


def _emit(reports: list[RunReport], as_json: bool, report_path: Path | None) -> int:
    """Print and write the report(s); return the exit code (first failure's)."""
    single = len(reports) == 1
    data = (reports[0].model_dump_json(indent=2) if single else
            "[\n" + ",\n".join(r.model_dump_json(indent=2) for r in reports) + "\n]")
    if report_path is not None:
        report_path.write_text(data + "\n")
    code = next((r.exit_code for r in reports if r.exit_code != 0), 0)
    if as_json:
        out.print_json(data) if out.is_terminal else print(data)
    elif single:
        for line in summary_lines(reports[0]):
            (out if code == 0 else err).print(line, highlight=False, markup=False,
                                              soft_wrap=True)
    else:
        tally = Counter(r.verdict for r in reports)
        (out if code == 0 else err).print(
            f"{len(reports)} runs: " + ", ".join(f"{n} {v}" for v, n in tally.most_common()),
            highlight=False, markup=False)
    return code


@app.command()
def migrate(
    arch: Annotated[str, typer.Option(help="Guest architecture: x86_64 or aarch64")] = "x86_64",
    guest: Annotated[str, typer.Option(
        help="baremetal (x86 wave / arm64 ITS guest) or linux (Debian kernel + guestload)")]
    = "baremetal",
    workload: Annotated[str, typer.Option(
        help="Linux guests: wave, random, hotset, rate or readmostly")] = "wave",
    workload_size: Annotated[str, typer.Option(help="Linux guests: e.g. 64M, 1G or 25%")]
    = "64M",
    hot: Annotated[str | None, typer.Option(help="hotset: X,Y = X% of pages take Y% of writes")]
    = None,
    rate: Annotated[int | None, typer.Option(help="rate workload: target MiB/s")] = None,
    accel: Annotated[str, typer.Option(help="auto (KVM when it can run the guest), kvm, tcg")]
    = "auto",
    dirty_ring: Annotated[int, typer.Option(help="KVM dirty ring entries per vCPU; 0 = bitmap")]
    = 4096,
    ram: Annotated[int | None, typer.Option(help="Guest RAM in MiB (160; Linux 512)")] = None,
    smp: Annotated[int | None, typer.Option(help="vCPUs (default: x86 wave 1, arm64 ITS 2)")]
    = None,
    wave_start: Annotated[int | None, typer.Option(help="Wave start, MiB into RAM")] = None,
    wave_end: Annotated[int | None, typer.Option(help="Wave end, MiB into RAM")] = None,
    stride: Annotated[int, typer.Option(help="Bytes between two written bytes")] = 4096,
    delta: Annotated[int, typer.Option(help="Increment per pass (1..255)")] = 1,
    transport: Annotated[str, typer.Option(help="unix or tcp (loopback)")] = "unix",
    min_passes: Annotated[int, typer.Option(help="Dirty syncs before convergence is allowed")]
    = 3,
    throttle: Annotated[int, typer.Option(help="MiB/s while convergence is held back")] = 64,
    downtime_limit: Annotated[int, typer.Option(help="ms allowed once it may converge")] = 1000,
    timeout: Annotated[float, typer.Option(help="Seconds the migration may take")] = 300.0,
    qemu: Annotated[str | None, typer.Option(help="QEMU binary for both sides")] = None,
    qemu_src: Annotated[str | None, typer.Option(help="QEMU binary for the source")] = None,
    qemu_dst: Annotated[str | None, typer.Option(help="QEMU binary for the destination")]
    = None,
    exclude: Annotated[list[str] | None, typer.Option(
        help="START-END[:REASON] guest-physical range left out of the verdict (repeatable; "
             "always listed in the report)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the JSON report")] = False,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here")] = None,
    artifacts: Annotated[Path | None, typer.Option(help="Keep QEMU and serial logs here")]
    = None,
    dirty_rate_probe: Annotated[bool, typer.Option(
        help="Run calc-dirty-rate on the source before migrating (on kvm_pvm this "
             "disturbs the migration that follows; see README)")] = False,
    postcopy: Annotated[bool, typer.Option(
        help="Switch to postcopy (migrate-start-postcopy) once memory was re-dirtied")] = False,
    repeat: Annotated[int, typer.Option(
        help="Run N migrations in a row and tally the verdicts; the report is then a JSON "
             "array")] = 1,
    force: Annotated[bool, typer.Option(
        help="Run a configuration known to lose pages (arm64 KVM ring without "
             "ring-with-bitmap); the report lists what was forced")] = False,
) -> None:
    """Migrate a guest live while it dirties memory, then verify every page."""
    try:
        if transport not in ("unix", "tcp"):
            raise UsageError(f"--transport {transport!r}: choose unix or tcp")
        if accel not in ("auto", "kvm", "tcg"):
            raise UsageError(f"--accel {accel!r}: choose auto, kvm or tcg")
        if report is not None:
            check_writable(report, "--report")
        if repeat < 1:
            raise UsageError(f"--repeat {repeat}: must be at least 1")
        opts = MigrateOptions(
            arch=arch, accel=accel, dirty_ring=dirty_ring, ram_mib=ram, smp=smp,  # type: ignore[arg-type]
            wave_start_mib=wave_start, wave_end_mib=wave_end, stride=stride, delta=delta,
            transport=transport, min_passes=min_passes, throttle_mib_s=throttle,  # type: ignore[arg-type]
            downtime_limit_ms=downtime_limit, timeout_s=timeout,
            qemu_src=qemu_src or qemu, qemu_dst=qemu_dst or qemu,
            exclude=tuple(parse_exclusion(e) for e in exclude or ()), artifacts=artifacts,
            force=force, postcopy=postcopy, guest=guest, dirty_rate_probe=dirty_rate_probe,
            workload=LinuxWorkload(workload, workload_size, hot, rate),
        )
        results = asyncio.run(_run(opts, live=err.is_terminal and not json_out, repeat=repeat))
    except QmpctlError as exc:
        results = [error_report(exc)]
        if not json_out:
            print(f"qmpctl: {exc.message}", file=sys.stderr)
            if report is not None and exc.exit_code != ExitCode.USAGE:
                report.write_text(results[0].model_dump_json(indent=2) + "\n")
            raise typer.Exit(int(exc.exit_code)) from None
    raise typer.Exit(_emit(results, json_out, report))


@app.command()
def doctor(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    probe: Annotated[bool, typer.Option(
        help="Also boot a 64-bit probe guest under KVM (up to 30 s)")] = False,
) -> None:
    """Show what this host can do: QEMU, KVM, dirty-ring capabilities, QEMU features."""
    from .doctor import doctor as run_doctor

    rep = asyncio.run(run_doctor(probe))
    if json_out:
        print(rep.model_dump_json(indent=2))
        return
    table = Table(title="qmpctl doctor", show_header=False)
    table.add_row("host arch", rep.host_arch)
    table.add_row("KVM", f"{rep.kvm_device}: "
                  + (f"{rep.kvm_flavour}" if rep.kvm_accessible else f"unusable ({rep.kvm_error})"))
    for name, value in rep.kvm_caps.items():
        table.add_row(f"  {name}", str(value))
    table.add_row("dirty ring max entries", str(rep.dirty_ring_max_entries))
    table.add_row("64-bit Linux under KVM", str(rep.runs_64bit_linux_under_kvm))
    if rep.long_mode_probe is not None:
        table.add_row("long-mode probe (KVM)", rep.long_mode_probe)
    for q in rep.qemu:
        problem = f" ({q.error})" if q.error else ""
        table.add_row(f"qemu {q.arch}", f"{q.binary} {q.version}{problem}")
        table.add_row("  calc-dirty-rate modes", ", ".join(q.dirty_rate_modes))
        table.add_row("  dirty-limit capability", str("dirty-limit" in q.migration_capabilities))
        table.add_row("  commands", ", ".join(c for c, ok in q.commands.items() if ok))
    out.print(table)
    for note in rep.notes:
        out.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)


@app.command()
def schema() -> None:
    """Print the JSON schema of the run report."""
    sys.stdout.write(report_schema())


@app.command()
def version() -> None:
    """Print qmpctl's version."""
    print(__version__)


def main() -> None:
    app()
