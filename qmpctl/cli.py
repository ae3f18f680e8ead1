"""The `qmpctl` command line (typer). Exit codes: see errors.ExitCode."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import types
import typing
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO, cast

import typer
from pydantic.fields import FieldInfo
from rich.console import Console
from typer.models import ParameterInfo

from . import __version__
from .core.errors import ExitCode, QmpctlError, ReportUnwritten, UsageError
from .host.kvm import cap_text, probe_kvm, ring_size_text
from .host.netns import sweep_stale_namespaces
from .lab.commands import app as lab_app
from .lab.commands import checkout as lab_checkout
from .matrix.stats import cell_stats, interval_within, rate_text
from .migration.features import PANEL as FEATURES_PANEL
from .qemu.rundir import default_root, sweep_stale
from .report.models import RunReport
from .report.plots import plot_report, require_matplotlib
from .report.text import one_line, summary_lines
from .report.write import ARTIFACTS_REPORT, write_report
from .scenario.hooks import Hooks
from .scenario.options import (
    GUEST,
    KERNEL,
    MIGRATION,
    TIMEOUTS_PANEL,
    TOPOLOGY,
    MigrateOptions,
    resolve,
)
from .scenario.options import VERIFY as VERIFY_PANEL
from .scenario.runner import new_report, run_migrate

if TYPE_CHECKING:  # the matrix, the fleet and other commands' modules are imported
    # by those commands only: `qmpctl migrate` starts without them (docs/testing.md,
    # "Time per run")
    from rich.table import Table

    from .matrix.execute import Executor, MatrixState
    from .matrix.results import FleetRun
    from .matrix.spec import MatrixSpec

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Drive QEMU live migration over QMP and prove no dirty page was lost.")
app.add_typer(lab_app, name="lab")
images_app = typer.Typer(no_args_is_help=True, help=(
    "Guest images: the bare-metal guests ship with the package; Linux guests and "
    "KVM labs are built on demand (`qmpctl doctor` says where each image comes from)."))
app.add_typer(images_app, name="images")
err = Console(stderr=True)
out = Console()
log = logging.getLogger("qmpctl")


def _print_version(value: bool) -> None:
    if value:
        print(f"qmpctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    verbose: Annotated[int, typer.Option(
        "--verbose", "-v", count=True,
        help="-v: what qmpctl does; -vv: also every QMP message (qemu.qmp's logger)")] = 0,
    show_version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print qmpctl's version (the installed package's) and exit")] = False,
) -> None:
    """Drive QEMU live migration over QMP and prove no dirty page was lost."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    if verbose:
        logging.getLogger("qmpctl").setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
    if verbose >= 2:
        logging.getLogger("qemu.qmp").setLevel(logging.DEBUG)


PROBE_BYTES = 64 << 10  # a small report's size: enough to meet a full file system


def check_writable(path: Path, what: str) -> None:
    """Write and remove a probe file beside `path`, as the final write will:
    permissions alone do not tell (root ignores them, /proc refuses everyone),
    and a full file system still creates an empty file. (A device such as
    /dev/full can only be found out by the final write.)"""
    if path.is_dir():
        raise UsageError(f"{what} {path}: is a directory")
    if not path.parent.is_dir():
        raise UsageError(f"{what} {path}: directory {path.parent} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".qmpctl-probe-") as probe:
            probe.write(bytes(PROBE_BYTES))
            probe.flush()
            os.fsync(probe.fileno())
        if path.exists():
            with path.open("a"):
                pass
    except OSError as exc:
        raise UsageError(f"{what} {path}: not writable ({exc.strerror})") from None


def check_writable_dir(path: Path, what: str) -> None:
    """The directory (created if missing) must take files."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot create it ({exc.strerror})") from None
    check_writable(path / "probe", what)


def _progress_table(info: dict[str, Any], passes: int) -> Table:
    from rich.table import Table

    ram = info.get("ram", {})
    table = Table.grid(padding=(0, 2))
    table.add_row(
        f"[bold]{info.get('status', '?')}[/]", f"pass {ram.get('dirty-sync-count', passes)}",
        f"sent {int(ram.get('transferred', 0)) >> 20} MiB",
        f"remaining {int(ram.get('remaining', 0)) >> 20} MiB",
        f"dirty {ram.get('dirty-pages-rate', 0)} pages/s", f"{ram.get('mbps', 0):.0f} Mbps",
    )
    return table


def _on_signal(task: asyncio.Task[object]) -> Callable[[], None]:
    """First signal: cancel the run (it cleans up and reports). Later ones are
    acknowledged; the third abandons the cleanup."""
    count = 0

    def handler() -> None:
        nonlocal count
        count += 1
        if count == 1:
            task.cancel()
        elif count == 2:
            err.print("qmpctl: cleaning up (cancelling the migration, resuming the source); "
                      "press again to abandon", highlight=False, markup=False)
        else:
            os._exit(int(ExitCode.INTERRUPTED))

    return handler


async def _run(opts: MigrateOptions, live: bool, repeat: int,
               until_fail: bool = False, until_ci: float | None = None,
               stop_label: str = "--until-fail") -> list[RunReport]:
    """Run the migration `repeat` times (intermittent losses need repetition);
    `until_fail`: stop at the first run that does not verify, keeping only
    that run's artifacts; `until_ci`: stop once the loss rate's interval is
    that narrow."""
    resolved = resolve(opts)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_signal(task))
    reports: list[RunReport] = []
    for i in range(1, repeat + 1):
        r = resolved
        if (repeat > 1 or until_fail) and opts.artifacts is not None:
            r = replace(resolved, options=opts.model_copy(
                update={"artifacts": opts.artifacts / f"run-{i}"}))
        if live:
            from rich.live import Live

            with Live(console=err, transient=True, refresh_per_second=4) as view:
                rep = await run_migrate(r, Hooks(),
                                        lambda info, n: view.update(_progress_table(info, n)))
        else:
            rep = await run_migrate(r, Hooks())
        reports.append(rep)
        if r.options.artifacts is not None:
            _keep_report(rep, r.options.artifacts)
        if repeat > 1:
            err.print(f"run {i}/{repeat}: {one_line(rep)}", highlight=False, markup=False,
                      soft_wrap=True)
        if rep.exit_code == ExitCode.INTERRUPTED:
            break
        if until_ci is not None and i < repeat:
            rates = cell_stats(done.verdict for done in reports)
            if interval_within(rates, until_ci):
                err.print(f"--until-ci {until_ci:g}: after {i} runs the loss rate is "
                          f"{rate_text(rates)}, no wider than {until_ci:g}; stopping",
                          highlight=False, markup=False, soft_wrap=True)
                break
        if until_fail:
            kept = r.options.artifacts
            if rep.exit_code == ExitCode.VERIFIED:
                if kept is not None:
                    shutil.rmtree(kept, ignore_errors=True)  # only the failing run's stay
                continue
            logs = f"; its logs are in {kept}" if kept is not None else ""
            err.print(f"{stop_label}: run {i} of {repeat} did not verify ({rep.verdict}){logs}",
                      highlight=False, markup=False, soft_wrap=True)
            break
    return reports


def _keep_report(rep: RunReport, artifacts: Path) -> None:
    """The run's report beside its logs, so the directory can be reproduced
    (`qmpctl repro DIR`); a failure to write it is said, the verdict stands."""
    try:
        artifacts.mkdir(parents=True, exist_ok=True)
        write_report(artifacts / ARTIFACTS_REPORT, rep.model_dump_json(indent=2) + "\n",
                     "--artifacts")
    except (OSError, ReportUnwritten) as exc:
        err.print(f"qmpctl: {exc}", highlight=False, markup=False, soft_wrap=True)


def _emit(reports: list[RunReport], as_json: bool, report_path: Path | None,
          summary: bool = True) -> int:
    """Print (`summary`: the summary too) and write the report(s); return the
    exit code (the first failure's)."""
    single = len(reports) == 1
    data = (reports[0].model_dump_json(indent=2) if single else
            "[\n" + ",\n".join(r.model_dump_json(indent=2) for r in reports) + "\n]")
    code = next((r.exit_code for r in reports if r.exit_code != 0), 0)
    unwritten = None
    if report_path is not None:
        try:
            write_report(report_path, data + "\n")
        except ReportUnwritten as exc:
            unwritten = exc
    if as_json:
        out.print_json(data) if out.is_terminal else print(data)
    elif not summary:
        pass
    elif single:
        for line in summary_lines(reports[0]):
            (out if code == 0 else err).print(line, highlight=False, markup=False,
                                              soft_wrap=True)
    else:
        tally = Counter(r.verdict for r in reports)
        (out if code == 0 else err).print(
            f"{len(reports)} runs: " + ", ".join(f"{n} {v}" for v, n in tally.most_common())
            + f"; loss rate {rate_text(cell_stats(r.verdict for r in reports))}",
            highlight=False, markup=False)
    if unwritten is not None:
        # A run that did not verify keeps its own code: it says more.
        print(f"qmpctl: {unwritten.message}; the verdict above stands"
              + (f", exit {int(unwritten.exit_code)}" if code == 0 else ""), file=sys.stderr)
        code = code or int(unwritten.exit_code)
    return code


def cli_type(annotation: Any) -> Any:
    """The type typer parses a model field as: `X | None` is X, a Literal is
    its values' type (pydantic then names the choices), a tuple a list."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        [annotation] = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return type(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is tuple:
        return list[typing.get_args(annotation)[0]]  # type: ignore[misc]
    return annotation


def field_option(name: str, info: FieldInfo, panel: str) -> inspect.Parameter:
    """A model field as a typer option: `--name-with-dashes`, its type, its
    default (a tuple's: none given), its description as help, its panel
    (the field's own, else `panel`)."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    option = typer.Option(help=info.description, rich_help_panel=str(extra.get("panel", panel)))
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                             default=None if isinstance(info.default, tuple) else info.default,
                             annotation=Annotated[cli_type(info.annotation), option])


def with_options(fields: dict[str, FieldInfo], panel: str, panels: tuple[str, ...] = (),
                 ) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Add `fields` (pydantic fields: type, default, description as help) to
    a command as options, after its first parameter (the context) and
    before its own, panel by panel in the order of `panels`; the command
    takes them as `**kwargs`."""
    def wrap(command: Callable[..., None]) -> Callable[..., None]:
        sig = inspect.signature(command, eval_str=True)
        first, *own = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
        added = sorted((field_option(n, info, panel) for n, info in fields.items()),
                       key=lambda p: _panel_rank(p, panels))
        params = [first, *added, *own]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> None:
            command(*args, **kwargs)

        run.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return run
    return wrap


def _panel_rank(param: inspect.Parameter, panels: tuple[str, ...]) -> int:
    [option] = [a for a in typing.get_args(param.annotation) if isinstance(a, ParameterInfo)]
    return panels.index(option.rich_help_panel) if option.rich_help_panel in panels else len(panels)


OUTPUT, REPETITION = VERIFY_PANEL, "Repetition"
MIGRATE_PANELS = (GUEST, KERNEL, TOPOLOGY, MIGRATION, FEATURES_PANEL, TIMEOUTS_PANEL, OUTPUT)


@app.command()
@with_options(MigrateOptions.model_fields, FEATURES_PANEL, MIGRATE_PANELS)
def migrate(
    ctx: typer.Context,
    *,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the JSON report", rich_help_panel=OUTPUT)] = False,
    report: Annotated[Path | None, typer.Option(
        help="Write the JSON report here", rich_help_panel=OUTPUT)] = None,
    plot: Annotated[Path | None, typer.Option(
        help="Write a PNG: passes, guest throughput, the dirty-tracking timeline",
        rich_help_panel=OUTPUT)] = None,
    html: Annotated[Path | None, typer.Option(
        help="Write one self-contained HTML page: the run(s) as a heat-map tile with the "
             "loss rate, each run's verdict, first differing pages and timeline",
        rich_help_panel=OUTPUT)] = None,
    repeat: Annotated[int, typer.Option(
        help="Run N migrations in a row and tally the verdicts; the report is then a JSON "
             "array", rich_help_panel=REPETITION)] = 1,
    until_fail: Annotated[int | None, typer.Option(
        help="Repeat up to N times, stop at the first run that does not verify and keep "
             "its logs (needs --artifacts DIR; passing runs' logs are removed)",
        rich_help_panel=REPETITION)] = None,
    bisect: Annotated[int | None, typer.Option(
        help="For `git bisect run`: up to N runs, stopping at the first that does not "
             "verify; exit 0 good (no loss in N), 1 bad (lost pages), 125 skip (could not "
             "decide), 128 abort (bad input)", rich_help_panel=REPETITION)] = None,
    until_ci: Annotated[float | None, typer.Option(
        help="With --repeat N: stop early once the loss rate's 95 % Wilson interval is no "
             "wider than WIDTH (0-1, e.g. 0.2), over the runs compared to a verdict",
        rich_help_panel=REPETITION)] = None,
    **options: Any,
) -> None:
    """Migrate a guest live while it dirties memory, then verify every page."""
    writable: Path | None = None  # --report once probed: written whatever the verdict
    t_start = time.monotonic()
    try:
        artifacts = options.get("artifacts")
        writable = _check_outputs(report, artifacts, html, plot, repeat)
        repeat = _runs(repeat, until_fail, bisect, until_ci, plot, artifacts)
        # None: not given (the model's default, or resolved by the run)
        opts = MigrateOptions.from_kwargs(**{k: v for k, v in options.items() if v is not None})
        results = asyncio.run(_run(opts, live=err.is_terminal and not json_out, repeat=repeat,
                                   until_fail=until_fail is not None or bisect is not None,
                                   until_ci=until_ci,
                                   stop_label="--bisect" if bisect else "--until-fail"))
    except QmpctlError as exc:
        results = [new_report(exc)]
        if not json_out:
            print(f"qmpctl: {exc.message}", file=sys.stderr)
            code = _emit(results, json_out, writable, summary=False)
            raise typer.Exit(_bisected(results, bisect) if bisect else code) from None
    if plot is not None and results[0].config is not None:
        plot_report(results[0], plot)
    code = _emit(results, json_out, writable)
    if html is not None:
        from .matrix.html import write_html
        from .matrix.plan import describe_host
        from .matrix.repeat import repeat_report
        try:
            write_html(repeat_report(results, _command_line(ctx),
                                     describe_host(probe_kvm()),
                                     time.monotonic() - t_start, repeat),
                       html, f"qmpctl migrate: {len(results)} run(s)")
        except ReportUnwritten as exc:
            print(f"qmpctl: {exc.message}; the verdict above stands", file=sys.stderr)
            code = code or int(exc.exit_code)
    raise typer.Exit(_bisected(results, bisect) if bisect else code)


def _check_outputs(report: Path | None, artifacts: Path | None, html: Path | None,
                   plot: Path | None, repeat: int) -> Path | None:
    """Probe every file the run will write before it starts; return --report."""
    if report is not None:
        check_writable(report, "--report")
    if artifacts is not None:
        check_writable_dir(artifacts, "--artifacts")
    if html is not None:
        check_writable(html, "--html")
    if plot is not None:
        require_matplotlib()
        check_writable(plot, "--plot")
        if repeat > 1:
            raise UsageError("--plot draws one run; it cannot be combined with --repeat")
    return report


def _runs(repeat: int, until_fail: int | None, bisect: int | None, until_ci: float | None,
          plot: Path | None, artifacts: Path | None) -> int:
    """How many runs --repeat, --until-fail, --bisect and --until-ci ask for
    (at most), or a UsageError for what does not combine."""
    if repeat < 1:
        raise UsageError(f"--repeat {repeat}: must be at least 1")
    if until_ci is not None:
        if not 0 < until_ci < 1:
            raise UsageError(f"--until-ci {until_ci:g}: a width between 0 and 1 "
                             "(e.g. 0.2: the interval spans 20 percentage points)")
        if repeat < 2:
            raise UsageError("--until-ci stops a --repeat N early: give --repeat N "
                             "(the most runs it may take)")
    if bisect is not None:
        if bisect < 1:
            raise UsageError(f"--bisect {bisect}: must be at least 1")
        if repeat > 1 or until_fail is not None or until_ci is not None:
            raise UsageError("--bisect N repeats by itself; leave out --repeat, "
                             "--until-fail and --until-ci")
        if plot is not None:
            raise UsageError("--plot draws one run; it cannot be combined with --bisect")
        repeat = bisect
    if until_fail is not None:
        if until_fail < 1:
            raise UsageError(f"--until-fail {until_fail}: must be at least 1")
        if repeat > 1:
            raise UsageError("--until-fail N repeats by itself; leave out --repeat")
        if artifacts is None:
            raise UsageError("--until-fail keeps the logs of the run that did not verify: "
                             "give --artifacts DIR")
        if plot is not None:
            raise UsageError("--plot draws one run; it cannot be combined with "
                             "--until-fail")
        repeat = until_fail
    return repeat


def _command_line(ctx: typer.Context) -> list[str]:
    """The running command as given: every option whose value is not its
    default (typer parsed them; sys.argv is someone else's under CliRunner)."""
    line = ["qmpctl", ctx.info_name or ctx.command.name or "?"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.param_type_name != "option" or value == param.default or value in (None, []):
            continue
        if getattr(param, "is_flag", False):
            line.append(param.opts[0] if value else (param.secondary_opts or param.opts)[0])
            continue
        for v in value if isinstance(value, list | tuple) else [value]:
            line += [param.opts[0], str(v)]
    return line


def _bisected(results: list[RunReport], runs: int) -> int:
    """--bisect: the exit code `git bisect run` reads, said in one line."""
    from .matrix.bisect import bisect_outcome
    code, line = bisect_outcome([r.verdict for r in results], runs)
    err.print(line, highlight=False, markup=False, soft_wrap=True)
    return code


def _matrix_spec(preset: str | None, axes: Path | None) -> tuple[MatrixSpec, str]:
    from .matrix.presets import PRESETS
    from .matrix.spec import load_preset, load_toml

    if (preset is None) == (axes is None):
        raise UsageError("give one of --preset NAME (" + ", ".join(PRESETS) + ") or "
                         "--axes FILE.toml")
    if preset is not None:
        return load_preset(preset), f"preset {preset}"
    assert axes is not None
    return load_toml(axes), str(axes)


async def _matrix(state: MatrixState, live: bool, executor: Executor) -> None:
    """Run the matrix under a live table (terminal) or one line per run (a lab
    host's runs as its console prints them, each line prefixed with the host;
    a fleet's infrastructure events prefixed with `[fleet]`)."""
    from rich.live import Live

    from .matrix.table import matrix_table

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_signal(task))
    if live:
        def view() -> Any:
            return matrix_table(state.results(), state.repeat, state.current, state.activity,
                                labs=state.labs)
        with Live(console=err, get_renderable=view, transient=True, refresh_per_second=2):
            await executor.run(state, lambda: None, lambda host, line: None)
        return
    here = {c.id for c in state.cells if c.host == state.here}
    printed: set[tuple[str, int]] = set()

    def changed() -> None:
        for cell, runs in state.runs.items():
            for r in runs:
                if cell not in here or (cell, r.repeat) in printed:
                    continue
                printed.add((cell, r.repeat))
                err.print(f"{cell} #{r.repeat}: {r.verdict.upper()}"
                          + (f" ({r.mismatch or r.error})" if r.mismatch or r.error else "")
                          + (f" [on {r.worker}]" if r.worker else ""),
                          highlight=False, markup=False, soft_wrap=True)

    def console(host: str, line: str) -> None:
        err.print(f"[{host}] {line}", highlight=False, markup=False, soft_wrap=True)

    await executor.run(state, changed, console)


@app.command()
def matrix(
    preset: Annotated[str | None, typer.Option(
        help="smoke (CI: x86_64 bare metal, under a minute here), full (every feature, x86_64 and "
             "arm64 bare metal, docs/results.md, about 20 minutes), storm (KVM dirty ring, a "
             "writer on each of 1-8 vCPUs), kvm-control (the same KVM cells on this host and in "
             "the x86_64 and arm64 labs: the host axis) or exhaustive (every axis value, 5 "
             "runs each, hours)")] = None,
    axes: Annotated[Path | None, typer.Option(
        help="TOML file of the same shape: repeat, options and axes tables (docs/matrix.md)")]
    = None,
    repeat: Annotated[int | None, typer.Option(
        help="Runs per cell, each a fresh migration [default: the preset's or file's]")] = None,
    cell: Annotated[str | None, typer.Option(
        help="Only the cells whose id matches this regex (re.search), e.g. 'kvm-ring'")]
    = None,
    known_loss: Annotated[list[str] | None, typer.Option(
        help="AXIS=VALUE[,AXIS=VALUE]: lost pages in matching cells are a documented host bug: "
             "still counted, shown and JUnit failures, but exit 0 (repeatable)")] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Write the results as JSON: every run, the intervals, host, command")]
    = None,
    junit: Annotated[Path | None, typer.Option(
        help="Write JUnit XML: a testcase per cell and repeat, not-run cells skipped")] = None,
    plot: Annotated[Path | None, typer.Option(
        help="Write a PNG: loss rate per cell with its 95 % Wilson interval")] = None,
    markdown: Annotated[Path | None, typer.Option(
        help="Write a Markdown table: a row per feature, a column per configuration")] = None,
    html: Annotated[Path | None, typer.Option(
        help="Write one self-contained HTML page: the heat map, each cell opening its runs "
             "(verdicts, first differing pages, timelines)")] = None,
    lab_job: Annotated[Path | None, typer.Option(
        "--lab-job", hidden=True,
        help="Inside a lab qmpctl booted: run the job's cells (a lab host's) here")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="Run on a fleet: the Dask scheduler's ADDRESS (tcp://HOST:PORT, tls:// with "
             "--tls-*); each cell x repeat one task on a worker that has what it needs "
             "(docs/fleet.md)", rich_help_panel="Fleet")] = None,
    cluster: Annotated[str | None, typer.Option(
        help="local: a throwaway Dask cluster of this host (one worker, one run at a time)",
        rich_help_panel="Fleet")] = None,
    tls_ca: Annotated[Path | None, typer.Option(
        help="CA that signed the fleet's certificates", rich_help_panel="Fleet")] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        help="This controller's certificate (PEM)", rich_help_panel="Fleet")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        help="Its private key (PEM)", rich_help_panel="Fleet")] = None,
    resume: Annotated[bool, typer.Option(
        help="Skip the tasks --json PATH's journal (PATH.journal) says finished",
        rich_help_panel="Fleet")] = False,
    workers: Annotated[int | None, typer.Option(
        help="Wait for this many workers before planning [default: 1]",
        rich_help_panel="Fleet")] = None,
    workers_timeout: Annotated[float | None, typer.Option(
        help="Seconds to wait for the scheduler and the workers, and how long a task may find "
             "no connected worker able to run it before it is given up [default: 60]",
        rich_help_panel="Fleet")] = None,
) -> None:
    """Run migrations over a matrix of axes, repeated; loss rate per cell."""
    from .fleet import options as fleet_options
    from .fleet.executor import refuse_labs
    from .matrix.cells import expand, select
    from .matrix.execute import LocalExecutor, MatrixState
    from .matrix.html import write_html
    from .matrix.junit import write_junit
    from .matrix.knownloss import parse_known_loss
    from .matrix.labs import LabFn, job_cells, lab_check, lab_runner, load_lab_job
    from .matrix.markdown import feature_table
    from .matrix.plan import check_options, describe_host, host_check, plan
    from .matrix.plot import plot_matrix
    from .matrix.spec import LOCAL
    from .matrix.table import matrix_table

    t_start = time.monotonic()
    here: str = LOCAL
    lab_fn: LabFn | None = None
    fleet = fleet_options.FleetOptions(scheduler, cluster, tls_ca, tls_cert, tls_key, resume,
                                       workers, workers_timeout)
    executor: Executor
    try:
        fleet_options.check(fleet, json_path, lab_job is not None)
        if lab_job is not None:
            if preset is not None or axes is not None or cell is not None or known_loss:
                raise UsageError("--lab-job takes its spec, cells and repeat from the job")
            job, spec = load_lab_job(lab_job, os.environ)
            source, here, repeat = job.source, job.host, job.repeat
        else:
            spec, source = _matrix_spec(preset, axes)
        if repeat is not None and repeat < 1:
            raise UsageError(f"--repeat {repeat}: must be at least 1")
        outputs = (("--json", json_path), ("--junit", junit), ("--plot", plot),
                   ("--markdown", markdown), ("--html", html))
        for what, path in outputs:
            if path is not None:
                check_writable(path, what)
        if plot is not None:
            require_matplotlib()
        known = tuple(parse_known_loss(k) for k in known_loss or ())
        cells = expand(spec)
        cells = job_cells(job, cells) if lab_job is not None else select(cells, cell)
        kvm = probe_kvm()
        check_options(cells, spec.options, kvm)
        host = describe_host(kvm)
        if fleet.fleet:  # the workers' resources and own checks decide, not this host's
            cells = plan(cells, lambda opts: None, refuse_labs)
            executor = fleet_options.executor(fleet, cells, source, repeat or spec.repeat,
                                              json_path)
        else:
            cells = plan(cells, host_check(kvm), lab_check(), here=here)
            if any(c.host != here and c.not_run is None for c in cells):
                lab_fn = lab_runner(spec, source, lab_checkout())
            executor = LocalExecutor(lab_fn)
    except QmpctlError as exc:
        print(f"qmpctl: {exc.message}", file=sys.stderr)
        raise typer.Exit(int(exc.exit_code)) from None
    state = MatrixState(cells, repeat or spec.repeat, known, t0=t_start, here=here)
    runnable = sum(1 for c in cells if c.not_run is None)
    in_labs = Counter(c.host for c in cells if c.not_run is None and c.host != here)
    where = f"on {scheduler or 'a local cluster'}" if fleet.fleet else "here"
    err.print(f"qmpctl matrix: {source}: {len(cells)} cells, {runnable} to run"
              + "".join(f" ({n} in one boot of the {h} lab)" for h, n in in_labs.items())
              + f", {state.repeat} run(s) each, {len(cells) - runnable} not run {where}",
              highlight=False, markup=False, soft_wrap=True)
    # In a lab job, one line per run even on the lab's console (a terminal): the
    # matrix that booted the lab reads them as its progress.
    try:
        asyncio.run(_matrix(state, live=err.is_terminal and lab_job is None,
                            executor=executor))
    except QmpctlError as exc:  # the fleet could not be reached or had no workers
        print(f"qmpctl: {exc.message}", file=sys.stderr)
        raise typer.Exit(int(exc.exit_code)) from None
    command = ["qmpctl", "matrix", *(["--preset", preset] if preset else []),
               *(["--axes", str(axes)] if axes else []),
               *(["--repeat", str(repeat)] if repeat else []),
               *(["--cell", cell] if cell else []),
               *[a for k in known_loss or () for a in ("--known-loss", k)],
               *(["--lab-job", str(lab_job)] if lab_job else []),
               *(["--scheduler", scheduler] if scheduler else []),
               *(["--cluster", cluster] if cluster else []),
               *(["--resume"] if resume else []),
               *[a for opt, p in outputs if p is not None for a in (opt, str(p))]]
    result = state.report(command, source, host, cell)
    # Not a terminal (a CI log): wide enough for full cell ids on one line.
    (out if out.is_terminal and lab_job is None else Console(width=200)).print(
        matrix_table(result.cells, result.repeat,
                     labs={h.host: h.lab for h in result.hosts if h.lab is not None}))
    if result.fleet is not None:
        _print_fleet(result.fleet)
    (out if result.exit_code == 0 else err).print(
        f"exit {result.exit_code}: {result.exit_reason}; wall time {result.wall_s:.0f} s",
        highlight=False, markup=False, soft_wrap=True)
    code = result.exit_code
    try:
        if json_path is not None:
            write_report(json_path, result.model_dump_json(indent=2) + "\n", "--json")
        if junit is not None:
            write_junit(result, junit)
        if plot is not None:
            plot_matrix(result, plot)
        if markdown is not None:
            write_report(markdown, feature_table(result), "--markdown")
        if html is not None:
            write_html(result, html, f"qmpctl matrix: {source}")
    except ReportUnwritten as exc:
        print(f"qmpctl: {exc.message}", file=sys.stderr)
        code = code or int(exc.exit_code)
    raise typer.Exit(code)


def _print_fleet(fleet: FleetRun) -> None:
    """Per worker: its host and its runs pooled; every infrastructure event."""
    from .matrix.table import host_lines

    machines = {w.name: w.machine for w in fleet.workers}
    for line in host_lines(fleet.hosts):
        m = machines.get(line.plain.strip().partition(":")[0])
        out.print(line.plain + (f" ({m.hostname}, Linux {m.kernel}, KVM {m.kvm.flavour}, "
                                f"QEMU {m.qemu.get(m.machine, ['?'])[0].split()[0]})"
                                if m is not None and m.qemu.get(m.machine) else ""),
                  highlight=False, markup=False, soft_wrap=True)
    if fleet.events:
        out.print(f"infrastructure ({fleet.scheduler}): {len(fleet.events)} event(s)",
                  highlight=False, markup=False)
        for ev in fleet.events:
            out.print(f"  {ev.at_s:7.1f} s {ev.kind}: {ev.detail}", highlight=False,
                      markup=False, soft_wrap=True)


def _ready(what: str) -> Callable[[str], None]:
    def say(address: str) -> None:
        print(f"qmpctl {what}: listening at {address}", file=sys.stderr, flush=True)
    return say


@app.command(rich_help_panel="Fleet")
def worker(
    scheduler: Annotated[str, typer.Option(
        help="The scheduler's address: tcp://HOST:PORT (tls:// with --tls-*)")],
    listen: Annotated[str, typer.Option(
        help="This worker's own address, HOST[:PORT] (an interface's address, never a "
             "wildcard; port 0 or none: any free port)")],
    slots: Annotated[int, typer.Option(help="Migrations at a time on this host")] = 1,
    name: Annotated[str | None, typer.Option(
        help="How results name this host [default: its hostname]")] = None,
    without: Annotated[list[str] | None, typer.Option(
        help="A resource this host has but must not offer (repeatable; `qmpctl worker "
             "--show` lists them), e.g. x86_64-kvm-ring4096")] = None,
    tls_ca: Annotated[Path | None, typer.Option(help="CA of the fleet's certificates")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="This worker's certificate")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Its private key")] = None,
    death_timeout: Annotated[float, typer.Option(
        help="Seconds without the scheduler before this worker stops (its runs cancelled "
             "and cleaned up)")] = 60.0,
    show: Annotated[bool, typer.Option(
        help="Print the resources this host would offer, as JSON, and exit")] = False,
) -> None:
    """Serve a fleet: a Dask worker offering what this host can run, running only qmpctl's cells (docs/fleet.md)."""  # noqa: E501
    from .fleet import options as fleet_options
    from .fleet.security import address, tls_of
    from .fleet.serve import serve_worker, this_fleet_host

    try:
        if slots < 1:
            raise UsageError(f"--slots {slots}: must be at least 1")
        tls = tls_of(tls_ca, tls_cert, tls_key)
        sched = address(scheduler, "--scheduler", tls, fleet_options.SCHEDULER_PORT)
        here = address(listen, "--listen", tls, 0)
        host = this_fleet_host(name, slots, ())
        if unknown := sorted(set(without or ()) - set(host.resources)):
            raise UsageError(f"--without {', '.join(unknown)}: this host does not offer it "
                             f"(it offers {', '.join(sorted(host.resources))})")
        if "slot" in (without or ()):
            raise UsageError("--without slot: a worker without slots runs nothing")
        host = this_fleet_host(name, slots, without or ())
    except QmpctlError as exc:
        print(f"qmpctl: {exc.message}", file=sys.stderr)
        raise typer.Exit(int(exc.exit_code)) from None
    if show:
        print(host.model_dump_json(indent=2))
        return
    logging.basicConfig(level=logging.WARNING)
    try:
        asyncio.run(serve_worker(sched, here, host, tls, death_timeout, _ready("worker")))
    except QmpctlError as exc:
        print(f"qmpctl: {exc.message}", file=sys.stderr)
        raise typer.Exit(int(exc.exit_code)) from None


@app.command(rich_help_panel="Fleet")
def scheduler(
    listen: Annotated[str, typer.Option(
        help="Where to listen: HOST[:PORT] of one interface (never a wildcard) [port: 8786]")],
    tls_ca: Annotated[Path | None, typer.Option(help="CA of the fleet's certificates")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="The scheduler's certificate")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Its private key")] = None,
    worker_ttl: Annotated[float, typer.Option(
        help="Seconds without a worker's heartbeat before it is removed and its task re-run "
             "elsewhere (a link cut is noticed after this)")] = 30.0,
    allowed_failures: Annotated[int, typer.Option(
        help="Workers a task may lose before it is given up")] = 3,
) -> None:
    """Serve a fleet's Dask scheduler, refusing to run code of its own (docs/fleet.md)."""
    import dask

    from .fleet import options as fleet_options
    from .fleet.security import address, tls_of
    from .fleet.serve import serve_scheduler

    try:
        if worker_ttl <= 0 or allowed_failures < 0:
            raise UsageError("--worker-ttl must be positive and --allowed-failures at least 0")
        tls = tls_of(tls_ca, tls_cert, tls_key)
        here = address(listen, "--listen", tls, fleet_options.SCHEDULER_PORT)
    except QmpctlError as exc:
        print(f"qmpctl: {exc.message}", file=sys.stderr)
        raise typer.Exit(int(exc.exit_code)) from None
    logging.basicConfig(level=logging.WARNING)
    with dask.config.set({"distributed.scheduler.worker-ttl": f"{worker_ttl}s",
                          "distributed.scheduler.allowed-failures": allowed_failures}):
        try:
            asyncio.run(serve_scheduler(here, tls, _ready("scheduler")))
        except QmpctlError as exc:
            print(f"qmpctl: {exc.message}", file=sys.stderr)
            raise typer.Exit(int(exc.exit_code)) from None


@app.command()
def doctor(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    probe: Annotated[bool, typer.Option(
        help="Also boot a 64-bit probe guest under KVM (up to 30 s)")] = False,
    clean: Annotated[bool, typer.Option(
        help="Remove run directories (RAM files, sockets) left by qmpctl runs that died")]
    = False,
    ram_dir: Annotated[Path | None, typer.Option(
        help="--clean: also sweep this --ram-dir")] = None,
) -> None:
    """Show what this host can do: QEMU, KVM, dirty-ring capabilities, QEMU features."""
    from rich.table import Table

    from .doctor import doctor as run_doctor

    if ram_dir is not None and not clean:
        raise typer.BadParameter("applies only with --clean", param_hint="--ram-dir")
    if clean:
        removed = sweep_stale() + (sweep_stale(ram_dir) if ram_dir is not None else [])
        removed += [Path(f"netns {name}") for name in sweep_stale_namespaces(default_root())]
        for path in removed:
            print(f"removed {path}")
        print(f"{len(removed)} stale run directories and namespaces removed")
        return

    rep = asyncio.run(run_doctor(probe))
    if json_out:
        print(rep.model_dump_json(indent=2))
        return
    table = Table(title="qmpctl doctor", show_header=False)
    table.add_row("qmpctl", rep.qmpctl_version)
    table.add_row("host arch", rep.host_arch)
    kvm = rep.kvm
    table.add_row("KVM", f"{kvm.device}: "
                  + (f"{kvm.flavour}" if kvm.accessible else f"unusable ({kvm.error})"))
    for name, value in kvm.caps.items():
        table.add_row(f"  {name}", cap_text(name, value))
    table.add_row("dirty ring max size", ring_size_text(kvm.dirty_ring_max_entries))
    table.add_row("64-bit Linux under KVM", str(kvm.runs_64bit_guests))
    if rep.long_mode_probe is not None:
        table.add_row("long-mode probe (KVM)", rep.long_mode_probe)
    for q in rep.qemu:
        problem = f" ({q.error})" if q.error else ""
        table.add_row(f"qemu {q.arch}" + (" (default)" if q.default else ""),
                      f"{q.version} {q.binary}{problem}")
        if q.error:
            continue
        table.add_row("  data dir (-L)", str(q.data_dir))
        for var, setting in q.environment.items():
            table.add_row(f"  env {var}", setting)
        table.add_row(f"  {'pc' if q.arch == 'x86_64' else 'virt'} machine", str(q.default_machine))
        table.add_row("  calc-dirty-rate modes", ", ".join(q.dirty_rate_modes))
        table.add_row("  dirty-limit capability", str("dirty-limit" in q.migration_capabilities))
        table.add_row("  migration parameters", str(len(q.migration_parameters)))
        table.add_row("  commands", ", ".join(c for c, ok in q.commands.items() if ok))
    out.print(table)
    lines = [f"images, first match wins: {'; '.join(rep.image_roots)}"]
    lines += [f"  {i.name}: " + (f"{i.source}: {i.path}" if i.path
                                 else f"missing: build it with {i.build}") for i in rep.images]
    if rep.missing_build_tools:
        lines.append(f"image build tools: {rep.missing_build_tools}")
    if rep.scripts:
        lines.append(f"host set-up scripts: {rep.scripts}")
    lines += [f"requires: {req}" for req in rep.requirements]
    for line in lines:  # whole paths, not cut to a table column
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    for note in rep.notes:
        out.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)


@app.command(name="compare")
def compare_results(
    a: Annotated[Path, typer.Argument(help="A `qmpctl matrix --json` result")],
    b: Annotated[Path | None, typer.Argument(
        help="A second one, its cells matched by id; without it, A's two hosts "
             "(the host axis) are compared")] = None,
    hosts: Annotated[str | None, typer.Option(
        help="With one file: HOST_A,HOST_B to compare (default: its two hosts)")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level, family-wise (Holm)")] = 0.05,
    markdown: Annotated[Path | None, typer.Option(help="Write the table here too")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the comparison as JSON")] = None,
) -> None:
    """Flaky or broken: per cell, do two results' loss rates differ? Fisher's
    exact test, Holm-corrected over the cells; exit 1 when a cell or the pool
    differs, 0 when none does, 2 on bad input."""
    from .matrix.versus import (
        compare_rates,
        hosts_of,
        load_matrix,
        pairs_by_host,
        pairs_by_id,
        render_markdown,
    )

    try:
        first = load_matrix(a)
        if b is not None:
            if hosts is not None:
                raise UsageError("--hosts compares the hosts of one file; with two files "
                                 "cells are matched by id")
            pairs, names = pairs_by_id(first, load_matrix(b)), (str(a), str(b))
        else:
            found = hosts_of(first)
            chosen = hosts.split(",") if hosts is not None else found
            if len(chosen) != 2:
                raise UsageError(f"{a}: give a second file, or --hosts A,B naming two of its "
                                 f"hosts ({', '.join(found)})")
            pairs = pairs_by_host(first, chosen[0], chosen[1])
            names = (f"{a} on {chosen[0]}", f"{a} on {chosen[1]}")
        result = compare_rates(pairs, *names, alpha=alpha)
        table = render_markdown(result)
        for path, text in ((markdown, table), (json_out, result.model_dump_json(indent=1))):
            if path is not None:
                try:
                    path.write_text(text)
                except OSError as exc:
                    raise UsageError(f"{path}: cannot write it: {exc.strerror}") from exc
    except QmpctlError as exc:
        print(f"qmpctl: {exc.message}", file=sys.stderr)
        raise typer.Exit(int(exc.exit_code)) from None
    sys.stdout.write(table)
    raise typer.Exit(result.exit_code)


@app.command(name="html")
def html_page(
    results: Annotated[Path, typer.Argument(
        help="A `qmpctl matrix --json` file, or a `qmpctl migrate --report` file")],
    out: Annotated[Path, typer.Argument(help="The HTML page to write")],
) -> None:
    """Render a results file written earlier as the self-contained HTML page
    `--html` writes, without running anything again."""
    from .matrix.html import write_html
    from .matrix.repeat import load_results

    try:
        check_writable(out, "OUT")
        report, title = load_results(results)
        write_html(report, out, title)
    except QmpctlError as exc:
        print(f"qmpctl: {exc.message}", file=sys.stderr)
        raise typer.Exit(int(exc.exit_code)) from None
    err.print(f"{out}: {len(report.cells)} cell(s), "
              f"{sum(len(c.runs) for c in report.cells)} run(s)", highlight=False, markup=False)


@app.command()
def agent(
    listen: Annotated[str, typer.Option(
        help="HOST:PORT or unix:PATH to listen on, on the destination host")],
    root: Annotated[list[Path] | None, typer.Option(
        help="Serve only RAM files under this directory (read-only; repeatable) "
             "[default: /dev/shm]")] = None,
) -> None:
    """Hash a destination's RAM where it lives and send back only the digests
    (run it on the destination host; qmpctl connects to it). It prints its
    token on stdout's first line; a client must say hello with it."""
    from .verify.agent import DEFAULT_ROOT as AGENT_ROOT
    from .verify.agent import serve as serve_agent
    host, _, port = listen.rpartition(":")
    if not listen.startswith("unix:") and (not host or not port.isdigit()):
        print(f"qmpctl: --listen {listen!r}: expected HOST:PORT or unix:PATH",
              file=sys.stderr)
        raise typer.Exit(int(ExitCode.USAGE))
    roots = tuple(root or [AGENT_ROOT])
    for r in roots:
        if not r.is_dir():
            print(f"qmpctl: --root {r}: not a directory", file=sys.stderr)
            raise typer.Exit(int(ExitCode.USAGE))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_agent(listen, roots))


_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True,
                 "help_option_names": []}


@app.command(context_settings=_PASS_THROUGH)
def tether(ctx: typer.Context) -> None:
    """On the destination host: run `-- ARGV` while qmpctl holds the ssh session
    ([--pidfile F] [--run-dir D] [--heartbeat S]; see qmpctl.host.tether)."""
    from .host.tether import main as tether_main
    raise typer.Exit(tether_main(["tether", *ctx.args]))


@app.command(context_settings=_PASS_THROUGH)
def relay(ctx: typer.Context) -> None:
    """On the destination host: join stdin/stdout to a unix socket (PATH [--wait S])."""
    from .host.tether import main as tether_main
    raise typer.Exit(tether_main(["relay", *ctx.args]))


@app.command()
def repro(
    runs: Annotated[list[Path], typer.Argument(
        help="RUN_DIR (an --artifacts directory, or one with run-N/ per run) or REPORT "
             "(--report FILE, one run or a --repeat array); several: the loss rate is "
             "over all their runs, the first lost run is reproduced", show_default=False,
        metavar="RUN_DIR|REPORT")],
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", help="The reproducer's directory, new or empty (default: "
                            "./repro-YYYYMMDDTHHMMSS, the run's start)")] = None,
) -> None:
    """Write a stand-alone reproducer of a run that lost pages: QEMU command
    lines, a qemu.qmp-only script, the guest image, a compare script, BUG.md."""
    from .repro.write import make_repro  # not on `qmpctl migrate`'s start-up path
    try:
        chosen, out, written = make_repro(runs, out)
    except QmpctlError as exc:
        print(f"qmpctl: {exc.message}", file=sys.stderr)
        raise typer.Exit(int(exc.exit_code)) from None
    memory = chosen.report.memory
    lost = memory.pages_differing if memory is not None else 0
    print(f"qmpctl repro: {out}: {len(written)} files reproducing {chosen.source} ({lost} "
          f"pages lost); read {out / 'BUG.md'}, run `python3 {out / 'repro.py'}`")


@app.command()
def schema() -> None:
    """Print the JSON schema of the run report."""
    from .report.schema import report_schema
    sys.stdout.write(report_schema())


@images_app.command("build")
def images_build(
    linux: Annotated[bool, typer.Option(
        "--linux", help="Also the Linux guests (Debian's kernel and busybox, via apt)")] = False,
    lab: Annotated[list[str] | None, typer.Option(
        "--lab", help="Also the KVM lab of this architecture (aarch64 or x86_64; repeatable; "
                      "mmdebstrap, a few minutes)")] = None,
) -> None:
    """Build guest images where qmpctl looks first: $QMPCTL_IMAGES, a checkout's
    images/out, else the cache ($QMPCTL_CACHE, else $XDG_CACHE_HOME/qmpctl)."""
    from .guests.build import plan_build, run_build

    try:
        plan = plan_build(linux, lab or [])
        print(f"qmpctl images build: {' '.join(plan.goals)} into {plan.out} "
              f"(recipes {plan.recipes})", file=sys.stderr)
        run_build(plan)
    except QmpctlError as exc:
        print(f"qmpctl: {exc.message}", file=sys.stderr)
        raise typer.Exit(int(exc.exit_code)) from None
    print(f"qmpctl images build: done, images in {plan.out}", file=sys.stderr)


@app.command()
def version() -> None:
    """Print qmpctl's version."""
    print(__version__)


class _PipeSafe:
    """stdout or stderr whose reader may leave early (`qmpctl migrate | true`).
    click turns a closed pipe into exit 1, which CI reads as lost pages: here
    a write to a closed pipe sends the stream to /dev/null instead (as the
    Python docs recommend for SIGPIPE), so the verdict keeps its exit code."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())  # the buffered rest goes there too
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main() -> None:
    sys.stdout = cast(TextIO, _PipeSafe(sys.stdout))
    sys.stderr = cast(TextIO, _PipeSafe(sys.stderr))
    # Everything imported so far lives as long as the process: out of the
    # collector's way (gc.freeze), no collection walks it again, during the
    # run or at exit, where that took 0.12 s of a `qmpctl migrate` here.
    gc.freeze()
    app()
