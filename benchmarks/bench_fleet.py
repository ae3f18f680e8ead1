"""What the fleet costs: Dask's scheduling against a local run, and how many
tasks per second the scheduler sustains (`nox -s bench_fleet`).

Measured in one run, rounds alternating so drift on a shared machine hits
both sides alike (run it under `flock /tmp/qmpctl-cpu.lock`: it starts QEMU):

* the same cheap TCG cells (the smoke preset's small guest) run by the local
  executor and by a throwaway cluster of this host (`--cluster local`: a
  scheduler and one qmpctl worker in this process, one slot); the
  cluster's start-up alone; the overhead per task = (cluster wall - local
  wall - start-up) / tasks, and the ratio of the walls;
* trivial tasks: N tasks of a function that returns its argument on a plain
  Dask worker (the scheduler's own rate), and N trivial qmpctl cells (a cell
  the worker's checks refuse before anything starts: the task guard, the
  options' validation, the start event and the outcome's JSON) on a qmpctl
  worker; tasks per second of each, and their ratio.

Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from typing import Any

from qmpctl.fleet.clusters import ThrowawayCluster, quiet_dask
from qmpctl.fleet.executor import FleetExecutor
from qmpctl.fleet.serve import this_fleet_host
from qmpctl.fleet.task import CellTask, run_cell
from qmpctl.matrix.cells import Cell, expand
from qmpctl.matrix.execute import LocalExecutor, MatrixState
from qmpctl.matrix.spec import parse_spec

AXES = {"repeat": 1, "options": {"ram": 64, "wave_end": 18, "timeout": 120.0},
        "axes": [{"accel": ["tcg"], "feature": ["precopy", "xbzrle"]}]}


def echo(payload: str) -> str:
    return payload


async def _matrix(executor: Any, cells: list[Cell], repeat: int) -> tuple[float, int]:
    state = MatrixState(cells, repeat)
    t0 = time.monotonic()
    await executor.run(state, lambda: None, lambda host, line: None)
    runs = [r for rs in state.runs.values() for r in rs]
    bad = [r.verdict for r in runs if r.verdict != "verified"]
    if len(runs) != len(cells) * repeat or bad:
        raise SystemExit(f"bench_fleet: runs {len(runs)}, not verified: {bad}")
    return time.monotonic() - t0, len(runs)


async def _startup(host: Any) -> float:
    t0 = time.monotonic()
    async with ThrowawayCluster(host).client() as client:
        await client.wait_for_workers(1)
    return time.monotonic() - t0


async def _trivial(n: int, qmpctl_cells: bool) -> float:
    """Tasks per second: n trivial tasks through one worker of this process."""
    from distributed import Client, Scheduler, SpecCluster, Worker

    from qmpctl.fleet.daskworker import QmpctlWorker
    host = this_fleet_host("bench", 2, ())
    worker: dict[str, Any] = ({"cls": QmpctlWorker, "options": {"fleet_host": host}}
                              if qmpctl_cells else
                              {"cls": Worker, "options": {"nthreads": 2}})
    worker["options"] |= {"host": "127.0.0.1", "dashboard": False}
    spec = {"scheduler": {"cls": Scheduler, "options": {"host": "127.0.0.1", "port": 0,
                                                        "dashboard_address": None}},
            "workers": {"w": worker}}
    bad = CellTask(cell="trivial", repeat=1, options={"ram": 1})  # refused before QEMU
    async with SpecCluster(**spec, asynchronous=True) as cluster, \
            Client(cluster, asynchronous=True) as client:
        fn = run_cell if qmpctl_cells else echo
        t0 = time.monotonic()
        futures = [client.submit(fn, bad.model_copy(update={"repeat": i + 1}).model_dump_json(),
                                 pure=False) for i in range(n)]
        await client.gather(futures)
        return n / (time.monotonic() - t0)


async def main(rounds: int, repeat: int, trivial: int) -> None:
    quiet_dask()
    logging.getLogger("qmpctl").setLevel(logging.WARNING)
    cells = expand(parse_spec(AXES, "bench_fleet"))
    host = this_fleet_host(None, 1, ())
    local, fleet, start = [], [], []
    tasks = 0
    for r in range(rounds):
        local.append((await _matrix(LocalExecutor(), cells, repeat))[0])
        wall, tasks = await _matrix(FleetExecutor(ThrowawayCluster(host)), cells, repeat)
        fleet.append(wall)
        start.append(await _startup(host))
        print(f"round {r + 1}: local {local[-1]:.2f} s, cluster {fleet[-1]:.2f} s "
              f"(start-up {start[-1]:.2f} s), {tasks} tasks each", flush=True)
    lo, fl, st = (statistics.median(x) for x in (local, fleet, start))
    print(f"{tasks} TCG runs ({', '.join(c.id for c in cells)} x {repeat}), median of "
          f"{rounds} rounds:")
    print(f"  local executor      {lo:7.2f} s")
    print(f"  --cluster local     {fl:7.2f} s  ({fl / lo:.2f}x the local run)")
    print(f"  cluster start-up    {st:7.2f} s")
    print(f"  overhead per task   {(fl - lo - st) / tasks * 1000:7.0f} ms  "
          f"({(fl - lo - st) / lo * 100:+.1f} % of the local run, start-up excluded)")
    raw = await _trivial(trivial, qmpctl_cells=False)
    ours = await _trivial(trivial, qmpctl_cells=True)
    print(f"trivial tasks, {trivial} each, scheduler, worker and client in one process:")
    print(f"  plain Dask task      {raw:8.0f} tasks/s")
    print(f"  trivial qmpctl cell  {ours:8.0f} tasks/s  ({ours / raw:.2f}x plain Dask)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2, help="runs per cell in each round")
    ap.add_argument("--trivial", type=int, default=2000, help="trivial tasks per measure")
    args = ap.parse_args()
    asyncio.run(main(args.rounds, args.repeat, args.trivial))
