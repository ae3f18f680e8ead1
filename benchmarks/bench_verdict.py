"""Time per cell (`nox -s bench_verdict`): qmpctl's default TCG run against a
raw QMP script doing the same migration (benchmarks/raw_migrate.py: same
guest, RAM, throttle, minimum passes and downtime; it compares the RAM files
once and checks nothing else).

N pairs (--pairs, default 5), each the raw script and `qmpctl migrate --accel
tcg`, both as subprocesses of the same Python, timed wall-clock from spawn
to exit (interpreter start-up and imports included, for both); the order
alternates from pair to pair so drift on a shared machine hits both alike.
Steady state, as a second run on a host finds it: one untimed run of each
first, and both keep Python's bytecode cache (in a private
PYTHONPYCACHEPREFIX, even where PYTHONDONTWRITEBYTECODE is set: a pip install
compiles qmpctl once; `--no-bytecode-cache` measures every start compiling it).
Printed: each pair, the medians, the ratio qmpctl/raw of the medians, and
qmpctl's phases from its report's `timings_s` (median of each), with the
part outside them (start-up, option resolution, report writing).

Then per cell, as a matrix or a fleet worker pays it (--cells N, default 5;
0 skips it): `qmpctl migrate --repeat N` is one process that runs N
migrations, so start-up is paid once; its wall-clock divided by N is set
against the raw script's median from the pairs (which pays its own start-up
every run, as a script does).

It starts QEMU: run it as `flock /tmp/qmpctl-cpu.lock nox -s bench_verdict`.
Figures, not assertions; a run that does not verify stops the benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RAW = HERE / "raw_migrate.py"
# The order phases are printed in (others follow, by name).
PHASES = ("checks", "launch_src", "boot", "launch_dst", "migrate", "compare", "resume",
          "teardown", "total")


ENV = {**os.environ, "PYTHONPATH": str(HERE.parent) + (
    f":{os.environ['PYTHONPATH']}" if os.environ.get("PYTHONPATH") else "")}


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=ENV)
    return time.monotonic() - t0, proc


def raw_run() -> tuple[float, dict[str, float]]:
    wall, proc = timed([sys.executable, str(RAW)])
    if proc.returncode != 0:
        raise SystemExit(f"bench_verdict: the raw script failed ({proc.returncode}):\n"
                         f"{proc.stdout}{proc.stderr}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def qmpctl_run(extra: list[str]) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-verdict-") as tmp:
        report = Path(tmp) / "report.json"
        wall, proc = timed([sys.executable, "-m", "qmpctl", "migrate", "--accel", "tcg",
                            "--report", str(report), *extra])
        data = json.loads(report.read_text()) if report.exists() else {}
    if proc.returncode != 0 or data.get("verdict") != "verified":
        raise SystemExit(f"bench_verdict: qmpctl did not verify ({proc.returncode}, "
                         f"{data.get('verdict')}):\n{proc.stdout}{proc.stderr}")
    return wall, dict(data.get("timings_s", {}))


def repeated_run(n: int, extra: list[str]) -> float:
    """`qmpctl migrate --repeat n` in one process: its wall-clock per run."""
    with tempfile.TemporaryDirectory(prefix="bench-verdict-") as tmp:
        report = Path(tmp) / "report.json"
        wall, proc = timed([sys.executable, "-m", "qmpctl", "migrate", "--accel", "tcg",
                            "--repeat", str(n), "--report", str(report), *extra])
        runs = json.loads(report.read_text()) if report.exists() else []
    verdicts = [r.get("verdict") for r in runs]
    if proc.returncode != 0 or verdicts != ["verified"] * n:
        raise SystemExit(f"bench_verdict: qmpctl --repeat {n} did not verify every run "
                         f"({proc.returncode}, {verdicts}):\n{proc.stdout}{proc.stderr}")
    return wall / n


def phase_line(name: str, values: list[float]) -> str:
    return f"  {name:<14} {statistics.median(values):6.2f} s  " + " ".join(
        f"{v:5.2f}" for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--cells", type=int, default=5,
                        help="runs of `qmpctl migrate --repeat` for the per-cell figure "
                             "(0: skip it)")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="keep the environment's PYTHONDONTWRITEBYTECODE")
    parser.add_argument("qmpctl_args", nargs="*", help="extra `qmpctl migrate` options "
                                                       "(after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-verdict-pyc-") as pyc:
        if not args.no_bytecode_cache:
            ENV.pop("PYTHONDONTWRITEBYTECODE", None)
            ENV["PYTHONPYCACHEPREFIX"] = pyc
        print(f"warm-up (untimed): raw {raw_run()[0]:.2f} s, qmpctl "
              f"{qmpctl_run(args.qmpctl_args)[0]:.2f} s; bytecode cache "
              f"{'off' if args.no_bytecode_cache else 'on'}", flush=True)
        return pairs(args)


def pairs(args: argparse.Namespace) -> int:
    raws: list[float] = []
    ours: list[float] = []
    raw_phases: list[dict[str, float]] = []
    our_phases: list[dict[str, float]] = []
    print(f"{args.pairs} pairs, raw script ({RAW.name}) vs `qmpctl migrate --accel tcg"
          f"{''.join(' ' + a for a in args.qmpctl_args)}`, wall-clock per subprocess")
    for i in range(args.pairs):
        first_raw = i % 2 == 0
        if first_raw:
            raw, raw_t = raw_run()
            ours_s, ours_t = qmpctl_run(args.qmpctl_args)
        else:
            ours_s, ours_t = qmpctl_run(args.qmpctl_args)
            raw, raw_t = raw_run()
        raws.append(raw)
        ours.append(ours_s)
        raw_phases.append(raw_t)
        our_phases.append(ours_t)
        print(f"pair {i + 1} ({'raw' if first_raw else 'qmpctl'} first): raw {raw:5.2f} s, "
              f"qmpctl {ours_s:5.2f} s, ratio {ours_s / raw:4.2f}", flush=True)
    raw_med, our_med = statistics.median(raws), statistics.median(ours)
    print(f"median: raw {raw_med:.2f} s, qmpctl {our_med:.2f} s; "
          f"ratio qmpctl/raw {our_med / raw_med:.2f}")
    print("qmpctl phases (timings_s; median, then each run):")
    names = [p for p in PHASES if any(p in t for t in our_phases)]
    names += sorted({k for t in our_phases for k in t} - set(names))
    for name in names:
        print(phase_line(name, [t.get(name, 0.0) for t in our_phases]))
    print(phase_line("outside total", [w - t.get("total", 0.0)
                                       for w, t in zip(ours, our_phases, strict=True)]))
    print("raw script phases (median, then each run):")
    for name in [k for k in raw_phases[0] if k != "equal"]:
        print(phase_line(name, [float(t.get(name, 0.0)) for t in raw_phases]))
    print(phase_line("outside total", [w - float(t.get("total", 0.0))
                                       for w, t in zip(raws, raw_phases, strict=True)]))
    if args.cells > 0:
        per_cell = repeated_run(args.cells, args.qmpctl_args)
        print(f"per cell (`qmpctl migrate --repeat {args.cells}`, one process, as a matrix or "
              f"a fleet worker runs cells): {per_cell:.2f} s per run; ratio against the raw "
              f"script's median {per_cell / raw_med:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
